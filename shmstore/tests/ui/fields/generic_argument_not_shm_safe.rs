use shmstore::ShmSafe;

#[derive(ShmSafe)]
#[repr(C)]
struct Pair<A, B> {
    first: A,
    second: B,
}

fn fingerprint<T: ShmSafe>() -> u64 {
    T::FINGERPRINT
}

fn main() {
    fingerprint::<Pair<u32, String>>();
}
