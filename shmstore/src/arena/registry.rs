//! The type registry: each type's layout stored once, so that a process
//! asking for the wrong type can be shown both layouts, and a process that
//! does not have a type can still walk its values by their layout.
//!
//! # Layout
//!
//! An array of 32-byte entries (grown by doubling):
//!
//! | offset | size | field                                   |
//! |--------|------|-----------------------------------------|
//! | 0      | 8    | fingerprint                             |
//! | 8      | 8    | offset of the encoded layout            |
//! | 16     | 8    | size of the type                        |
//! | 24     | 4    | alignment of the type                   |
//! | 28     | 4    | length of the encoded layout, in bytes  |
//!
//! The encoded layout is the type's [`TypeLayout`](crate::TypeLayout) in
//! the binary form of [`encode_layout`](crate::layout::encode_layout) (its
//! name included), in a block of its own, written once before the entry
//! that points at it. Reading it back ([`Arena::type_desc`]) decodes it and
//! checks that it is the layout the entry's fingerprint, size and alignment
//! describe.

use super::header::Header;
use super::Arena;
use crate::layout::{decode_layout, LayoutDesc};
use crate::{Error, Result};

const ENTRY: u64 = 32;
const E_FP: u64 = 0;
pub(crate) const E_BLOB: u64 = 8;
pub(crate) const E_SIZE: u64 = 16;
const E_ALIGN: u64 = 24;
pub(crate) const E_BLOB_LEN: u64 = 28;
const INITIAL_TYPES: u64 = 8;

/// What the registry knows of one type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TypeInfo {
    pub(crate) fingerprint: u64,
    pub(crate) size: u64,
    pub(crate) align: u64,
}

impl Arena<'_> {
    /// Creates the registry of a new store.
    pub(crate) fn registry_init(&self) -> Result<()> {
        let hdr = Header(self);
        let table = self.alloc(INITIAL_TYPES * ENTRY)?;
        hdr.set_reg_table(table)?;
        hdr.set_reg_cap(INITIAL_TYPES)?;
        hdr.set_reg_len(0)
    }

    fn registry(&self) -> Result<(u64, u64)> {
        let hdr = Header(self);
        let (table, len, cap) = (hdr.reg_table()?, hdr.reg_len()?, hdr.reg_cap()?);
        if len > cap || !self.holds(table, cap.saturating_mul(ENTRY)) {
            return Err(Error::corrupted(format!(
                "type registry header is invalid: table {table:#x}, {len} of {cap} entries"
            )));
        }
        Ok((table, len))
    }

    /// The index of the type with fingerprint `fp`, if registered.
    pub(crate) fn find_type(&self, fp: u64) -> Result<Option<u32>> {
        let (table, len) = self.registry()?;
        for i in 0..len {
            if self.mem.u64(table + i * ENTRY + E_FP)? == fp {
                return Ok(Some(i as u32));
            }
        }
        Ok(None)
    }

    /// Registers a type and returns its index: its fingerprint, size,
    /// alignment and `encoded` layout (from
    /// [`encode_layout`](crate::layout::encode_layout)).
    pub(crate) fn register_type(
        &self,
        fp: u64,
        size: u64,
        align: u64,
        encoded: &[u8],
    ) -> Result<u32> {
        let hdr = Header(self);
        let (mut table, len) = self.registry()?;
        let cap = hdr.reg_cap()?;
        let blob_len = encoded.len() as u64;
        if len >= u32::MAX as u64 || blob_len > u32::MAX as u64 || align > u32::MAX as u64 {
            return Err(Error::InvalidArgument {
                reason: format!(
                    "type {fp:#018x} cannot be registered: too many types or too large a layout"
                ),
            });
        }
        let blob = self.alloc(blob_len)?;
        self.write_fresh(blob, encoded)?;
        if len == cap {
            let grown = match self.alloc(cap * 2 * ENTRY) {
                Ok(g) => g,
                Err(e) => {
                    self.free(blob)?;
                    return Err(e);
                }
            };
            let bytes = self.mem.read_bytes(table, cap * ENTRY)?;
            self.write_fresh(grown, &bytes)?;
            hdr.set_reg_table(grown)?;
            hdr.set_reg_cap(cap * 2)?;
            self.free(table)?;
            table = grown;
        }
        let e = table + len * ENTRY;
        self.set_u64(e + E_FP, fp)?;
        self.set_u64(e + E_BLOB, blob)?;
        self.set_u64(e + E_SIZE, size)?;
        self.set_u32(e + E_ALIGN, align as u32)?;
        self.set_u32(e + E_BLOB_LEN, blob_len as u32)?;
        hdr.set_reg_len(len + 1)?;
        Ok(len as u32)
    }

    pub(crate) fn entry(&self, idx: u32) -> Result<u64> {
        let (table, len) = self.registry()?;
        if idx as u64 >= len {
            return Err(Error::corrupted(format!(
                "type index {idx} is past the registry's {len} entries"
            )));
        }
        Ok(table + idx as u64 * ENTRY)
    }

    /// Fingerprint, size and alignment of type `idx`.
    pub(crate) fn type_info(&self, idx: u32) -> Result<TypeInfo> {
        let e = self.entry(idx)?;
        let align = self.mem.u32(e + E_ALIGN)? as u64;
        if !align.is_power_of_two() {
            return Err(Error::corrupted(format!(
                "type {idx} has alignment {align}"
            )));
        }
        Ok(TypeInfo {
            fingerprint: self.mem.u64(e + E_FP)?,
            size: self.mem.u64(e + E_SIZE)?,
            align,
        })
    }

    /// Checks that entry `idx` describes `layout` (fingerprint, size,
    /// alignment) before anything is sized by it: the entry comes from the
    /// segment, the layout from the compiler.
    pub(crate) fn check_registered(
        &self,
        idx: u32,
        layout: &crate::TypeLayout,
        fp: u64,
    ) -> Result<()> {
        let info = self.type_info(idx)?;
        if info.fingerprint != fp
            || info.size != layout.size as u64
            || info.align != layout.align as u64
        {
            return Err(Error::corrupted(format!(
                "type registry entry {idx} records fingerprint {:#x}, {} bytes, align {}, \
                 but {} has fingerprint {:#x}, {} bytes, align {}",
                info.fingerprint,
                info.size,
                info.align,
                layout.type_expr(),
                fp,
                layout.size,
                layout.align
            )));
        }
        Ok(())
    }

    /// The layout of type `idx`, decoded from the registry, and checked to
    /// be the one its entry's fingerprint, size and alignment describe.
    /// Bytes that do not decode, or decode to another layout, are
    /// [`Error::Corrupted`].
    pub(crate) fn type_desc(&self, idx: u32) -> Result<LayoutDesc> {
        let info = self.type_info(idx)?;
        let e = self.entry(idx)?;
        let blob = self.mem.u64(e + E_BLOB)?;
        let len = self.mem.u32(e + E_BLOB_LEN)? as u64;
        let desc = self
            .mem
            .with_bytes(blob, len, decode_layout)?
            .map_err(|err| {
                Error::corrupted(format!(
                    "type registry entry {idx} (layout at {blob:#x}, {len} bytes): {err}"
                ))
            })?;
        let fp = desc.graph_fingerprint();
        if fp != info.fingerprint || desc.size != info.size || desc.align != info.align {
            return Err(Error::corrupted(format!(
                "type registry entry {idx} records fingerprint {:#x}, {} bytes, align {}, \
                 but its layout {} has fingerprint {fp:#x}, {} bytes, align {}",
                info.fingerprint,
                info.size,
                info.align,
                desc.type_expr(),
                desc.size,
                desc.align
            )));
        }
        Ok(desc)
    }

    /// The type expression (`Point`, `ShmMutex<u64>`) and the rendered
    /// layout (as [`TypeLayout`](crate::TypeLayout)'s `Display` renders
    /// it) of type `idx`.
    pub(crate) fn type_text(&self, idx: u32) -> Result<(String, String)> {
        let desc = self.type_desc(idx)?;
        Ok((desc.type_expr(), desc.to_string()))
    }

    /// The blocks the registry owns: its table and every entry's encoded
    /// layout.
    pub(crate) fn registry_blocks(&self) -> Result<Vec<u64>> {
        let (table, len) = self.registry()?;
        let mut out = vec![table];
        for i in 0..len {
            out.push(self.mem.u64(table + i * ENTRY + E_BLOB)?);
        }
        Ok(out)
    }

    /// Number of registered types.
    pub(crate) fn type_count(&self) -> Result<u64> {
        Ok(self.registry()?.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arena::tests::{register, HeapStore};
    use crate::layout::encode_layout;
    use crate::{ShmMutex, ShmSafe, TypeLayout};

    fn register_layout(a: &Arena<'_>, l: &TypeLayout) -> u32 {
        let bytes = encode_layout(l).unwrap();
        a.register_type(l.fingerprint(), l.size as u64, l.align as u64, &bytes)
            .unwrap()
    }

    fn corrupted<T: core::fmt::Debug>(r: Result<T>) -> String {
        match r {
            Err(Error::Corrupted { reason }) => reason,
            other => panic!("expected Corrupted, got {other:?}"),
        }
    }

    #[test]
    fn registered_layouts_read_back_as_the_types_they_describe() {
        let s = HeapStore::new(1 << 20);
        let a = s.arena();
        let layouts: [&TypeLayout; 5] = [
            u64::LAYOUT,
            <[char; 3]>::LAYOUT,
            <ShmMutex<[u16; 2]>>::LAYOUT,
            <ShmMutex<ShmMutex<bool>>>::LAYOUT,
            <core::marker::PhantomData<i8>>::LAYOUT,
        ];
        for l in layouts {
            let idx = register_layout(&a, l);
            assert_eq!(a.find_type(l.fingerprint()).unwrap(), Some(idx));
            assert_eq!(a.type_desc(idx).unwrap(), l.to_desc());
            assert_eq!(
                a.type_text(idx).unwrap(),
                (l.type_expr(), l.to_string()),
                "the text that error messages and entries show"
            );
        }
        a.check_heap().unwrap();
    }

    #[test]
    fn any_flipped_byte_of_an_encoded_layout_is_corruption() {
        let s = HeapStore::new(1 << 20);
        let a = s.arena();
        let l = <ShmMutex<[u16; 2]>>::LAYOUT;
        let idx = register_layout(&a, l);
        let e = a.entry(idx).unwrap();
        let blob = a.mem.u64(e + E_BLOB).unwrap();
        let len = a.mem.u32(e + E_BLOB_LEN).unwrap() as u64;
        let pristine = a.mem.read_bytes(blob, len).unwrap();
        for i in 0..len {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut b = pristine.clone();
                b[i as usize] ^= flip;
                a.mem.write_bytes(blob, &b).unwrap();
                // Either it does not decode, or it decodes to a layout
                // with another fingerprint.
                corrupted(a.type_desc(idx));
                corrupted(a.type_text(idx));
            }
        }
        a.mem.write_bytes(blob, &pristine).unwrap();
        assert_eq!(a.type_desc(idx).unwrap(), l.to_desc());
    }

    #[test]
    fn an_entry_that_does_not_match_its_layout_is_corruption() {
        let s = HeapStore::new(1 << 20);
        let a = s.arena();
        let point = register_layout(&a, <[f64; 2]>::LAYOUT);
        let other = register(&a, "Other", 16, 8);
        let e = a.entry(point).unwrap();
        let (blob, len) = (
            a.mem.u64(e + E_BLOB).unwrap(),
            a.mem.u32(e + E_BLOB_LEN).unwrap(),
        );
        let with = |off: u64, set: &dyn Fn(u64), restore: &dyn Fn(u64)| {
            set(off);
            let why = corrupted(a.type_desc(point));
            restore(off);
            assert_eq!(a.type_desc(point).unwrap(), <[f64; 2]>::LAYOUT.to_desc());
            why
        };
        let set64 = |v: u64| move |off: u64| a.mem.set_u64(off, v).unwrap();
        let set32 = |v: u32| move |off: u64| a.mem.set_u32(off, v).unwrap();
        // The layout is another type's, or cut short, or runs on, or is
        // outside the segment.
        let o = a.entry(other).unwrap();
        let other_blob = a.mem.u64(o + E_BLOB).unwrap();
        let other_len = a.mem.u32(o + E_BLOB_LEN).unwrap();
        a.mem.set_u32(e + E_BLOB_LEN, other_len).unwrap();
        let why = with(e + E_BLOB, &set64(other_blob), &|off| {
            set64(blob)(off);
            set32(len)(e + E_BLOB_LEN);
        });
        assert!(
            why.contains("but its layout Other has fingerprint"),
            "{why}"
        );
        let why = with(e + E_BLOB_LEN, &set32(len - 1), &set32(len));
        assert!(why.contains("the input ends"), "{why}");
        let why = with(e + E_BLOB_LEN, &set32(len + 1), &set32(len));
        assert!(why.contains("follow the layout"), "{why}");
        with(e + E_BLOB_LEN, &set32(u32::MAX), &set32(len));
        with(e + E_BLOB, &set64(u64::MAX - 3), &set64(blob));
        with(e + E_BLOB, &set64(1 << 40), &set64(blob));
        // The entry's words disagree with the layout.
        let fp = <[f64; 2]>::FINGERPRINT;
        with(e + E_FP, &set64(fp ^ 1), &set64(fp));
        let why = with(e + E_SIZE, &set64(24), &set64(16));
        assert!(why.contains("24 bytes"), "{why}");
        with(e + E_ALIGN, &set32(16), &set32(8));
        a.check_heap().unwrap();
    }
}
