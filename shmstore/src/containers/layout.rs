//! How the store sees a container through its recorded layout: which of
//! them own a nested block, and how that block's elements are laid out.
//! Must agree with the containers' own `#[repr(C)]` types (the tests below
//! compare them).

use crate::layout::LayoutDesc;

/// Bit 63 of a map slot's meta word: a live entry.
pub(crate) const LIVE: u64 = 1 << 63;

/// What a container's nested block holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Elements of its one parameter (`ShmVec<T>`, `RelPtr<T>`).
    Elements,
    /// Bytes (`ShmString`).
    Bytes,
    /// Map slots: a meta word, the key at `key_off`, the value at
    /// `value_off`, `slot` bytes each (`ShmMap<K, V>`).
    Map {
        key_off: u64,
        value_off: u64,
        slot: u64,
        align: u64,
    },
}

fn align_up(x: u64, a: u64) -> Option<u64> {
    x.checked_next_multiple_of(a.max(1))
}

/// The shape of the container named `name` with `params`, or `None` if it
/// owns no nested block (or is not a container this build knows).
pub(crate) fn shape_of(name: &str, params: &[LayoutDesc]) -> Option<Shape> {
    match (name, params) {
        ("ShmVec", [_]) | ("RelPtr", [_]) => Some(Shape::Elements),
        ("ShmString", []) => Some(Shape::Bytes),
        ("ShmMap", [k, v]) => {
            let key_off = align_up(8, k.align)?;
            let value_off = align_up(key_off.checked_add(k.size)?, v.align)?;
            let align = 8u64.max(k.align).max(v.align);
            let slot = align_up(value_off.checked_add(v.size)?, align)?;
            Some(Shape::Map {
                key_off,
                value_off,
                slot,
                align,
            })
        }
        _ => None,
    }
}

impl Shape {
    /// Size and alignment of one element of the nested block.
    pub(crate) fn element(&self, params: &[LayoutDesc]) -> (u64, u64) {
        match (self, params) {
            (Shape::Elements, [p]) => (p.size, p.align),
            (Shape::Map { slot, align, .. }, _) => (*slot, *align),
            _ => (1, 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containers::map::Slot;
    use crate::ShmSafe;
    use core::mem::{align_of, offset_of, size_of};

    fn check<K: ShmSafe, V: ShmSafe>() {
        let (k, v) = (LayoutDesc::from(K::LAYOUT), LayoutDesc::from(V::LAYOUT));
        let Some(Shape::Map {
            key_off,
            value_off,
            slot,
            align,
        }) = shape_of("ShmMap", &[k, v])
        else {
            panic!("a map has a shape")
        };
        assert_eq!(key_off as usize, offset_of!(Slot<K, V>, key));
        assert_eq!(value_off as usize, offset_of!(Slot<K, V>, value));
        assert_eq!(slot as usize, size_of::<Slot<K, V>>());
        assert_eq!(align as usize, align_of::<Slot<K, V>>());
    }

    #[test]
    fn map_slots_are_laid_out_as_the_compiler_lays_them_out() {
        check::<u64, u64>();
        check::<u8, u8>();
        check::<u16, [u8; 3]>();
        check::<u128, u8>();
        check::<[u8; 5], u128>();
        check::<crate::ShmString, u32>();
        check::<u32, crate::ShmVec<u64>>();
    }
}
