//! Typed operations on named objects and slices: insert, get, remove, list.

use super::*;
use crate::arena::Unfit;
use crate::layout::{encode_layout, graph_fingerprint_of, LayoutDesc};

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

impl Entry {
    /// `true` if the entry is a single object of type `T`: what
    /// [`Store::get::<T>`](Store::get) accepts. The store identifies types
    /// by their layout's fingerprint (containers' parameters included), so
    /// this is the same check `get` makes, without a lookup.
    ///
    /// ```
    /// # fn main() -> shmstore::Result<()> {
    /// # let name = format!("doc-entry-is-{}", std::process::id());
    /// # let store = shmstore::Store::create(&name, 1 << 20)?;
    /// store.insert("a", 1u64)?;
    /// store.insert("b", 2u32)?;
    /// store.insert_slice("c", &[3u64, 4])?;
    /// let mut u64s: Vec<String> = store
    ///     .entries()?
    ///     .into_iter()
    ///     .filter(|e| e.is::<u64>())
    ///     .map(|e| e.name)
    ///     .collect();
    /// assert_eq!(u64s, ["a"]);
    /// let slices = store.entries()?.into_iter().filter(|e| e.is_slice_of::<u64>()).count();
    /// assert_eq!(slices, 1);
    /// # shmstore::Store::unlink(&name)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn is<T: ShmSafe>(&self) -> bool {
        self.len.is_none() && self.holds::<T>()
    }

    /// `true` if the entry is a slice of `T`s: what
    /// [`Store::get_slice::<T>`](Store::get_slice) accepts.
    pub fn is_slice_of<T: ShmSafe>(&self) -> bool {
        self.len.is_some() && self.holds::<T>()
    }

    fn holds<T: ShmSafe>(&self) -> bool {
        self.fingerprint == graph_fingerprint_of::<T>()
            && self.layout.size == core::mem::size_of::<T>() as u64
            && self.layout.align == core::mem::align_of::<T>() as u64
    }
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
    pub(super) fn with_type<T: ShmSafe, R>(
        &self,
        mut f: impl FnMut(&Arena<'_>, u32) -> Result<R>,
    ) -> Result<R> {
        let layout = T::LAYOUT;
        check_type_layout(layout)?;
        let fp = graph_fingerprint_of::<T>();
        let done = self.with_arena(|a| match a.find_type(fp)? {
            Some(idx) => {
                a.check_registered(idx, layout, fp)?;
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
            crate::layout::decode_layout(&encoded).map(|d| d.graph_fingerprint()),
            Ok(fp),
            "{layout}"
        );
        self.with_arena(|a| {
            let idx = match a.find_type(fp)? {
                Some(idx) => idx,
                None => a.register_type(fp, layout.size as u64, layout.align as u64, &encoded)?,
            };
            a.check_registered(idx, layout, fp)?;
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
        if info.fingerprint != graph_fingerprint_of::<T>() || r.is_slice() != slice {
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
        self.lookup_pinned_how::<T>(name, slice, super::Wait::Block)?
            .ok_or_else(|| Error::corrupted("an untimed look-up ended without the header lock"))
    }

    /// [`Store::lookup_pinned`], taking the header lock as `how` says:
    /// `Ok(None)` if it was not free in time.
    pub(super) fn lookup_pinned_how<T: ShmSafe>(
        &self,
        name: &str,
        slice: bool,
        how: super::Wait,
    ) -> Result<Option<Record>> {
        check_type_layout(T::LAYOUT)?;
        let key = validate_object_name(name)?;
        let hash = hash_name(key);
        self.inner
            .with_arena_how(how, |a| match a.lookup(key, hash)? {
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
    pub(super) fn put<T: ShmSafe>(
        &self,
        name: &str,
        slice: bool,
        len: u64,
        mode: Put,
        fill: &mut dyn FnMut(*mut T) -> Result<()>,
    ) -> Result<(Record, bool)> {
        let put = match self.put_once(name, slice, len, mode, fill) {
            Err(Error::OutOfMemory { .. }) => {
                self.reap()?;
                self.put_once(name, slice, len, mode, fill)
            }
            other => other,
        };
        if let Ok((_, true)) = put {
            // Committed: wake whoever waits for a name to appear.
            self.inner.ring_published();
        }
        put
    }

    /// Reserves a record, fills it with `fill` (our own copy and in-place
    /// initialisation, never user code) and publishes it under `name` as
    /// `mode` says. Returns the record (pinned if the mode asks) and
    /// whether it is the new one.
    pub(super) fn put_once<T: ShmSafe>(
        &self,
        name: &str,
        slice: bool,
        len: u64,
        mode: Put,
        fill: &mut dyn FnMut(*mut T) -> Result<()>,
    ) -> Result<(Record, bool)> {
        let key = validate_object_name(name)?;
        let hash = hash_name(key);
        let bytes = (core::mem::size_of::<T>() as u64).saturating_mul(len);
        let pin = mode == Put::GetOrInsert;
        // What a name found already present means: the existing record (to
        // return) or an error, or, for a replacement, go on.
        let exists = |a: &Arena<'_>, rec: u64| -> Result<Option<(Record, bool)>> {
            match mode {
                Put::GetOrInsert => Ok(Some((self.typed_pin::<T>(a, name, rec, slice)?, false))),
                Put::Insert => Err(Error::AlreadyExists {
                    what: format!("object \"{name}\""),
                }),
                Put::Replace => Ok(None),
            }
        };
        let missing = || -> Result<()> {
            match mode {
                Put::Replace => Err(Error::NotFound {
                    what: format!("object \"{name}\""),
                }),
                _ => Ok(()),
            }
        };
        let finish = |a: &Arena<'_>, rec: u64, found: Option<Found>| -> Result<(Record, bool)> {
            if const { T::LAYOUT.has_containers() } {
                match a.link_value(rec)? {
                    None => {}
                    Some(Unfit::Foreign) => {
                        return Err(Error::ForeignContainer {
                            container: "container",
                            store: self.inner.name().to_string(),
                        })
                    }
                    Some(Unfit::Broken(what)) => {
                        return Err(Error::InvalidArgument {
                            reason: format!(
                                "the value holds a container that cannot be used ({what}): \
                                 its buffer was freed (a container taken out of the store \
                                 through a guard and not used before `collect` ran); \
                                 build a new one"
                            ),
                        })
                    }
                }
            }
            match found {
                Some(found) => a.replace(&found, hash, rec)?,
                None => a.publish(hash, rec)?,
            }
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
            return self.with_type::<T, _>(|a, idx| {
                let found = a.lookup(key, hash)?;
                match &found {
                    Some(f) => {
                        if let Some(done) = exists(a, f.rec)? {
                            return Ok(done);
                        }
                    }
                    None => missing()?,
                }
                let (rec, value) = a.new_record(key, idx, slice, len)?;
                if let Err(e) = fill_at(value, fill) {
                    a.free(rec)?;
                    return Err(e);
                }
                finish(a, rec, found)
            });
        }
        // Large: reserve under the lock, copy without it, publish under it.
        // The reservation is noted in our process slot, so that if we die
        // while copying, whoever finds us dead frees it. Without room to
        // note it, copy under the lock instead.
        let slot = self.inner.slot();
        let reserved = self.with_type::<T, _>(|a, idx| {
            let found = a.lookup(key, hash)?;
            match &found {
                Some(f) => {
                    if let Some(done) = exists(a, f.rec)? {
                        return Ok(Err(done));
                    }
                }
                None => missing()?,
            }
            let (rec, value) = a.new_record(key, idx, slice, len)?;
            match slot {
                Some(slot) if a.reserve(slot, rec)? => Ok(Ok((slot, rec, value))),
                _ => {
                    fill_at(value, fill)?;
                    finish(a, rec, found).map(Err)
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
        // The name may have been taken (or removed, for a replacement)
        // while we copied: then our record is freed and that commits,
        // whatever `exists` or `missing` answers.
        let published = self.with_arena(|a| {
            a.unreserve(slot, rec)?;
            let found = a.lookup(key, hash)?;
            let outcome = match &found {
                Some(f) => exists(a, f.rec).map(|d| d.ok_or(())),
                None => missing().map(|()| Err(())),
            };
            match outcome {
                Ok(Err(())) => finish(a, rec, found).map(Ok),
                Ok(Ok(done)) => {
                    a.free(rec)?;
                    Ok(Ok(done))
                }
                Err(e) => {
                    a.free(rec)?;
                    Ok(Err(e))
                }
            }
        });
        match published {
            Ok(done) => done,
            Err(e) => {
                // Undone: the record is still reserved in our slot. Free it
                // now rather than when this process exits (best effort: if
                // the store cannot be changed now, it stays noted there).
                let _ = self.with_arena(|a| {
                    a.unreserve(slot, rec)?;
                    a.free(rec)
                });
                Err(e)
            }
        }
    }

    /// Stores `value` under `name`. [`Error::AlreadyExists`] if the name is
    /// taken. The value is copied into the segment and initialised there
    /// (for example a [`ShmMutex`](crate::ShmMutex) becomes process-shared).
    ///
    /// A value holding containers ([`ShmVec`](crate::ShmVec), ...) hands
    /// their buffers over to the stored copy; if the insert fails, the value
    /// is dropped here, which frees them.
    pub fn insert<T: ShmSafe>(&self, name: &str, value: T) -> Result<()> {
        // Not dropped once copied in: the stored copy owns what it holds.
        let value = core::mem::ManuallyDrop::new(value);
        let items = core::slice::from_ref(&*value);
        match self.put::<T>(name, false, 1, Put::Insert, &mut |dst| copy_in(dst, items)) {
            Ok(_) => Ok(()),
            Err(e) => {
                drop(core::mem::ManuallyDrop::into_inner(value));
                Err(e)
            }
        }
    }

    /// Stores a copy of `items` under `name` as a slice.
    ///
    /// `T: Copy` rules out interior mutability (atomics, locks): no other
    /// thread can write the elements while they are copied. To store
    /// values that are not `Copy` (atomics, [`ShmMutex`](crate::ShmMutex)),
    /// hand them over by value with
    /// [`insert_slice_from_iter`](Store::insert_slice_from_iter).
    pub fn insert_slice<T: ShmSafe + Copy>(&self, name: &str, items: &[T]) -> Result<()> {
        self.put::<T>(name, true, items.len() as u64, Put::Insert, &mut |dst| {
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
        let mut items: Vec<T> = items.into_iter().collect();
        let put = self.put::<T>(name, true, items.len() as u64, Put::Insert, &mut |dst| {
            copy_in(dst, &items)
        });
        if put.is_ok() {
            // SAFETY: the stored copies own what the values held; the
            // originals must not be dropped (a length of 0 forgets them
            // and frees only the `Vec`'s own buffer).
            unsafe { items.set_len(0) };
        }
        put.map(|_| ())
    }

    /// Publishes `value` under `name` in place of its current value, in
    /// one step (read-copy-update): every `get` from then on sees the new
    /// value, while handles to the old one keep reading it intact until
    /// they are dropped; the old value (and what its containers hold) is
    /// freed at its last unpin. The new value may be of another type.
    /// [`Error::NotFound`] if `name` does not exist.
    ///
    /// ```
    /// # fn main() -> shmstore::Result<()> {
    /// # let name = format!("doc-replace-{}", std::process::id());
    /// # let store = shmstore::Store::create(&name, 1 << 20)?;
    /// store.insert("config", [1u32, 2, 3])?;
    /// let old = store.get::<[u32; 3]>("config")?;
    /// store.replace("config", [4u32, 5, 6])?;
    /// assert_eq!(*old, [1, 2, 3]); // a reader keeps what it had
    /// assert_eq!(*store.get::<[u32; 3]>("config")?, [4, 5, 6]);
    /// # shmstore::Store::unlink(&name)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn replace<T: ShmSafe>(&self, name: &str, value: T) -> Result<()> {
        let value = core::mem::ManuallyDrop::new(value);
        let items = core::slice::from_ref(&*value);
        match self.put::<T>(name, false, 1, Put::Replace, &mut |dst| copy_in(dst, items)) {
            Ok(_) => Ok(()),
            Err(e) => {
                drop(core::mem::ManuallyDrop::into_inner(value));
                Err(e)
            }
        }
    }

    /// [`Store::replace`] for a slice: publishes copies of `items` in place
    /// of `name`'s current value.
    pub fn replace_slice<T: ShmSafe + Copy>(&self, name: &str, items: &[T]) -> Result<()> {
        self.put::<T>(name, true, items.len() as u64, Put::Replace, &mut |dst| {
            copy_in(dst, items)
        })
        .map(|_| ())
    }

    /// The slice `name`, stored from the values `init()` yields if it does
    /// not exist yet. Atomic across processes, like
    /// [`get_or_insert_with`](Store::get_or_insert_with): `init` runs
    /// without any lock held, perhaps in several racing processes, and the
    /// values of the losers are dropped.
    pub fn get_or_insert_slice_with<T: ShmSafe, I: IntoIterator<Item = T>>(
        &self,
        name: &str,
        init: impl FnOnce() -> I,
    ) -> Result<SliceHandle<T>> {
        match self.get_slice::<T>(name) {
            Err(Error::NotFound { .. }) => {}
            other => return other,
        }
        let mut items: Vec<T> = init().into_iter().collect();
        let (r, new) = self.put::<T>(
            name,
            true,
            items.len() as u64,
            Put::GetOrInsert,
            &mut |dst| copy_in(dst, &items),
        )?;
        if new {
            // SAFETY: the stored copies own what the values held (see
            // `insert_slice_from_iter`).
            unsafe { items.set_len(0) };
        }
        let pin = self.pin_of(&r);
        let ptr = self.check_value::<T>(name, &r)?;
        Ok(SliceHandle {
            pin,
            ptr,
            len: r.len as usize,
        })
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

    /// [`Store::get`], waiting for the header lock only until `at`:
    /// `Ok(None)` if it was not free by then.
    pub(super) fn get_until<T: ShmSafe>(
        &self,
        name: &str,
        at: Instant,
    ) -> Result<Option<Handle<T>>> {
        let Some(r) = self.lookup_pinned_how::<T>(name, false, super::Wait::Until(at))? else {
            return Ok(None);
        };
        let pin = self.pin_of(&r);
        let ptr = self.check_value::<T>(name, &r)?;
        Ok(Some(Handle { pin, ptr }))
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
        let value = core::mem::ManuallyDrop::new(init());
        let items = core::slice::from_ref(&*value);
        let (r, new) = match self.put::<T>(name, false, 1, Put::GetOrInsert, &mut |dst| {
            copy_in(dst, items)
        }) {
            Ok(done) => done,
            Err(e) => {
                drop(core::mem::ManuallyDrop::into_inner(value));
                return Err(e);
            }
        };
        if !new {
            // Another process published first: this value was not stored.
            drop(core::mem::ManuallyDrop::into_inner(value));
        }
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

/// How [`Store::put`] treats a name that is already taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Put {
    /// [`Error::AlreadyExists`].
    Insert,
    /// Return the existing record, type-checked and pinned; a new one is
    /// pinned too.
    GetOrInsert,
    /// Publish the new record in its place ([`Error::NotFound`] if absent).
    Replace,
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
