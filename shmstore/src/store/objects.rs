//! Typed operations on named objects and slices: insert, get, remove, list.

use super::*;
use crate::layout::{encode_layout, LayoutDesc};

/// One named entry, as listed by [`Store::entries`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The object's name.
    pub name: String,
    /// The recorded type, as a type expression (`Point`, `[u8; 4]`,
    /// `ShmMutex<u64>`); for a slice, the element type.
    pub type_name: String,
    /// The type's fingerprint.
    pub fingerprint: u64,
    /// Bytes of the value (all elements of a slice).
    pub size: u64,
    /// Number of elements for a slice; `None` for a single object.
    pub len: Option<u64>,
    /// The type's layout as the store recorded it (for a slice, the
    /// element's), readable without the Rust type: field by field, with
    /// offsets and the layouts of nested types. Entries of the same type
    /// share one.
    pub layout: Arc<LayoutDesc>,
}

impl Store {
    /// Runs `f` with the header lock held and the registry index of the
    /// type `layout`, registering the type first if this store has not seen
    /// it. The layout is encoded outside the lock; a layout beyond the
    /// encoding's limits is [`Error::InvalidArgument`].
    ///
    /// The registry entry found is compared with the compile-time layout
    /// (size, alignment) before `f` may size anything by it: a corrupted
    /// entry is [`Error::Corrupted`], never an allocation of the wrong size.
    pub(super) fn with_type<R>(
        &self,
        layout: &'static TypeLayout,
        mut f: impl FnMut(&Arena<'_>, u32) -> Result<R>,
    ) -> Result<R> {
        check_type_layout(layout)?;
        let fp = layout.fingerprint();
        let done = self.with_arena(|a| match a.find_type(fp)? {
            Some(idx) => {
                a.check_registered(idx, layout)?;
                f(a, idx).map(Some)
            }
            None => Ok(None),
        })?;
        if let Some(r) = done {
            return Ok(r);
        }
        let encoded = encode_layout(layout).map_err(|e| Error::InvalidArgument {
            reason: format!("{} cannot be stored: {e}", layout.type_expr()),
        })?;
        // The shared walk that encoded it hashes to the `const fn`
        // fingerprint (otherwise every read of the entry would find it
        // corrupted).
        debug_assert_eq!(
            crate::layout::decode_layout(&encoded).map(|d| d.fingerprint()),
            Ok(fp),
            "{layout}"
        );
        self.with_arena(|a| {
            let idx = match a.find_type(fp)? {
                Some(idx) => idx,
                None => a.register_type(fp, layout.size as u64, layout.align as u64, &encoded)?,
            };
            a.check_registered(idx, layout)?;
            f(a, idx)
        })
    }

    /// Checks that `rec` holds a `T` (or a slice of `T`) and pins it.
    pub(super) fn typed_pin<T: ShmSafe>(
        &self,
        a: &Arena<'_>,
        name: &str,
        rec: u64,
        slice: bool,
    ) -> Result<Record> {
        let r = a.record(rec)?;
        let info = a.type_info(r.type_idx)?;
        if info.fingerprint != T::FINGERPRINT || r.is_slice() != slice {
            // Error path only: the stored layout text is copied out (and the
            // expected one rendered) under the lock, once.
            let (_, found_desc) = a.type_text(r.type_idx)?;
            let shape = |is_slice: bool, text: String| {
                if is_slice {
                    format!("a slice of {text}")
                } else {
                    text
                }
            };
            return Err(Error::TypeMismatch {
                name: name.to_string(),
                expected: shape(slice, T::LAYOUT.to_string()),
                found: shape(r.is_slice(), found_desc),
            });
        }
        if info.size != core::mem::size_of::<T>() as u64
            || info.align != core::mem::align_of::<T>() as u64
        {
            return Err(Error::corrupted(format!(
                "object \"{name}\": registry says {} bytes align {}, but its fingerprint is that of {}",
                info.size,
                info.align,
                T::LAYOUT.type_expr()
            )));
        }
        let counted = self.pin_in(a, rec)?;
        Ok(Record { counted, ..r })
    }

    pub(super) fn lookup_pinned<T: ShmSafe>(&self, name: &str, slice: bool) -> Result<Record> {
        check_type_layout(T::LAYOUT)?;
        let key = validate_object_name(name)?;
        let hash = hash_name(key);
        self.with_arena(|a| match a.lookup(key, hash)? {
            Some(Found { rec, .. }) => self.typed_pin::<T>(a, name, rec, slice),
            None => Err(Error::NotFound {
                what: format!("object \"{name}\""),
            }),
        })
    }

    /// Checks a pinned value's bytes if its type has invalid bit patterns
    /// (the caller's [`Pin`] gives the pin back if they are invalid).
    pub(super) fn check_value<T: ShmSafe>(&self, name: &str, r: &Record) -> Result<NonNull<T>> {
        check_type_layout(T::LAYOUT)?;
        let size = core::mem::size_of::<T>() as u64;
        let p = self
            .inner
            .mem
            .ptr(
                r.value,
                size.saturating_mul(r.len),
                core::mem::align_of::<T>() as u64,
            )?
            .cast::<T>();
        // Zero-sized elements have no bytes to check, however many a
        // (possibly corrupted) length claims.
        if T::HAS_INVALID_BIT_PATTERNS && size > 0 {
            for i in 0..r.len {
                // SAFETY: `ptr` checked that `len` elements of T lie inside
                // the mapping, aligned; the record is pinned so its memory
                // stays allocated; element `i < len`.
                if let Err(e) = unsafe { T::check_bytes(p.add(i as usize)) } {
                    return Err(Error::corrupted(format!(
                        "object \"{name}\": {}",
                        e.within(i as usize * size as usize)
                    )));
                }
            }
        }
        // SAFETY: `ptr` never returns null for an in-bounds offset of a
        // non-null mapping.
        Ok(unsafe { NonNull::new_unchecked(p) })
    }

    /// [`Store::put_once`], and once more if the store was full and
    /// releasing what dead processes held may have made room.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn put<T: ShmSafe>(
        &self,
        name: &str,
        slice: bool,
        len: u64,
        pin: bool,
        existing_ok: bool,
        fill: &mut dyn FnMut(*mut T) -> Result<()>,
    ) -> Result<(Record, bool)> {
        match self.put_once(name, slice, len, pin, existing_ok, fill) {
            Err(Error::OutOfMemory { .. }) => {
                self.reap()?;
                self.put_once(name, slice, len, pin, existing_ok, fill)
            }
            other => other,
        }
    }

    /// Reserves a record, fills it with `fill` (our own copy and in-place
    /// initialisation, never user code) and publishes it under `name`.
    /// With `existing_ok`, a name already present returns its record
    /// (pinned, type-checked) instead of an error. Returns the record and
    /// whether it is new; the record is pinned when `pin` is set.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn put_once<T: ShmSafe>(
        &self,
        name: &str,
        slice: bool,
        len: u64,
        pin: bool,
        existing_ok: bool,
        fill: &mut dyn FnMut(*mut T) -> Result<()>,
    ) -> Result<(Record, bool)> {
        let key = validate_object_name(name)?;
        let hash = hash_name(key);
        let bytes = (core::mem::size_of::<T>() as u64).saturating_mul(len);
        let exists = |a: &Arena<'_>, rec: u64| -> Result<(Record, bool)> {
            if existing_ok {
                Ok((self.typed_pin::<T>(a, name, rec, slice)?, false))
            } else {
                Err(Error::AlreadyExists {
                    what: format!("object \"{name}\""),
                })
            }
        };
        let finish = |a: &Arena<'_>, rec: u64| -> Result<(Record, bool)> {
            a.publish(hash, rec)?;
            let counted = if pin { self.pin_in(a, rec)? } else { false };
            Ok((
                Record {
                    counted,
                    ..a.record(rec)?
                },
                true,
            ))
        };
        let fill_at = |value: u64, fill: &mut dyn FnMut(*mut T) -> Result<()>| {
            let p = self
                .inner
                .mem
                .ptr(value, bytes, core::mem::align_of::<T>() as u64)?;
            fill(p.cast::<T>())
        };
        if bytes <= COPY_UNDER_LOCK {
            return self.with_type(T::LAYOUT, |a, idx| {
                if let Some(f) = a.lookup(key, hash)? {
                    return exists(a, f.rec);
                }
                let (rec, value) = a.new_record(key, idx, slice, len)?;
                if let Err(e) = fill_at(value, fill) {
                    a.free(rec)?;
                    return Err(e);
                }
                finish(a, rec)
            });
        }
        // Large: reserve under the lock, copy without it, publish under it.
        // The reservation is noted in our process slot, so that if we die
        // while copying, whoever finds us dead frees it. Without room to
        // note it, copy under the lock instead.
        let slot = self.inner.slot();
        let reserved = self.with_type(T::LAYOUT, |a, idx| {
            if let Some(f) = a.lookup(key, hash)? {
                return exists(a, f.rec).map(Err);
            }
            let (rec, value) = a.new_record(key, idx, slice, len)?;
            match slot {
                Some(slot) if a.reserve(slot, rec)? => Ok(Ok((slot, rec, value))),
                _ => {
                    fill_at(value, fill)?;
                    finish(a, rec).map(Err)
                }
            }
        })?;
        let (slot, rec, value) = match reserved {
            Ok(r) => r,
            Err(done) => return Ok(done),
        };
        if let Err(e) = fill_at(value, fill) {
            self.with_arena(|a| {
                a.unreserve(slot, rec)?;
                a.free(rec)
            })?;
            return Err(e);
        }
        crate::crash::step();
        // The name may have been taken while we copied: then our record is
        // freed and that commits, whatever `exists` answers.
        self.with_arena(|a| {
            a.unreserve(slot, rec)?;
            if let Some(f) = a.lookup(key, hash)? {
                a.free(rec)?;
                return Ok(exists(a, f.rec));
            }
            finish(a, rec).map(Ok)
        })?
    }

    /// Stores `value` under `name`. [`Error::AlreadyExists`] if the name is
    /// taken. The value is copied into the segment and initialised there
    /// (for example a [`ShmMutex`](crate::ShmMutex) becomes process-shared).
    pub fn insert<T: ShmSafe>(&self, name: &str, value: T) -> Result<()> {
        let items = core::slice::from_ref(&value);
        self.put::<T>(name, false, 1, false, false, &mut |dst| copy_in(dst, items))
            .map(|_| ())
    }

    /// Stores a copy of `items` under `name` as a slice.
    ///
    /// `T: Copy` rules out interior mutability (atomics, locks): no other
    /// thread can write the elements while they are copied. To store
    /// values that are not `Copy` (atomics, [`ShmMutex`](crate::ShmMutex)),
    /// hand them over by value with
    /// [`insert_slice_from_iter`](Store::insert_slice_from_iter).
    pub fn insert_slice<T: ShmSafe + Copy>(&self, name: &str, items: &[T]) -> Result<()> {
        self.put::<T>(name, true, items.len() as u64, false, false, &mut |dst| {
            copy_in(dst, items)
        })
        .map(|_| ())
    }

    /// Stores the values `items` yields under `name` as a slice, taking
    /// ownership of them (they are collected first, then copied into the
    /// segment and initialised there, so that, for example, each
    /// [`ShmMutex`](crate::ShmMutex) becomes process-shared).
    ///
    /// ```
    /// # fn main() -> shmstore::Result<()> {
    /// # let name = format!("doc-iter-{}", std::process::id());
    /// # let store = shmstore::Store::create(&name, 1 << 20)?;
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// store.insert_slice_from_iter("hits", (0..8).map(|_| AtomicU64::new(0)))?;
    /// let hits = store.get_slice::<AtomicU64>("hits")?;
    /// hits[3].fetch_add(1, Ordering::Relaxed);
    /// # shmstore::Store::unlink(&name)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn insert_slice_from_iter<T: ShmSafe>(
        &self,
        name: &str,
        items: impl IntoIterator<Item = T>,
    ) -> Result<()> {
        let items: Vec<T> = items.into_iter().collect();
        self.put::<T>(name, true, items.len() as u64, false, false, &mut |dst| {
            copy_in(dst, &items)
        })
        .map(|_| ())
    }

    /// A handle to the object `name`, checked to be a `T`.
    ///
    /// [`Error::NotFound`] if absent; [`Error::TypeMismatch`] (showing both
    /// layouts) if it was stored with another type or as a slice.
    pub fn get<T: ShmSafe>(&self, name: &str) -> Result<Handle<T>> {
        let r = self.lookup_pinned::<T>(name, false)?;
        // Owned first: if the check fails, dropping it gives the pin back.
        let pin = self.pin_of(&r);
        let ptr = self.check_value::<T>(name, &r)?;
        Ok(Handle { pin, ptr })
    }

    /// A handle to the slice `name`, checked to hold `T`s.
    pub fn get_slice<T: ShmSafe>(&self, name: &str) -> Result<SliceHandle<T>> {
        let r = self.lookup_pinned::<T>(name, true)?;
        let pin = self.pin_of(&r);
        let ptr = self.check_value::<T>(name, &r)?;
        Ok(SliceHandle {
            pin,
            ptr,
            len: r.len as usize,
        })
    }

    /// The object `name`, stored from `init()` if it does not exist yet.
    ///
    /// Atomic across processes: however many race, exactly one value is
    /// published and every caller gets a handle to it. `init` runs without
    /// any lock held, and may run in several racing processes; the values of
    /// the losers are discarded.
    pub fn get_or_insert_with<T: ShmSafe>(
        &self,
        name: &str,
        init: impl FnOnce() -> T,
    ) -> Result<Handle<T>> {
        match self.get::<T>(name) {
            Err(Error::NotFound { .. }) => {}
            other => return other,
        }
        let value = init();
        let items = core::slice::from_ref(&value);
        let (r, _) = self.put::<T>(name, false, 1, true, true, &mut |dst| copy_in(dst, items))?;
        // Owned first: if the check fails, dropping it gives the pin back.
        let pin = self.pin_of(&r);
        let ptr = self.check_value::<T>(name, &r)?;
        Ok(Handle { pin, ptr })
    }

    /// Removes `name`. Its memory is reused once no handle of this or any
    /// other process pins it.
    pub fn remove(&self, name: &str) -> Result<()> {
        let key = validate_object_name(name)?;
        let hash = hash_name(key);
        self.with_arena(|a| match a.lookup(key, hash)? {
            Some(found) => a.remove(&found),
            None => Err(Error::NotFound {
                what: format!("object \"{name}\""),
            }),
        })
    }

    /// `true` if an object or slice named `name` exists.
    pub fn contains(&self, name: &str) -> Result<bool> {
        let key = validate_object_name(name)?;
        let hash = hash_name(key);
        self.with_arena(|a| Ok(a.lookup(key, hash)?.is_some()))
    }

    /// Every named object and slice, in no particular order.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        self.with_arena(|a| {
            let mut out = Vec::new();
            // Each type's layout is decoded once, however many objects
            // have it.
            let mut types = std::collections::HashMap::<u32, (String, Arc<LayoutDesc>)>::new();
            for rec in a.records()? {
                let r = a.record(rec)?;
                let info = a.type_info(r.type_idx)?;
                let (type_name, layout) = match types.entry(r.type_idx) {
                    std::collections::hash_map::Entry::Occupied(t) => t.get().clone(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        let desc = a.type_desc(r.type_idx)?;
                        v.insert((desc.type_expr(), Arc::new(desc))).clone()
                    }
                };
                out.push(Entry {
                    name: a.record_name(rec)?,
                    type_name,
                    fingerprint: info.fingerprint,
                    size: info.size * r.len,
                    len: r.is_slice().then_some(r.len),
                    layout,
                });
            }
            Ok(out)
        })
    }

    /// The layout of the type with fingerprint `fingerprint`, as this
    /// store recorded it when an object of that type was first stored;
    /// `None` if no object of that type was ever stored here.
    ///
    /// For tools that do not have the Rust type: the layout says how to
    /// read a value field by field (see [`LayoutDesc`]). It is decoded
    /// from the segment and checked to have the fingerprint, size and
    /// alignment the registry records; bytes that fail are
    /// [`Error::Corrupted`].
    ///
    /// ```
    /// # fn main() -> shmstore::Result<()> {
    /// # let name = format!("doc-registered-{}", std::process::id());
    /// # let store = shmstore::Store::create(&name, 1 << 20)?;
    /// use shmstore::ShmSafe;
    ///
    /// store.insert("pair", [7u32, 9])?;
    /// let entry = store.entries()?.into_iter().find(|e| e.name == "pair").unwrap();
    /// let layout = store.registered_layout(entry.fingerprint)?.expect("registered");
    /// assert_eq!(layout.type_expr(), "[u32; 2]");
    /// assert_eq!(layout, *entry.layout);
    /// assert_eq!(layout.fingerprint(), <[u32; 2]>::FINGERPRINT);
    /// assert!(store.registered_layout(u64::FINGERPRINT)?.is_none());
    /// # shmstore::Store::unlink(&name)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn registered_layout(&self, fingerprint: u64) -> Result<Option<LayoutDesc>> {
        self.with_arena(|a| {
            a.find_type(fingerprint)?
                .map(|idx| a.type_desc(idx))
                .transpose()
        })
    }
}

/// Copies `items` bit for bit to `dst` and initialises them in place.
///
/// The caller's values stay where they are: a fill may run again if its
/// operation is rolled back and retried, and `T` has no drop glue, so the
/// copies are independent values.
///
/// `items` must not be written by anyone during the copy. Every caller
/// passes values no other thread can reach: an owned value
/// (`insert`, `get_or_insert_with`), an owned `Vec`
/// (`insert_slice_from_iter`), or a borrowed slice of a `Copy` type, which
/// has no interior mutability (`insert_slice`).
fn copy_in<T: ShmSafe>(dst: *mut T, items: &[T]) -> Result<()> {
    // SAFETY:
    // - `dst` points at `items.len()` elements of reserved, aligned,
    //   unpublished segment memory (checked by `put`), which cannot overlap
    //   the caller's slice (which is not in a segment region it reserved);
    // - no one writes `items` during the copy (see above), so it is not a
    //   data race.
    unsafe { core::ptr::copy_nonoverlapping(items.as_ptr(), dst, items.len()) };
    init_all(dst, items.len())
}

/// Refuses a type the store cannot place at the same alignment in every
/// process (a hand-written `ShmSafe` impl; the derive refuses it at compile
/// time).
pub(super) fn check_type_layout(layout: &TypeLayout) -> Result<()> {
    if layout.align as u64 > MAX_ALIGN || !layout.align.is_power_of_two() {
        return Err(Error::InvalidArgument {
            reason: format!(
                "{} is aligned to {} bytes; a store holds values aligned to at most {MAX_ALIGN} \
                 (a page), the only alignment every process's mapping has",
                layout.type_expr(),
                layout.align
            ),
        });
    }
    Ok(())
}

/// Runs `init_in_place` on `len` elements at `dst`.
fn init_all<T: ShmSafe>(dst: *mut T, len: usize) -> Result<()> {
    // A type that is not IMMOVABLE has nothing to initialise (ShmSafe
    // contract), and zero-sized elements have no bytes: skip the loop,
    // which could be long.
    if !T::IMMOVABLE || core::mem::size_of::<T>() == 0 {
        return Ok(());
    }
    for i in 0..len {
        // SAFETY: element `i < len` lies in the reserved, aligned,
        // unpublished memory `put` checked, and holds a bitwise copy of a
        // valid T; nothing else can reach it before publication.
        unsafe { T::init_in_place(dst.add(i)) }?;
    }
    Ok(())
}
