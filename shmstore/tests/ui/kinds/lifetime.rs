use core::marker::PhantomData;
use shmstore::ShmSafe;

#[derive(ShmSafe)]
#[repr(C)]
struct View<'a> {
    len: u64,
    _borrow: PhantomData<&'a [u8]>,
}

fn main() {}
