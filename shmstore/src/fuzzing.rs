//! Fuzzing support (feature `fuzzing`, off by default): a one-line fuzz
//! target for your own types, and the entry points the project's own fuzz
//! targets (`fuzz/` in the repository) use.
//!
//! # Fuzzing your own type
//!
//! [`check_type`] is a whole fuzz target for any [`ShmSafe`] type: it
//! feeds arbitrary bytes to the type's byte check and compares the verdict
//! with an independent reading of the type's recorded layout
//! ([`reference_check`]), checks that the layout survives the binary
//! encoding of the type registry with its fingerprint, and stores accepted
//! values in a store and reads them back.
//!
//! ```ignore
//! // fuzz/fuzz_targets/my_type.rs
//! #![no_main]
//! libfuzzer_sys::fuzz_target!(|data: &[u8]| shmstore::fuzzing::check_type::<my_crate::MyType>(data));
//! ```
//!
//! `fuzz/README.md` in the repository shows the whole setup and the
//! commands (`cargo +nightly fuzz run my_type`).
//!
//! # For the project's fuzz targets
//!
//! The rest is not a stable API (`#[doc(hidden)]`): stores over heap memory
//! ([`create_in_heap`], [`open_image`]), images of a store's bytes
//! ([`image`]), and a crash simulated at a step of an operation without
//! aborting ([`image_at_step`]): libFuzzer would report an abort as a
//! finding, so instead the target keeps the image of the store as a process
//! that died at that step would have left it, lets the operation finish, and
//! recovers from the image.

use core::cell::{Cell, RefCell};
use core::ptr::NonNull;
use std::sync::OnceLock;

use crate::layout::{decode_layout, encode_layout, graph_fingerprint_of, LayoutKind};
use crate::store::HeaderLockMode;
use crate::{Error, Result, ShmSafe, Store, TypeLayout};

/// What to make of the header lock's bytes in an image being opened with
/// [`open_image`].
///
/// The processes that share a store are trusted not to write over its
/// locks (a `pthread_mutex_t` with arbitrary bytes can make a locker wait
/// forever), so a fuzz target that opens arbitrary bytes replaces the
/// header lock with a valid one, free or left by a dead owner.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderLock {
    /// Keep the bytes: only for images this process took with [`image`] or
    /// [`image_at_step`], whose lock is a valid mutex.
    AsIs,
    /// A freshly initialised, free lock.
    Unlocked,
    /// A freshly initialised lock whose owner died holding it: the first
    /// operation recovers the store (rolls back its journal).
    OwnerDied,
}

impl HeaderLock {
    fn mode(self) -> HeaderLockMode {
        match self {
            HeaderLock::AsIs => HeaderLockMode::AsIs,
            HeaderLock::Unlocked => HeaderLockMode::Unlocked,
            HeaderLock::OwnerDied => HeaderLockMode::OwnerDied,
        }
    }
}

/// A new, empty store of `capacity` bytes (rounded up to a page, at least
/// [`MIN_CAPACITY`](crate::MIN_CAPACITY)) in page-aligned heap memory
/// instead of a `/dev/shm` segment: the same code runs over it, and
/// AddressSanitizer sees every access.
#[doc(hidden)]
pub fn create_in_heap(capacity: u64) -> Result<Store> {
    Store::create_in_heap(capacity)
}

/// Opens the bytes `image`, zero-extended to `len` bytes (a segment's
/// uncommitted pages read as zeros), as a store in heap memory, validating
/// it as [`Store::open`] validates a segment; a store still being created
/// is an error at once. `lock` says what to make of the header lock's
/// bytes.
#[doc(hidden)]
pub fn open_image(image: &[u8], len: usize, lock: HeaderLock) -> Result<Store> {
    Store::open_heap_image(image, len, lock.mode())
}

/// Opens an image from [`image_at_step`] as the next process to open a
/// store after its user died would find it: with [`open_image`] and
/// [`HeaderLock::AsIs`] (the dead process's locks are marked so in the
/// image, and opening recovers from them), and then as if the dead process
/// had had another pid. It is this process, alive, that attaches again
/// under the same pid: the pending marks it left on container buffers
/// (a value being built, a buffer a rolled-back free gave back) would make
/// them look held for ever, where a dead process's are reclaimed by
/// `collect`. So every pending mark naming this pid gets a pid no process
/// has (`i32::MAX`, above every `pid_max`). What this does not model: a
/// dead process whose pid a live attached process got afterwards (its
/// marks are then taken for that process's and kept until it detaches:
/// the cautious choice, which the fuzzer does not exercise).
#[doc(hidden)]
pub fn open_crash_image(image: &[u8], len: usize) -> Result<Store> {
    let store = open_image(image, len, HeaderLock::AsIs)?;
    store.repoint_pending(std::process::id(), i32::MAX as u32)?;
    Ok(store)
}

/// A copy of the store's bytes (its whole length; pages this process does
/// not know to be committed read as zeros). It takes no lock and checks
/// nothing (so it copies a corrupted store too): call it when no thread is
/// in an operation on the store (a fuzz target runs one thread). Locks
/// inside it are copied as they are: a `ShmMutex` held by this process is
/// held by a live process (this one) in the image.
#[doc(hidden)]
pub fn image(store: &Store) -> Result<Vec<u8>> {
    store.raw_image()
}

/// Runs `op`, and takes an image of `store` at the `step`-th step (1 is the
/// first) of the metadata and container operations it runs — every
/// journalled write and every commit is a step — as a process that died
/// right there would leave it: every lock this thread holds in the store is
/// marked as left by a dead owner (what the kernel does to a robust mutex
/// whose owner dies), and this process's slots in the process table belong
/// to a process that is gone. Then `op` goes on to its end.
///
/// Returns what `op` returned and the image, or `None` if `op` took fewer
/// than `step` steps. Open the image with [`open_crash_image`] (after
/// dropping `store`, so that containers find the right store by its id) to
/// see what recovery makes of it.
#[doc(hidden)]
pub fn image_at_step<R>(store: &Store, step: u64, op: impl FnOnce() -> R) -> (R, Option<Vec<u8>>) {
    if step == 0 {
        return (op(), None);
    }
    ARMED.with(|a| {
        *a.borrow_mut() = Some(Armed {
            left: step,
            store: store.clone(),
            image: None,
        })
    });
    let r = op();
    let armed = ARMED.with(|a| a.borrow_mut().take());
    (r, armed.and_then(|a| a.image))
}

/// Runs `op` and counts its steps (see [`image_at_step`]).
#[doc(hidden)]
pub fn steps_taken<R>(op: impl FnOnce() -> R) -> (R, u64) {
    let before = STEPS.with(Cell::get);
    let r = op();
    (r, STEPS.with(Cell::get).wrapping_sub(before))
}

struct Armed {
    left: u64,
    store: Store,
    image: Option<Vec<u8>>,
}

thread_local! {
    static ARMED: RefCell<Option<Armed>> = const { RefCell::new(None) };
    static STEPS: Cell<u64> = const { Cell::new(0) };
}

/// Called at every step (see `crate::crash`).
pub(crate) fn on_step() {
    let _ = STEPS.try_with(|s| s.set(s.get().wrapping_add(1)));
    let _ = ARMED.try_with(|a| {
        // Taking the image runs no step, so this borrow is never nested.
        let Ok(mut a) = a.try_borrow_mut() else {
            return;
        };
        if let Some(armed) = a.as_mut().filter(|armed| armed.left > 0) {
            armed.left -= 1;
            if armed.left == 0 {
                armed.image = crash_image(&armed.store).ok();
            }
        }
    });
}

/// The store's bytes as a process that died now would leave them (see
/// [`image_at_step`]).
fn crash_image(store: &Store) -> Result<Vec<u8>> {
    let mut image = store.raw_image()?;
    let (base, len) = store.region_span();
    for addr in crate::sync::held::held_here_in(base, len) {
        let at = addr - base;
        if let Some(word) = image.get_mut(at..at + 4) {
            let w = u32::from_ne_bytes([word[0], word[1], word[2], word[3]]);
            // The kernel's robust-list handling of a dead owner keeps the
            // waiters bit and sets the owner-died bit.
            let dead =
                (w & crate::sys::pthread::FUTEX_WAITERS) | crate::sys::pthread::FUTEX_OWNER_DIED;
            word.copy_from_slice(&dead.to_ne_bytes());
        }
    }
    crate::arena::procs::mark_gone_in_image(&mut image, crate::store::own_identity());
    Ok(image)
}

/// Calls made when heap memory stands for a segment (see [`set_page_hooks`]).
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct PageHooks {
    /// A heap store's memory was allocated: none of it is committed yet.
    pub reserve: fn(*const u8, usize),
    /// The store committed these bytes: from now on it may touch them.
    pub commit: fn(*const u8, usize),
    /// The memory is about to be freed.
    pub release: fn(*const u8, usize),
}

static HOOKS: OnceLock<PageHooks> = OnceLock::new();

/// Installs calls made for the memory of heap stores: a fuzz target under
/// AddressSanitizer poisons a store's memory when it is reserved and
/// unpoisons what the store commits, so that touching a page no one
/// committed (a `SIGBUS` on a full `/dev/shm`) is reported. Only the first
/// call takes effect; returns whether it did.
#[doc(hidden)]
pub fn set_page_hooks(hooks: PageHooks) -> bool {
    HOOKS.set(hooks).is_ok()
}

/// The installed hooks (or none), for `Region`.
pub(crate) fn page_hooks() -> Hooks {
    Hooks(HOOKS.get().copied())
}

/// The hooks as `Region` calls them.
pub(crate) struct Hooks(Option<PageHooks>);

impl Hooks {
    pub(crate) fn reserve(&self, base: NonNull<u8>, len: usize) {
        if let Some(h) = self.0 {
            (h.reserve)(base.as_ptr(), len);
        }
    }

    /// `offset + len` is inside the region (the caller checked).
    pub(crate) fn commit(&self, base: NonNull<u8>, offset: usize, len: usize) {
        if let Some(h) = self.0 {
            (h.commit)(base.as_ptr().wrapping_add(offset), len);
        }
    }

    pub(crate) fn release(&self, base: NonNull<u8>, len: usize) {
        if let Some(h) = self.0 {
            (h.release)(base.as_ptr(), len);
        }
    }
}

/// Reads the bytes of a value of `layout` the way its byte check must:
/// `Ok(())` if `bytes` (at least `layout.size` of them) are a valid value,
/// else `Err(offset)` of the first invalid scalar found.
///
/// It knows the scalars with invalid bit patterns by their recorded names
/// (`bool`, `AtomicBool`: 0 or 1; `char`: a Unicode scalar value), enums
/// by their variants' discriminants, the inline containers `FixedVec` (a
/// `u64` length at most the array's, then elements that are all valid) and
/// `FixedString` (a `u32` length at most the array's, then that many bytes
/// of UTF-8), and takes every other scalar, opaque type (a `ShmMutex`'s
/// data is checked when it is locked) and container (its words are checked
/// when it is used) as valid whatever its bytes. So for a derived type it
/// agrees with `check_bytes` exactly; a hand-written `ShmSafe` impl with
/// invariants of its own needs [`check_type_with`].
///
/// # Panics
///
/// If `bytes` is shorter than `layout.size`.
pub fn reference_check(layout: &TypeLayout, bytes: &[u8]) -> core::result::Result<(), usize> {
    assert!(
        bytes.len() >= layout.size,
        "{} bytes for a {}-byte {}",
        bytes.len(),
        layout.size,
        layout.type_expr()
    );
    valid_at(layout, bytes, 0)
}

fn valid_at(layout: &TypeLayout, bytes: &[u8], at: usize) -> core::result::Result<(), usize> {
    let read = |off: usize, n: usize| -> u128 {
        let mut v = [0u8; 16];
        let b = &bytes[off..off + n];
        if cfg!(target_endian = "little") {
            v[..n].copy_from_slice(b);
            u128::from_le_bytes(v)
        } else {
            v[16 - n..].copy_from_slice(b);
            u128::from_be_bytes(v)
        }
    };
    match layout.kind {
        LayoutKind::Primitive => match layout.name {
            "bool" | "AtomicBool" if read(at, 1) > 1 => Err(at),
            "char" if char::from_u32(read(at, 4) as u32).is_none() => Err(at),
            _ => Ok(()),
        },
        LayoutKind::Struct { fields, .. } => {
            match (layout.name, fields) {
                ("FixedVec", [len, items]) if len.name == "len" && items.name == "items" => {
                    if let LayoutKind::Array { len: n, .. } = items.ty.kind {
                        if read(at + len.offset, 8) > n as u128 {
                            return Err(at + len.offset);
                        }
                    }
                }
                ("FixedString", [len, text]) if len.name == "len" && text.name == "bytes" => {
                    let n = read(at + len.offset, 4);
                    if n > text.ty.size as u128 {
                        return Err(at + len.offset);
                    }
                    let start = at + text.offset;
                    if let Err(e) = core::str::from_utf8(&bytes[start..start + n as usize]) {
                        return Err(start + e.valid_up_to());
                    }
                    return Ok(());
                }
                _ => {}
            }
            for f in fields {
                valid_at(f.ty, bytes, at + f.offset)?;
            }
            Ok(())
        }
        LayoutKind::Enum { repr, variants } => {
            let raw = read(at, repr.size);
            let bits = 8 * repr.size as u32;
            let value = if repr.name.starts_with('i') && bits < 128 {
                // Sign-extend.
                ((raw << (128 - bits)) as i128) >> (128 - bits)
            } else {
                raw as i128
            };
            if variants.iter().any(|v| v.discriminant == value) {
                Ok(())
            } else {
                Err(at)
            }
        }
        LayoutKind::Array { elem, len } => {
            for i in 0..len {
                valid_at(elem, bytes, at + i * elem.size)?;
            }
            Ok(())
        }
        LayoutKind::Opaque { .. } | LayoutKind::Container { .. } => Ok(()),
    }
}

/// A one-line fuzz target for the type `T`: what `T`'s byte check, layout
/// and store round trip must satisfy for any input. Panics (a finding, for
/// the fuzzer) if one of these fails:
///
/// 1. `T::LAYOUT` has `T`'s size and alignment; it encodes in the binary
///    format of the type registry and decodes to an equal layout with the
///    same fingerprint and graph fingerprint.
/// 2. The first `size_of::<T>()` bytes of `data` (zeros past its end), in a
///    buffer aligned for `T`: `T::check_bytes` accepts them exactly when
///    [`reference_check`] does, and an error it reports lies inside the
///    value.
/// 3. If they are accepted and `T` holds no container and no `ShmMutex`
///    (whose data is checked when it is locked, not by the byte check):
///    stored in a heap store (one value with `insert`, then a slice of
///    that value repeated 1 to 4 times, the count taken from the bytes
///    after it), both read back with `get` and `get_slice` (so the
///    registry, the record and the checks of the store all take `T`), and
///    `check()` finds the store consistent.
///
/// Run under AddressSanitizer (cargo-fuzz's default), it also finds a byte
/// check that reads outside the value.
pub fn check_type<T: ShmSafe>(data: &[u8]) {
    check_type_with::<T>(data, |bytes| reference_check(T::LAYOUT, bytes).is_ok());
}

/// [`check_type`] with a reference decision of your own: `reference`
/// answers whether `size_of::<T>()` bytes are a valid `T` (for a
/// hand-written `ShmSafe` impl whose check enforces more than its layout
/// says).
pub fn check_type_with<T: ShmSafe>(data: &[u8], reference: impl Fn(&[u8]) -> bool) {
    let layout = T::LAYOUT;
    assert_eq!(
        (layout.size, layout.align),
        (core::mem::size_of::<T>(), core::mem::align_of::<T>()),
        "{} records the wrong size or alignment",
        layout.type_expr()
    );
    check_layout_round_trip::<T>();

    let size = core::mem::size_of::<T>();
    let mut u = arbitrary::Unstructured::new(data);
    let mut bytes = u.bytes(size.min(u.len())).unwrap_or_default().to_vec();
    bytes.resize(size, 0);
    let copies = u.int_in_range(1..=4u8).unwrap_or(1) as usize;

    let buf = Aligned::<T>::from_bytes(&bytes);
    // SAFETY: `buf` holds `size_of::<T>()` initialised bytes, aligned for
    // `T`, and no one else can reach them.
    let verdict = unsafe { T::check_bytes(buf.ptr()) };
    let expected = reference(&bytes);
    match &verdict {
        Ok(()) => assert!(
            expected,
            "{}::check_bytes accepts bytes the reference refuses: {bytes:02x?}",
            layout.type_expr()
        ),
        Err(e) => {
            assert!(
                !expected,
                "{}::check_bytes refuses bytes the reference accepts ({e}): {bytes:02x?}",
                layout.type_expr()
            );
            assert!(
                e.offset < size.max(1),
                "{}: an invalid bit pattern reported at offset {} of a {size}-byte value",
                layout.type_expr(),
                e.offset
            );
        }
    }
    // The round trip copies the value as a `T`, which needs bytes that are
    // a valid `T` through and through. A `ShmMutex`'s byte check accepts
    // any data (the data is checked when the lock is taken), so accepted
    // bytes of a type holding one are not necessarily that; and a value
    // holding containers would own buffers of no store.
    if verdict.is_err() || T::IMMOVABLE || const { T::LAYOUT.has_containers() } {
        return;
    }
    round_trip(&buf, copies);
}

/// Part 1 of [`check_type`].
fn check_layout_round_trip<T: ShmSafe>() {
    let layout = T::LAYOUT;
    let encoded = match encode_layout(layout) {
        Ok(e) => e,
        Err(e) => panic!("{}: {e}", layout.type_expr()),
    };
    let decoded = match decode_layout(&encoded) {
        Ok(d) => d,
        Err(e) => panic!("{}: its encoding does not decode: {e}", layout.type_expr()),
    };
    assert_eq!(decoded, layout.to_desc(), "{}", layout.type_expr());
    assert_eq!(decoded.fingerprint(), T::FINGERPRINT, "{layout}");
    assert_eq!(
        decoded.graph_fingerprint(),
        graph_fingerprint_of::<T>(),
        "{layout}"
    );
}

/// Part 3 of [`check_type`]: `buf` holds a valid `T` without containers.
fn round_trip<T: ShmSafe>(buf: &Aligned<T>, copies: usize) {
    let what = T::LAYOUT.type_expr();
    let store = match create_in_heap(1 << 20) {
        Ok(s) => s,
        Err(e) => panic!("a heap store: {e}"),
    };
    let value = || {
        // SAFETY: `buf` holds a valid `T` (its byte check accepted it), and
        // `T` has no drop glue (ShmSafe contract), so reading copies of it
        // duplicates nothing that would be freed twice; it holds no
        // container (the caller checked), so no buffer is shared either.
        unsafe { buf.ptr().read() }
    };
    let size = core::mem::size_of::<T>() as u64;
    match store.insert("value", value()) {
        // A value larger than the store: refused, with the right error.
        Err(Error::OutOfMemory { .. }) if size > (1 << 19) => return,
        r => r.unwrap_or_else(|e| panic!("insert of a valid {what}: {e}")),
    }
    let handle = store
        .get::<T>("value")
        .unwrap_or_else(|e| panic!("get of a stored {what}: {e}"));
    // SAFETY: the handle points at a valid `T` in the store, aligned.
    unsafe { T::check_bytes(&*handle as *const T) }
        .unwrap_or_else(|e| panic!("a stored {what} fails its check: {e}"));
    drop(handle);
    if size.saturating_mul(copies as u64) <= (1 << 19) {
        store
            .insert_slice_from_iter("values", (0..copies).map(|_| value()))
            .unwrap_or_else(|e| panic!("insert of a slice of {what}: {e}"));
        let slice = store
            .get_slice::<T>("values")
            .unwrap_or_else(|e| panic!("get_slice of {what}: {e}"));
        assert_eq!(slice.len(), copies, "{what}");
    }
    let entry = store
        .entries()
        .unwrap_or_else(|e| panic!("entries: {e}"))
        .into_iter()
        .find(|e| e.name == "value")
        .unwrap_or_else(|| panic!("{what} is not listed"));
    assert_eq!(entry.fingerprint, graph_fingerprint_of::<T>(), "{what}");
    assert_eq!(entry.size, size, "{what}");
    let report = store.check().unwrap_or_else(|e| panic!("check: {e}"));
    assert!(report.is_ok(), "{what}: {report}");
}

/// `size_of::<T>()` bytes aligned for `T`, on the heap.
struct Aligned<T> {
    ptr: NonNull<u8>,
    layout: std::alloc::Layout,
    _t: core::marker::PhantomData<T>,
}

impl<T> Aligned<T> {
    /// A copy of `bytes` (exactly `size_of::<T>()` of them).
    fn from_bytes(bytes: &[u8]) -> Aligned<T> {
        assert_eq!(bytes.len(), core::mem::size_of::<T>());
        // At least one byte, so that a zero-sized `T` has an allocation.
        let layout =
            std::alloc::Layout::from_size_align(bytes.len().max(1), core::mem::align_of::<T>())
                .expect("the layout of a type");
        // SAFETY: `layout` has a non-zero size.
        let ptr = NonNull::new(unsafe { std::alloc::alloc(layout) })
            .unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        // SAFETY: a fresh allocation of at least `bytes.len()` bytes, which
        // cannot overlap `bytes`.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.as_ptr(), bytes.len()) };
        Aligned {
            ptr,
            layout,
            _t: core::marker::PhantomData,
        }
    }

    fn ptr(&self) -> *const T {
        self.ptr.as_ptr().cast::<T>()
    }
}

impl<T> Drop for Aligned<T> {
    fn drop(&mut self) {
        // SAFETY: allocated in `from_bytes` with this layout, freed once.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::InvalidBitPattern;

    #[derive(crate::ShmSafe, Clone, Copy)]
    #[shm(crate = "crate")]
    #[repr(u8)]
    enum Mode {
        Off = 0,
        On = 5,
    }

    #[derive(crate::ShmSafe)]
    #[shm(crate = "crate")]
    #[repr(C)]
    struct Sample {
        flag: bool,
        mode: Mode,
        letter: char,
        text: crate::FixedString<3>,
        small: crate::FixedVec<i8, 2>,
    }

    /// No store (so Miri runs it): the layout reference against the
    /// derived checks.
    #[test]
    fn reference_check_agrees_with_derived_checks_on_edge_values() {
        edge_values(false);
    }

    /// The same through the whole helper, store round trip included.
    #[test]
    fn check_type_accepts_valid_values_and_stores_them() {
        edge_values(true);
    }

    fn edge_values(through_helper: bool) {
        let size = core::mem::size_of::<Sample>();
        let valid = {
            let mut b = vec![0u8; size];
            let letter = core::mem::offset_of!(Sample, letter);
            b[letter..letter + 4].copy_from_slice(&u32::from('é').to_ne_bytes());
            b
        };
        assert_eq!(reference_check(Sample::LAYOUT, &valid), Ok(()));
        if through_helper {
            check_type::<Sample>(&valid);
        }
        // Each field broken on its own is refused by both at its offset.
        let mode = core::mem::offset_of!(Sample, mode);
        let letter = core::mem::offset_of!(Sample, letter);
        let text = core::mem::offset_of!(Sample, text);
        let small = core::mem::offset_of!(Sample, small);
        for (at, bytes) in [
            (0, vec![2u8]),
            (mode, vec![1]),
            (letter, 0xD800u32.to_ne_bytes().to_vec()),
            (text, 4u32.to_ne_bytes().to_vec()),
            (small, 3u64.to_ne_bytes().to_vec()),
        ] {
            let mut b = valid.clone();
            b[at..at + bytes.len()].copy_from_slice(&bytes);
            assert_eq!(reference_check(Sample::LAYOUT, &b), Err(at));
            let buf = Aligned::<Sample>::from_bytes(&b);
            // SAFETY: `size_of::<Sample>()` initialised, aligned bytes.
            let e: InvalidBitPattern = unsafe { Sample::check_bytes(buf.ptr()) }.unwrap_err();
            assert_eq!(e.offset, at);
            if through_helper {
                check_type::<Sample>(&b);
            }
        }
        // Mode::On is 5: accepted.
        let mut b = valid.clone();
        b[mode] = 5;
        assert_eq!(reference_check(Sample::LAYOUT, &b), Ok(()));
        let _ = (Mode::Off, Mode::On);
    }

    #[test]
    #[should_panic(expected = "accepts bytes the reference refuses")]
    fn a_check_that_accepts_too_much_is_reported() {
        // The reference of a stricter type: u8 must be 0.
        check_type_with::<u8>(&[7], |b| b[0] == 0);
    }

    #[test]
    fn a_crash_image_marks_held_locks_and_our_slot_gone() {
        let store = create_in_heap(1 << 20).unwrap();
        store.insert("x", 5u64).unwrap();
        let (r, img) = image_at_step(&store, 1, || store.insert("y", 6u64));
        r.unwrap();
        let img = img.expect("an insert takes a step");
        drop(store);
        let recovered = open_crash_image(&img, img.len()).unwrap();
        assert_eq!(
            recovered.stats().unwrap().recoveries,
            1,
            "the lock's owner died"
        );
        assert_eq!(*recovered.get::<u64>("x").unwrap(), 5);
        assert!(matches!(
            recovered.get::<u64>("y"),
            Err(Error::NotFound { .. })
        ));
        let report = recovered.check().unwrap();
        assert!(report.is_ok(), "{report}");
        assert_eq!(report.processes, 1, "the dead slot was released");
        // Too late a step: no image.
        let (_, none) = image_at_step(&recovered, 1_000_000, || recovered.stats());
        assert!(none.is_none());
    }
}
