//! [`ShmMap<K, V>`]: a hash map in a store.

use core::fmt;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU64, Ordering};

use super::ctx::Ctx;
use super::own;
use super::raw::{Buf, RawBuf};
use super::{Ref, RefMut, ShmString};
use crate::arena::dir::hash_name;
use crate::layout::{InvalidBitPattern, LayoutKind, LazyLayout, ShmMovable, ShmSafe, TypeLayout};
use crate::{Error, Result, Store};

/// A type that can key a [`ShmMap`]: integers, byte arrays and
/// [`ShmString`].
///
/// A key is hashed and compared by its bytes; a lookup takes the key's
/// *query* form (`u64` for a `u64` key, `str` for a `ShmString` key), so no
/// key needs to be built, or allocated, to look one up.
///
/// # Safety
///
/// `with_bytes` and `query_bytes` give the same bytes for a key and the
/// query it was made from, and `from_query` makes a key whose bytes are the
/// query's.
pub unsafe trait ShmKey: ShmMovable {
    /// What a lookup takes: the key itself, or a borrowed form of it.
    type Query: ?Sized;

    /// Calls `f` with the bytes of a query.
    #[doc(hidden)]
    fn query_bytes<R>(q: &Self::Query, f: impl FnOnce(&[u8]) -> R) -> R;

    /// Calls `f` with the bytes of a stored key.
    #[doc(hidden)]
    fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R>;

    /// A key made from a query, allocated (if it allocates) in the store
    /// with id `store_id`.
    #[doc(hidden)]
    fn from_query(q: &Self::Query, store_id: u64) -> Result<Self>;
}

macro_rules! int_keys {
    ($($t:ty),*) => {$(
        // SAFETY: a key's bytes are its little-endian bytes, the same for
        // the key and its query (the same integer).
        unsafe impl ShmKey for $t {
            type Query = $t;
            fn query_bytes<R>(q: &$t, f: impl FnOnce(&[u8]) -> R) -> R {
                f(&q.to_le_bytes())
            }
            fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
                Ok(f(&self.to_le_bytes()))
            }
            fn from_query(q: &$t, _: u64) -> Result<$t> {
                Ok(*q)
            }
        }
    )*};
}
int_keys!(u8, u16, u32, u64, u128, i8, i16, i32, i64, i128);

// SAFETY: a byte array's bytes are itself, for the key and its query.
unsafe impl<const N: usize> ShmKey for [u8; N] {
    type Query = [u8; N];
    fn query_bytes<R>(q: &[u8; N], f: impl FnOnce(&[u8]) -> R) -> R {
        f(q)
    }
    fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        Ok(f(self))
    }
    fn from_query(q: &[u8; N], _: u64) -> Result<[u8; N]> {
        Ok(*q)
    }
}

// SAFETY: a string key's bytes are its UTF-8 bytes; `from_query` copies the
// query's.
unsafe impl ShmKey for ShmString {
    type Query = str;
    fn query_bytes<R>(q: &str, f: impl FnOnce(&[u8]) -> R) -> R {
        f(q.as_bytes())
    }
    fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        Ok(f(&self.as_bytes()?))
    }
    fn from_query(q: &str, store_id: u64) -> Result<ShmString> {
        let mut s = ShmString::bound(store_id);
        s.push_str(q)?;
        Ok(s)
    }
}

/// One slot of a map's table.
///
/// # Layout
///
/// `#[repr(C)]`: `meta` (0 empty, 1 a removed entry, otherwise the key's
/// hash with bit 63 set: a live entry), then `key`, then `value`, each at
/// the next multiple of its alignment. Its layout is opaque, named
/// `ShmMapEntry`, with `K`'s and `V`'s layouts as parameters.
#[repr(C)]
pub(crate) struct Slot<K, V> {
    meta: u64,
    pub(crate) key: K,
    pub(crate) value: V,
}

const EMPTY: u64 = 0;
const REMOVED: u64 = 1;
use super::layout::LIVE;

fn meta_of(hash: u64) -> u64 {
    hash | LIVE
}

// SAFETY: a word and a `K` and a `V`, all ShmSafe, in `repr(C)`; its bytes
// are checked through `check_bytes` (the meta word accepts every value; the
// key and value are checked only in live slots — an empty slot's bytes are
// never read as `K`/`V`, see `ShmMap`). Not immovable: maps require movable
// keys and values.
unsafe impl<K: ShmSafe, V: ShmSafe> ShmSafe for Slot<K, V> {
    const LAYOUT: &'static TypeLayout = &TypeLayout {
        name: "ShmMapEntry",
        size: core::mem::size_of::<Self>(),
        align: core::mem::align_of::<Self>(),
        kind: LayoutKind::Container {
            params: &[LazyLayout::of::<K>(), LazyLayout::of::<V>()],
        },
    };
    // The slots' key and value bytes are checked per live slot by the map
    // (empty slots hold arbitrary bytes), not as a whole.
    const HAS_INVALID_BIT_PATTERNS: bool = false;
    unsafe fn check_bytes(_: *const Self) -> core::result::Result<(), InvalidBitPattern> {
        Ok(())
    }
}

/// A hash map from `K` to `V` in a store, allocated from its arena: an
/// open-addressing table, probed linearly, in one nested block.
///
/// ```
/// use shmstore::{ShmMap, ShmMutex, ShmString, Store};
///
/// # fn main() -> shmstore::Result<()> {
/// # let name = format!("doc-map-{}", std::process::id());
/// let store = Store::open_or_create(&name, 1 << 20)?;
/// let ages = store.get_or_insert_with("ages", || {
///     ShmMutex::new(ShmMap::<ShmString, u32>::new())
/// })?;
/// let mut ages = ages.lock()?;
/// ages.insert("ada", 36)?;
/// ages.insert("alan", 41)?;
/// assert_eq!(ages.get("ada")?.map(|v| *v), Some(36));
/// assert_eq!(ages.insert("ada", 37)?, Some(36));
/// assert_eq!(ages.remove("alan")?, Some(41));
/// assert_eq!(ages.len()?, 1);
/// # drop(ages);
/// # Store::unlink(&name)?;
/// # Ok(())
/// # }
/// ```
///
/// # Crash safety
///
/// An entry is written before the word that makes it live; removal marks
/// the slot removed before the key and value are dropped; growth builds a
/// new table and switches to it with one word. The count of entries is
/// updated after the entry's own word, so a crash between the two can leave
/// it one off until the next growth recounts. Replacing the value of an
/// existing key overwrites it in place: a crash during that write can leave
/// the value half-written (its bytes are checked when read — invalid ones
/// are an error, a half-written container fails its own checks); the
/// `ShmMutex` the map lives behind reports the holder's death so that the
/// next holder can repair it.
///
/// # Layout
///
/// `#[repr(C)]`, 32 bytes, align 8: the three words of a
/// [`ShmVec`](crate::ShmVec) (store id, token, offset of its table, a nested
/// block of `ShmMapEntry<K, V>` slots whose length is the number of
/// entries), then the number of removed slots. Its layout is opaque, named
/// `ShmMap`, with `K`'s and `V`'s layouts as parameters.
#[repr(C)]
pub struct ShmMap<K: ShmKey, V: ShmMovable> {
    raw: RawBuf,
    removed: AtomicU64,
    _kv: PhantomData<(K, V)>,
}

const WHAT: &str = "ShmMap";

impl<K: ShmKey, V: ShmMovable> Default for ShmMap<K, V> {
    fn default() -> Self {
        ShmMap::new()
    }
}

/// Where a key is, or would go.
enum Probe {
    Found(usize),
    Vacant(usize),
    Full,
}

impl<K: ShmKey, V: ShmMovable> ShmMap<K, V> {
    /// An empty map bound to no store (see [`ShmVec::new`](crate::ShmVec::new)).
    pub const fn new() -> Self {
        ShmMap {
            raw: RawBuf::new(),
            removed: AtomicU64::new(0),
            _kv: PhantomData,
        }
    }

    /// An empty map that allocates from `store`.
    pub fn new_in(store: &Store) -> Self {
        ShmMap {
            raw: RawBuf::bound(Ctx::for_store(store).store_id),
            removed: AtomicU64::new(0),
            _kv: PhantomData,
        }
    }

    fn ctx(&self) -> Result<Ctx<'_>> {
        self.raw.ctx(self, WHAT)
    }

    /// The table: its slots (all of them: the length counts live entries)
    /// and the buffer.
    fn table(&self, ctx: &Ctx<'_>) -> Result<Option<(*mut Slot<K, V>, Buf)>> {
        let Some(b) = self.raw.buffer::<Slot<K, V>>(ctx)? else {
            return Ok(None);
        };
        if !b.n.cap.is_power_of_two() {
            return Err(Error::corrupted(format!(
                "ShmMap: table capacity {} is not a power of two",
                b.n.cap
            )));
        }
        let p = b.n.ptr.cast::<Slot<K, V>>();
        Ok(Some((p, b)))
    }

    /// Number of entries.
    pub fn len(&self) -> Result<usize> {
        if self.raw.is_unallocated() {
            return Ok(0);
        }
        let ctx = self.ctx()?;
        Ok(self.table(&ctx)?.map_or(0, |(_, b)| b.n.len as usize))
    }

    /// `true` if there are no entries.
    pub fn is_empty(&self) -> Result<bool> {
        self.len().map(|n| n == 0)
    }

    /// Slots in the table (it grows when three quarters are in use, removed
    /// entries included).
    pub fn capacity(&self) -> Result<usize> {
        if self.raw.is_unallocated() {
            return Ok(0);
        }
        let ctx = self.ctx()?;
        Ok(self.table(&ctx)?.map_or(0, |(_, b)| b.n.cap as usize))
    }

    /// Checks the key and value of a live slot.
    fn check_slot(s: *const Slot<K, V>) -> Result<()> {
        // SAFETY: the caller passes a slot inside the checked table; only
        // the fields' addresses are computed.
        let (k, v) = unsafe {
            (
                core::ptr::addr_of!((*s).key),
                core::ptr::addr_of!((*s).value),
            )
        };
        if K::HAS_INVALID_BIT_PATTERNS {
            // SAFETY: `k` is an aligned field of the slot, inside the table.
            unsafe { K::check_bytes(k) }
                .map_err(|e| Error::corrupted(format!("ShmMap key: {e}")))?;
        }
        if V::HAS_INVALID_BIT_PATTERNS {
            // SAFETY: as above.
            unsafe { V::check_bytes(v) }
                .map_err(|e| Error::corrupted(format!("ShmMap value: {e}")))?;
        }
        Ok(())
    }

    /// Finds `q` in the table `p` of `cap` slots.
    fn probe(p: *mut Slot<K, V>, cap: usize, q: &K::Query) -> Result<Probe> {
        let hash = K::query_bytes(q, hash_name);
        let meta = meta_of(hash);
        let mask = cap - 1;
        let mut i = hash as usize & mask;
        let mut vacant = None;
        for _ in 0..cap {
            // SAFETY: `i < cap`: inside the checked table; the meta word is
            // read as an integer (every value is valid), atomically because
            // the table is the map's own and no one else writes it now.
            let m = unsafe { (*p.add(i)).meta };
            if m == EMPTY {
                return Ok(Probe::Vacant(vacant.unwrap_or(i)));
            }
            if m == REMOVED {
                vacant.get_or_insert(i);
            } else if m == meta {
                Self::check_slot(p.wrapping_add(i))?;
                // SAFETY: a live slot: its key was written before its meta
                // word and checked just above.
                let key = unsafe { &(*p.add(i)).key };
                let same = key.with_bytes(|kb| K::query_bytes(q, |qb| kb == qb))?;
                if same {
                    return Ok(Probe::Found(i));
                }
            }
            i = (i + 1) & mask;
        }
        Ok(match vacant {
            Some(i) => Probe::Vacant(i),
            None => Probe::Full,
        })
    }

    /// The value of `key`.
    pub fn get(&self, key: &K::Query) -> Result<Option<Ref<'_, V>>> {
        if self.raw.is_unallocated() {
            return Ok(None);
        }
        let ctx = self.ctx()?;
        let Some((p, b)) = self.table(&ctx)? else {
            return Ok(None);
        };
        match Self::probe(p, b.n.cap as usize, key)? {
            Probe::Found(i) => {
                // SAFETY: a live, checked slot of the table, which only
                // `&mut self` writes; the mapping outlives the `Ref`.
                let v = unsafe { &(*p.add(i)).value };
                Ok(Some(Ref::new(v, ctx.keep())))
            }
            _ => Ok(None),
        }
    }

    /// `true` if `key` has an entry.
    pub fn contains_key(&self, key: &K::Query) -> Result<bool> {
        self.get(key).map(|v| v.is_some())
    }

    /// The value of `key`, mutably.
    pub fn get_mut(&mut self, key: &K::Query) -> Result<Option<RefMut<'_, V>>> {
        if self.raw.is_unallocated() {
            return Ok(None);
        }
        let ctx = self.ctx()?;
        let Some((p, b)) = self.table(&ctx)? else {
            return Ok(None);
        };
        match Self::probe(p, b.n.cap as usize, key)? {
            Probe::Found(i) => {
                let keep = ctx.keep();
                // SAFETY: as in `get`, exclusively (`&mut self`); `V` is
                // movable.
                let v = unsafe { &mut (*p.add(i)).value };
                Ok(Some(RefMut::new(v, keep)))
            }
            _ => Ok(None),
        }
    }

    /// Moves every live entry into a new table of `cap` slots (a power of
    /// two, more than the entries) and switches to it with one word.
    fn rehash(&self, ctx: &Ctx<'_>, cap: u64) -> Result<Buf> {
        // SAFETY: the closure sets every slot of the new table empty, then
        // moves each live slot of the old table (inside its capacity)
        // bitwise into an empty slot of the new one, and returns their
        // number; the old copies are never used after the switch. A live
        // slot's bytes are moved, not read as `K`/`V`.
        unsafe {
            self.raw.rebuild::<Slot<K, V>>(ctx, cap, |old, new| {
                let cap = cap as usize;
                for i in 0..cap {
                    core::ptr::addr_of_mut!((*new.add(i)).meta).write(EMPTY);
                }
                let Some((old, n)) = old else {
                    return Ok(0);
                };
                let mut moved = 0u64;
                for i in 0..n.cap as usize {
                    let meta = (*old.add(i)).meta;
                    if meta & LIVE == 0 {
                        continue;
                    }
                    if moved as usize >= cap {
                        return Err(Error::corrupted(
                            "ShmMap: more live entries than the new table holds",
                        ));
                    }
                    let mut j = meta as usize & (cap - 1);
                    while (*new.add(j)).meta != EMPTY {
                        j = (j + 1) & (cap - 1);
                    }
                    core::ptr::copy_nonoverlapping(old.add(i), new.add(j), 1);
                    moved += 1;
                }
                Ok(moved)
            })
        }
    }

    /// Inserts `value` under `key`; returns the value it replaces.
    pub fn insert(&mut self, key: &K::Query, value: V) -> Result<Option<V>> {
        let ctx = self.ctx()?;
        let (p, b) = match self.table(&ctx)? {
            Some((p, b)) => {
                let used = b.n.len.saturating_add(self.removed.load(Ordering::Relaxed));
                if used.saturating_add(1).saturating_mul(4) > b.n.cap.saturating_mul(3) {
                    let cap = if b.n.len.saturating_add(1).saturating_mul(2) > b.n.cap {
                        b.n.cap.saturating_mul(2)
                    } else {
                        b.n.cap
                    };
                    self.grow(&ctx, cap)?
                } else {
                    (p, b)
                }
            }
            None => self.grow(&ctx, 8)?,
        };
        let cap = b.n.cap as usize;
        match Self::probe(p, cap, key)? {
            Probe::Found(i) => {
                let s = p.wrapping_add(i);
                own::claim::<V>(&ctx, Self::field_at(&b, i, value_offset::<K, V>()), 1)?;
                // SAFETY: a live, checked slot; the old value is read out
                // (its copy is returned: the caller owns it) and the new one
                // written over it in place (see "Crash safety").
                let old = unsafe {
                    let v = core::ptr::addr_of_mut!((*s).value);
                    let old = v.read();
                    v.write(value);
                    old
                };
                crate::crash::step();
                Ok(Some(old))
            }
            Probe::Vacant(i) => self.insert_vacant(&ctx, p, b, i, key, value).map(|()| None),
            Probe::Full => {
                let (p, b) = self.grow(&ctx, b.n.cap.saturating_mul(2))?;
                match Self::probe(p, b.n.cap as usize, key)? {
                    Probe::Vacant(i) => {
                        self.insert_vacant(&ctx, p, b, i, key, value).map(|()| None)
                    }
                    _ => Err(Error::corrupted("ShmMap: no vacant slot after growing")),
                }
            }
        }
    }

    /// Grows (or rehashes) the table to `cap` slots and returns it.
    fn grow(&self, ctx: &Ctx<'_>, cap: u64) -> Result<(*mut Slot<K, V>, Buf)> {
        self.rehash(ctx, cap.max(8))?;
        self.removed.store(0, Ordering::Relaxed);
        self.table(ctx)?
            .ok_or_else(|| Error::corrupted("ShmMap: no table after growing"))
    }

    /// Writes a new entry for `key` (known absent) into vacant slot `i`
    /// (found by `probe`).
    fn insert_vacant(
        &self,
        ctx: &Ctx<'_>,
        p: *mut Slot<K, V>,
        b: Buf,
        i: usize,
        key: &K::Query,
        value: V,
    ) -> Result<()> {
        let stored = K::from_query(key, ctx.store_id)?;
        let hash = K::query_bytes(key, hash_name);
        let s = p.wrapping_add(i);
        // SAFETY: slot `i < cap` of the checked table is vacant (empty or
        // removed): no one reads its key or value. Both are written before
        // the meta word that makes the entry live.
        let was = unsafe {
            core::ptr::addr_of_mut!((*s).key).write(stored);
            core::ptr::addr_of_mut!((*s).value).write(value);
            let meta = core::ptr::addr_of_mut!((*s).meta);
            let was = meta.read();
            crate::crash::step();
            // The one word that publishes the entry.
            (*(meta as *const AtomicU64)).store(meta_of(hash), Ordering::Release);
            was
        };
        crate::crash::step();
        if was == REMOVED {
            let r = self.removed.load(Ordering::Relaxed);
            self.removed.store(r.saturating_sub(1), Ordering::Relaxed);
        }
        self.raw.set_len(&b, b.n.len.saturating_add(1).min(b.n.cap))
    }

    /// Removes `key`'s entry and returns its value.
    pub fn remove(&mut self, key: &K::Query) -> Result<Option<V>> {
        if self.raw.is_unallocated() {
            return Ok(None);
        }
        let ctx = self.ctx()?;
        let Some((p, b)) = self.table(&ctx)? else {
            return Ok(None);
        };
        let Probe::Found(i) = Self::probe(p, b.n.cap as usize, key)? else {
            return Ok(None);
        };
        let s = p.wrapping_add(i);
        self.claim_slot(&ctx, &b, i)?;
        // SAFETY: a live, checked slot. Key and value are copied out, then
        // the slot is marked removed (the one word that unpublishes the
        // entry); from then on the copies are their only owners. A crash
        // before the mark leaves the entry in place; after it, at most the
        // key's allocations are unreachable.
        let (k, v) = unsafe {
            let k = core::ptr::addr_of!((*s).key).read();
            let v = core::ptr::addr_of!((*s).value).read();
            let meta = core::ptr::addr_of_mut!((*s).meta) as *const AtomicU64;
            (*meta).store(REMOVED, Ordering::Release);
            (k, v)
        };
        crate::crash::step();
        self.removed.fetch_add(1, Ordering::Relaxed);
        self.raw.set_len(&b, b.n.len.saturating_sub(1))?;
        // SAFETY: the slot is removed (no one reads its key or value), and
        // the copies own them: no stale container words stay behind.
        unsafe { Self::zero_slot(s) };
        drop(k);
        Ok(Some(v))
    }

    /// Removes every entry (the table is kept).
    pub fn clear(&mut self) -> Result<()> {
        let keys: Vec<usize> = {
            let ctx = self.ctx()?;
            match self.table(&ctx)? {
                Some((p, b)) => (0..b.n.cap as usize)
                    // SAFETY: `i < cap`: the meta word of a slot of the
                    // checked table, read as an integer.
                    .filter(|&i| unsafe { (*p.add(i)).meta } & LIVE != 0)
                    .collect(),
                None => return Ok(()),
            }
        };
        for i in keys {
            let ctx = self.ctx()?;
            let Some((p, b)) = self.table(&ctx)? else {
                break;
            };
            let s = p.wrapping_add(i);
            Self::check_slot(s)?;
            self.claim_slot(&ctx, &b, i)?;
            // SAFETY: as in `remove`, for live slot `i` (re-checked above).
            let (k, v) = unsafe {
                let k = core::ptr::addr_of!((*s).key).read();
                let v = core::ptr::addr_of!((*s).value).read();
                let meta = core::ptr::addr_of_mut!((*s).meta) as *const AtomicU64;
                (*meta).store(REMOVED, Ordering::Release);
                (k, v)
            };
            self.removed.fetch_add(1, Ordering::Relaxed);
            self.raw.set_len(&b, b.n.len.saturating_sub(1))?;
            // SAFETY: as in `remove`.
            unsafe { Self::zero_slot(s) };
            drop((k, v));
        }
        Ok(())
    }

    /// Calls `f` with every entry, in table order.
    pub fn for_each(&self, mut f: impl FnMut(&K, &V)) -> Result<()> {
        if self.raw.is_unallocated() {
            return Ok(());
        }
        let ctx = self.ctx()?;
        let Some((p, b)) = self.table(&ctx)? else {
            return Ok(());
        };
        for i in 0..b.n.cap as usize {
            let s = p.wrapping_add(i);
            // SAFETY: `i < cap`: a slot of the checked table; its meta word
            // is an integer.
            if unsafe { (*s).meta } & LIVE == 0 {
                continue;
            }
            Self::check_slot(s)?;
            // SAFETY: a live, checked slot, written only through `&mut self`.
            let (k, v) = unsafe { (&(*s).key, &(*s).value) };
            f(k, v);
        }
        Ok(())
    }

    /// The keys' copies and values' copies, for small maps and tests.
    pub fn to_vec(&self) -> Result<Vec<(K, V)>>
    where
        K: Copy,
        V: Copy,
    {
        let mut out = Vec::new();
        self.for_each(|k, v| out.push((*k, *v)))?;
        Ok(out)
    }

    /// Claims what slot `i`'s key and value own, before they are taken
    /// out of the table (see `own`).
    fn claim_slot(&self, ctx: &Ctx<'_>, b: &Buf, i: usize) -> Result<()> {
        own::claim::<K>(ctx, Self::field_at(b, i, key_offset::<K, V>()), 1)?;
        own::claim::<V>(ctx, Self::field_at(b, i, value_offset::<K, V>()), 1)
    }

    /// The offset in the segment of the field at `field` of slot `i`.
    fn field_at(b: &Buf, i: usize, field: usize) -> u64 {
        b.n.elems + (i * core::mem::size_of::<Slot<K, V>>() + field) as u64
    }

    /// Zeroes a removed slot's key and value.
    ///
    /// # Safety
    ///
    /// `s` is a slot of a checked table whose key and value are no longer
    /// read (removed, their copies owned elsewhere).
    unsafe fn zero_slot(s: *mut Slot<K, V>) {
        // SAFETY: the caller's contract; `addr_of_mut!` creates no
        // reference.
        unsafe {
            super::vec::zero(core::ptr::addr_of_mut!((*s).key), 1);
            super::vec::zero(core::ptr::addr_of_mut!((*s).value), 1);
        }
    }

    fn release(&self) {
        // Frees the table and what its live slots' keys and values own, by
        // walking them (see `RawBuf::release`).
        self.raw.release::<Slot<K, V>, Self>(self, WHAT);
    }
}

/// Offsets of a slot's key and value (as `#[repr(C)]` lays them out).
const fn key_offset<K, V>() -> usize {
    core::mem::offset_of!(Slot<K, V>, key)
}
const fn value_offset<K, V>() -> usize {
    core::mem::offset_of!(Slot<K, V>, value)
}

impl<K: ShmKey, V: ShmMovable> Drop for ShmMap<K, V> {
    /// Drops every key and value and frees the table (see
    /// [`ShmVec`](crate::ShmVec)'s `Drop`).
    fn drop(&mut self) {
        self.release();
    }
}

impl<K: ShmKey + fmt::Debug, V: ShmMovable + fmt::Debug> fmt::Debug for ShmMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        if let Err(e) = self.for_each(|k, v| {
            m.entry(k, v);
        }) {
            return write!(f, "ShmMap(<{e}>)");
        }
        m.finish()
    }
}

// SAFETY: as for `ShmVec` (offsets checked at every use, a `Drop` that
// frees only its own table in its own store, atomics for mutation through
// `&Self`; a removed-slot count, an integer); its layout names `K` and `V`,
// and the table's fingerprint (of `ShmMapEntry<K, V>`) is checked at every
// use. Keys and values in live slots are checked before a reference exists.
unsafe impl<K: ShmKey, V: ShmMovable> ShmSafe for ShmMap<K, V> {
    const LAYOUT: &'static TypeLayout = &TypeLayout {
        name: "ShmMap",
        size: core::mem::size_of::<Self>(),
        align: core::mem::align_of::<Self>(),
        kind: LayoutKind::Container {
            params: &[LazyLayout::of::<K>(), LazyLayout::of::<V>()],
        },
    };
}

// SAFETY: moving the map moves four words; its table stays in place.
unsafe impl<K: ShmKey, V: ShmMovable> ShmMovable for ShmMap<K, V> {}
