//! Arbitrary bytes through the byte check of every type of a zoo of
//! derived types (bool, char, enums with gaps in their discriminants,
//! nested structs, arrays, generics, `RelPtr`, containers, inline
//! containers, mutexes): the check must accept exactly the bytes that the
//! type's hand-written reference decoder accepts, and so must the
//! layout-driven reference of `shmstore::fuzzing`; an error names an offset
//! inside the value. Then the user helper (`check_type`) runs on the type.
//!
//! Input: one byte choosing the type, then the value's bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmstore_fuzz::zoo;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let zoo = zoo::all();
    let t = &zoo[which as usize % zoo.len()];
    let mut bytes = rest.to_vec();
    bytes.resize(t.size.max(rest.len()), 0);
    let bytes = &bytes[..t.size];
    let derived = (t.check)(bytes);
    let by_hand = (t.reference)(bytes);
    let by_layout = shmstore::fuzzing::reference_check(t.layout, bytes);
    assert_eq!(
        derived.is_ok(),
        by_hand,
        "{}: the derived check says {derived:?}, the hand-written reference {by_hand}: {bytes:02x?}",
        t.name
    );
    assert_eq!(
        derived, by_layout,
        "{}: the derived check and the layout's reference disagree: {bytes:02x?}",
        t.name
    );
    (t.helper)(rest);
});
