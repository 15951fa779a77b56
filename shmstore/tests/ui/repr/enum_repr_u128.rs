use shmstore::ShmSafe;

#[derive(ShmSafe)]
#[repr(u128)]
enum Id {
    Zero,
    Max = u128::MAX,
}

fn main() {}
