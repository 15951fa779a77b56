//! The type registry: each type's layout stored once, so that a process
//! asking for the wrong type can be shown both layouts.
//!
//! # Layout
//!
//! An array of 40-byte entries (grown by doubling):
//!
//! | offset | size | field                                           |
//! |--------|------|-------------------------------------------------|
//! | 0      | 8    | fingerprint                                     |
//! | 8      | 8    | offset of the description block                 |
//! | 16     | 8    | size of the type                                |
//! | 24     | 4    | alignment of the type                           |
//! | 28     | 4    | description length (name bytes, then the text)  |
//! | 32     | 4    | name length                                     |
//!
//! The description is the type's name followed by its rendered layout
//! ([`TypeLayout`](crate::TypeLayout)'s `Display`).

use super::header::Header;
use super::Arena;
use crate::{Error, Result};

const ENTRY: u64 = 40;
const E_FP: u64 = 0;
const E_DESC: u64 = 8;
pub(crate) const E_SIZE: u64 = 16;
const E_ALIGN: u64 = 24;
const E_DESC_LEN: u64 = 28;
const E_NAME_LEN: u64 = 32;
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

    /// Registers a type and returns its index.
    pub(crate) fn register_type(
        &self,
        fp: u64,
        size: u64,
        align: u64,
        name: &str,
        desc: &str,
    ) -> Result<u32> {
        let hdr = Header(self);
        let (mut table, len) = self.registry()?;
        let cap = hdr.reg_cap()?;
        let blob_len = (name.len() + desc.len()) as u64;
        if len >= u32::MAX as u64 || blob_len > u32::MAX as u64 || align > u32::MAX as u64 {
            return Err(Error::InvalidArgument {
                reason: format!(
                    "type {name} cannot be registered: too many types or too large a layout"
                ),
            });
        }
        let blob = self.alloc(blob_len)?;
        self.write_fresh(blob, name.as_bytes())?;
        self.write_fresh(blob + name.len() as u64, desc.as_bytes())?;
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
        self.set_u64(e + E_DESC, blob)?;
        self.set_u64(e + E_SIZE, size)?;
        self.set_u32(e + E_ALIGN, align as u32)?;
        self.set_u32(e + E_DESC_LEN, blob_len as u32)?;
        self.set_u32(e + E_NAME_LEN, name.len() as u32)?;
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
    pub(crate) fn check_registered(&self, idx: u32, layout: &crate::TypeLayout) -> Result<()> {
        let info = self.type_info(idx)?;
        if info.fingerprint != layout.fingerprint()
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
                layout.fingerprint(),
                layout.size,
                layout.align
            )));
        }
        Ok(())
    }

    /// The recorded name and rendered layout of type `idx`.
    pub(crate) fn type_text(&self, idx: u32) -> Result<(String, String)> {
        let e = self.entry(idx)?;
        let blob = self.mem.u64(e + E_DESC)?;
        let len = self.mem.u32(e + E_DESC_LEN)? as u64;
        let name_len = (self.mem.u32(e + E_NAME_LEN)? as u64).min(len);
        let bytes = self.mem.read_bytes(blob, len)?;
        let (name, desc) = bytes.split_at(name_len as usize);
        Ok((
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(desc).into_owned(),
        ))
    }

    /// Number of registered types.
    pub(crate) fn type_count(&self) -> Result<u64> {
        Ok(self.registry()?.1)
    }
}
