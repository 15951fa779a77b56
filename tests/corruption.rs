//! A store whose metadata was corrupted never makes a process crash, hang
//! or panic, and never hands out wrong data: every operation ends in `Ok`
//! with intact data or in a specific `Error` (the precise rules are below).
//!
//! # How
//!
//! The parent re-executes this test binary as a child that builds a small
//! pristine store, walks its bytes as the layouts document them
//! (`arena/header.rs`, `alloc.rs`, `dir.rs`, `registry.rs`, `procs.rs`,
//! `journal.rs`: header fields, then every heap block from the heap start
//! to `top`, the tables the header points to, every record the directory or
//! a pin table names) and sweeps *cases* over them. A case writes the
//! pristine bytes with one change into a segment and runs a fixed script of
//! store operations over it: open, a typed read of every kind (`u64`, a
//! `Config` with a `bool` and an enum, a slice of `f32`), a wrong-type
//! read, a read of a removed name, `contains` of 9 names, `entries`,
//! `stats`, `check`, `ShmMutex::try_lock` and an increment under it,
//! re-inserts that reuse tombstones, an insert, a slice insert that grows
//! the directory, an insert of a new type that grows the registry, removes
//! (of an unpinned object, of one this process pins, of a slice), the drop
//! of the last pin of a removed object, `get_or_insert_with` of a new and
//! of an existing name, `check` again, and read-backs of what was inserted
//! and of two untouched objects. Panics are caught so that every failing
//! case is collected. A signal (`SIGSEGV`, `SIGBUS`, an abort) or a hang
//! kills the child; the parent then replays that case alone (logging each
//! step), reports it, and starts a new child at the next case, so that one
//! crash does not hide the others.
//!
//! The pristine store holds objects of several types, removed objects
//! (tombstones, parked and binned free blocks), a full type registry, a
//! directory just below its growth threshold, and two process-table slots
//! with pin tables: the sweeping process itself (alive during the sweep,
//! so it keeps its pin on `counter`) and a process that pinned three
//! objects and died (every `open` releases its slot, dropping its pins and
//! freeing the removed object it still pinned).
//!
//! # The cases
//!
//! - **Byte flips** of the header page (except the header lock) and of the
//!   heap up to `top`, with 8 patterns (xor 0x01, 0x02, 0x04, 0x08, 0x10,
//!   0x80, set 0x00, set 0xff). Sampled by default (see [`flip_cases`]):
//!   every pattern on every metadata byte and on the first 32 bytes of
//!   every heap block, 2 rotating patterns on every value byte, and 2 on
//!   one word in 8 of the bytes nothing reads.
//!   `SHMSTORE_FULL_SWEEP=1` flips every byte with every pattern.
//! - **Word extremes**, always complete: every metadata word the walk finds
//!   — every header field (identity words, capacity, committed, top, used,
//!   the counters, every table's offset, length and capacity, the
//!   free-list bitmap, every bin and fast-list head), every heap block's
//!   header word, every free block's links and footer and every parked
//!   block's link, every directory slot, every record field (count, type
//!   index, pin word, name length, flags, value offset), every registry
//!   entry field (fingerprint, description offset, size, align, lengths),
//!   the process table's words (every word and reservation of the used
//!   slots, the pid word of every free slot, every pin-table entry: so a pin
//!   table of capacity 1 and a pinned record offset near `u64::MAX`, the
//!   two cases of review item 7, are cases), the journal's header words,
//!   and journal entry 0's two words together with a journal length of 1
//!   (what a process that died in an operation leaves) — each set to 0, 1,
//!   `MAX` and `MAX - 7` of its width, for 64-bit words also to the
//!   store's capacity, capacity − 8, `top` and `top + 8`, plus values that
//!   matter for the field (see [`Walk::new`]): another table's or another
//!   process's pin table's offset, a live or removed record's offset, a
//!   free block, the table's own capacity and capacity + 1, a block size
//!   that reaches `top` or grows by 8 to 24 bytes, `PIN_REMOVED`, an
//!   alignment of 3 or 4096, a journal entry that targets the magic, the
//!   lock, the capacity, an object's value or past `committed`, …
//!
//! The `swept …` line of each test gives the number of cases of each kind
//! (run with `--nocapture`).
//!
//! # What is checked for every case
//!
//! The script keeps a model of what the store holds: every object of the
//! pristine store with the value its bytes hold *in the case's image*, and
//! the effect of every operation that returned `Ok` (an operation that
//! returned an error changed nothing: operations are all or nothing). An
//! object is *touched* by a case when the changed bytes overlap its heap
//! block (block header word, record fields, name, padding or value); its
//! *metadata* is touched when they overlap its block other than the value
//! bytes. A journal entry that the case makes the store replay counts as a
//! change of the word it targets (with a value from the journal). Then:
//!
//! 1. **No wrong data.** A read that returns `Ok` (`get`, `get_slice`, the
//!    value under a `ShmMutex`, `get_or_insert_with` of an existing name,
//!    the read-backs) returns exactly the bytes the model expects: the
//!    pristine value, the value the script stored, or for an object whose
//!    *value bytes* the case changed, those changed bytes (then a value of a
//!    type with invalid bit patterns, `Config`, must be `Corrupted`, never
//!    `Ok`). Only an object whose own metadata was touched may read any
//!    bytes of its own block. A `u64` read as a `u32` is never `Ok` unless
//!    the case touched its metadata, the registry or a header word that
//!    locates names. `get_or_insert_with` of an absent name returns what it
//!    was given.
//! 2. **No stray writes.** After the script, the header's identity words
//!    (magic, version, creator, ABI, state, capacity) and the whole block of
//!    every pristine object the script never writes or frees (`config`,
//!    `small_u32`, `small_i16`, `bytes`, `float`, the 35 fillers) — block
//!    header but its `PREV_INUSE` bit, record fields but the pin word,
//!    name, padding and value — are byte for byte as the case wrote them,
//!    unless the case touched that object.
//! 3. **Names do not come and go.** `contains`, `get`, `entries`, `insert`
//!    (`AlreadyExists`) and `remove` (`NotFound`) agree with the model about
//!    which names exist, except for a case that changed a header word that
//!    locates names (the directory's words, `top`, `committed`, the
//!    journal's words) or the directory table, or the object's own
//!    metadata: there a name may become unreachable or reachable (a
//!    corrupted index cannot be told from an absent name), and the model
//!    then follows what the store says, but rule 1 still holds for what is
//!    read. `entries` never lists a name the model does not know, except
//!    under those cases or a record whose own name changed.
//! 4. **Bytes that are not metadata change nothing else.** For a case that
//!    changed only bytes no operation reads (header padding, record
//!    padding, free-block interiors, block slack, registry padding, type
//!    descriptions, journal entries while the journal is empty, the words
//!    of free process slots other than their pid) or left the image as it
//!    was, every operation's outcome, values and `check`'s verdict
//!    included, equals the pristine run's. For a case that changed only an
//!    object's value bytes, every operation on *other* names does.
//! 5. **Specific errors.** Every error is one the operation can give for a
//!    damaged store ([`allowed`]): `open` → `Corrupted`, `NotAStore`,
//!    `Incompatible`; reads and `try_lock` → `Corrupted`, `NotFound`,
//!    `TypeMismatch` (and `OwnerDied` for `try_lock`); `insert` →
//!    `Corrupted`, `AlreadyExists`, `OutOfMemory`, `NoSpace`;
//!    `get_or_insert_with` → `Corrupted`, `TypeMismatch`, `OutOfMemory`,
//!    `NoSpace`; `remove` → `Corrupted`, `NotFound`; `contains`,
//!    `entries`, `stats`, `check` → `Corrupted`. Never `Io`,
//!    `InvalidArgument`, `InvalidName` or `PermissionDenied`.
//! 6. No panic, no signal, no case longer than 10 s (a hang).
//!
//! The outcome of every operation is counted; the parent prints the counts
//! per operation (`outcomes:` lines).
//!
//! What is **not** promised, and why:
//! - that a damaged store keeps working: after a corruption many operations
//!   return `Corrupted`, and `check()` reports problems rather than
//!   repairing them;
//! - that `check()` finds every corruption (a changed value byte is not an
//!   inconsistency; it reports what its walk finds);
//! - anything about the value of an object whose own record fields or
//!   block header were changed, beyond rule 2 for the others and rule 6;
//! - a non-empty journal is trusted for targets in the heap: rollback
//!   refuses entries of an unknown kind, misaligned, past `committed`, in
//!   the header lock or in the identity words, but an entry may
//!   legitimately target any heap metadata word, including words that are
//!   an object's value once the rollback is done (removing an object
//!   journals the free-list links written over it), so a changed entry can
//!   write into an object (only with a journal left non-empty by a process
//!   that died in an operation);
//! - a table offset that names *another allocation of the same size* (two
//!   processes' pin tables of equal capacity, or a table and an object
//!   whose block happens to have the table's size) is not detected; any
//!   other table offset is `Corrupted` before use.
//!
//! # The full tmpfs part
//!
//! `word_extremes_on_a_full_tiny_dev_shm_are_errors_never_sigbus` runs the
//! complete word family and the header page's byte flips (every pattern)
//! again, with the same rules, in a child inside `unshare -m` with a 4 MiB
//! tmpfs mounted over its own `/dev/shm` (only as root and if `unshare`
//! exists; it prints why it skipped otherwise; the machine's own
//! `/dev/shm` is never touched). There the store is larger than what it
//! has committed (2 MiB capacity, 1 MiB committed), the segment is written
//! as a sparse file holding only the committed pages, and the tmpfs is
//! then filled to the brim, so that touching any page the header does not
//! say is committed is a `SIGBUS`, which the parent reports as a crash. A
//! control child first maps the segment and reads its first uncommitted
//! page: the test fails unless that control dies of `SIGBUS`.
//!
//! # Running it
//!
//! ```sh
//! cargo test -p shmstore-tests --test corruption             # debug, as CI runs it
//! cargo test --release -p shmstore-tests --test corruption   # release: overflows wrap instead of panicking
//! SHMSTORE_FULL_SWEEP=1 cargo test --release -p shmstore-tests --test corruption
//! ```
//!
//! Both ways run the same cases; CI runs debug only, so run the release
//! sweep by hand after a change to the arena or the store (it takes about
//! 10 s after the build; the full sweep about a minute).
//! `SHMSTORE_SWEEP_FAMILY=flips` or `=words` runs one family only (for
//! working on the sweep).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shmstore::{Error, ShmMutex, ShmSafe, Store};
use shmstore_tests::{
    find_program, is_root, report, role, role_arg, role_command_with_arg, spawn_role_with_arg,
    unique_name, Child, StoreGuard,
};

const TEST: &str = "corrupted_metadata_gives_intact_data_or_an_error_never_a_crash";
const TMPFS_TEST: &str = "word_extremes_on_a_full_tiny_dev_shm_are_errors_never_sigbus";
/// The main sweep's store: small, so every page is committed at once.
const CAPACITY: u64 = 256 << 10;
/// The tmpfs part's store: committed in 1 MiB chunks, so half of it is
/// never committed.
const TMPFS_CAPACITY: u64 = 2 << 20;
/// The tmpfs mounted over `/dev/shm` in the tmpfs part.
const TMPFS_SIZE: &str = "4m";
/// The header page; the header lock inside it belongs to the OS and is
/// not changed.
const HEADER_PAGE: u64 = 4096;
const LOCK: std::ops::Range<u64> = 192..256;
/// A state word changed to "creating" makes `open` wait this long.
const OPEN_TIMEOUT: Duration = Duration::from_millis(20);
/// A case running longer than this is reported as a hang (the child exits).
const HANG: Duration = Duration::from_secs(10);
/// A case running longer than this (but finishing) is reported as slow.
const SLOW: Duration = Duration::from_secs(1);
/// Children the parent starts at most (one more per crash or hang).
const MAX_CHILDREN: usize = 40;

/// Environment variable: set to `1` to flip every heap byte with every
/// pattern.
const FULL_SWEEP_VAR: &str = "SHMSTORE_FULL_SWEEP";
/// Environment variable: `flips` or `words` to run one family only.
const FAMILY_VAR: &str = "SHMSTORE_SWEEP_FAMILY";

/// How a flip pattern changes a byte.
type Flip = fn(u8) -> u8;

/// Flip patterns: (name, how a byte changes). Besides the low and high
/// bits and all-ones, the allocator's flag bits (`INUSE`, `PREV_INUSE`,
/// `FAST`: bits 0..3 of a block header) and small size changes (8, 16
/// bytes), and zero.
const PATTERNS: [(&str, Flip); 8] = [
    ("xor01", |b| b ^ 0x01),
    ("xor02", |b| b ^ 0x02),
    ("xor04", |b| b ^ 0x04),
    ("xor08", |b| b ^ 0x08),
    ("xor10", |b| b ^ 0x10),
    ("xor80", |b| b ^ 0x80),
    ("set00", |_| 0x00),
    ("setff", |_| 0xff),
];

#[derive(ShmSafe, Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    Off = 0,
    Slow = 1,
    Fast = 2,
}

#[derive(ShmSafe, Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct Config {
    enabled: bool,
    mode: Mode,
    level: u32,
}

const CONFIG: Config = Config {
    enabled: true,
    mode: Mode::Fast,
    level: 3,
};
const NEW_CONFIG: Config = Config {
    enabled: false,
    mode: Mode::Slow,
    level: 1,
};

/// Filler objects: with the 9 live objects and 3 tombstones, 47 of the
/// directory's 64 slots are taken; the script's fourth insert grows it.
const FILLERS: u64 = 35;

/// Names the script asks `contains` about (live, removed and never
/// present).
const NAMES: [&str; 9] = [
    "counter",
    "config",
    "samples",
    "lock",
    "tail",
    "gone_small",
    "gone_big",
    "gone_cfg",
    "absent",
];

/// Pristine objects the script never writes, removes or lets be freed:
/// their bytes must survive every case that does not touch them (rule 2).
fn never_written(name: &str) -> bool {
    matches!(
        name,
        "config" | "small_u32" | "small_i16" | "bytes" | "float"
    ) || name.starts_with("fill")
}

// ---- the pristine store -----------------------------------------------------

/// Builds the pristine store: objects of several types, some removed (so
/// that there are parked blocks, binned free blocks and tombstones),
/// exactly 8 registered types (the registry's first table is full, so a
/// new type grows it), a dead process's slot with pins (one of them on a
/// removed object, which stays allocated until that slot is released), and
/// this process's own slot pinning `counter`.
///
/// Returns the open store and the handle that pins `counter`: the caller
/// reads the segment's bytes while they are alive.
fn build_pristine(test: &str, name: &str, capacity: u64) -> (Store, shmstore::Handle<u64>) {
    let store = Store::create(name, capacity).unwrap();
    store.insert("counter", 42u64).unwrap();
    store.insert("gone_small", 1u64).unwrap();
    store.insert("config", CONFIG).unwrap();
    store.insert_slice("gone_big", &[2.5f32; 400]).unwrap();
    store.insert_slice("samples", &[1.5f32; 100]).unwrap();
    store.insert("gone_cfg", CONFIG).unwrap();
    store.insert("lock", ShmMutex::new(5u64)).unwrap();
    store.insert("small_u32", 9u32).unwrap();
    store.insert("small_i16", -2i16).unwrap();
    store.insert("bytes", [1u8, 2, 3, 4]).unwrap();
    store.insert("float", 0.25f64).unwrap();
    store.insert("tail", 77u64).unwrap();
    // Fill the directory to just below its growth threshold (3/4 of 64
    // slots, tombstones included), so that the script's inserts rehash it.
    for i in 0..FILLERS {
        store.insert(&format!("fill{i}"), i).unwrap();
    }
    let check = store.check().unwrap();
    assert!(check.is_ok(), "pristine store fails its check: {check}");
    // A process that pins three objects and dies holding them.
    let pinner = spawn_role_with_arg(test, "pinner", name, "").wait_success();
    assert_eq!(pinner.report("pinned"), "3");
    for gone in ["gone_small", "gone_big", "gone_cfg"] {
        store.remove(gone).unwrap();
    }
    assert_eq!(store.entries().unwrap().len(), 9 + FILLERS as usize);
    let counter = store.get::<u64>("counter").unwrap();
    (store, counter)
}

/// The pinner's part: pins three objects and exits without dropping
/// anything, so its slot stays behind with its pins.
fn pin_and_die(name: &str) {
    let store = Store::open(name).unwrap();
    let a = store.get::<Config>("config").unwrap();
    let b = store.get::<Config>("gone_cfg").unwrap();
    let c = store.get_slice::<f32>("samples").unwrap();
    report("pinned", 3);
    std::io::stdout().flush().unwrap();
    std::mem::forget((a, b, c, store));
    std::process::exit(0);
}

/// The control of the tmpfs part: maps the segment `name` and reads the
/// byte at `off` (a page that was never committed, on a full tmpfs).
fn touch(name: &str, off: u64) {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(format!("/dev/shm/{name}")).unwrap();
    let len = file.metadata().unwrap().len();
    assert!(off < len);
    // SAFETY: a fresh read-only shared mapping of the whole file; no
    // preconditions beyond a valid descriptor, which `file` is.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len as usize,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED, "{}", std::io::Error::last_os_error());
    // SAFETY: `off < len`, inside the mapping just made, which lives until
    // the process exits. Reading a page of a tmpfs hole allocates it; on a
    // full tmpfs that is a SIGBUS, which is what this child is for.
    let byte = unsafe { std::ptr::read_volatile(p.cast::<u8>().add(off as usize)) };
    report("read", byte);
}

// ---- walking the image --------------------------------------------------------

/// Header fields (`arena/header.rs`'s layout table): offset, width, name.
const HEADER_WORDS: &[(u64, u8, &str)] = &[
    (0, 8, "magic"),
    (8, 4, "version"),
    (12, 4, "creator start"),
    (16, 8, "ABI tag"),
    (24, 4, "init state"),
    (28, 4, "creator pid"),
    (32, 8, "capacity"),
    (40, 8, "committed"),
    (48, 8, "top"),
    (56, 8, "used"),
    (64, 8, "objects"),
    (72, 8, "directory table"),
    (80, 8, "directory slots"),
    (88, 8, "directory live"),
    (96, 8, "directory tombstones"),
    (104, 8, "registry table"),
    (112, 8, "registry length"),
    (120, 8, "registry capacity"),
    (128, 8, "recoveries"),
    (136, 8, "parked blocks"),
    (144, 8, "journal"),
    (152, 8, "journal capacity"),
    (160, 8, "journal length"),
    (168, 8, "process table"),
    (176, 8, "process slots"),
    (184, 8, "store id"),
    (284, 4, "pid namespace"),
    (2664, 8, "top check"),
];
/// Header words that locate names: the directory's, `top`, its check word
/// and `committed` (which bound every record offset) and the journal's (a
/// corrupted length replays stale entries into any metadata word).
const INDEX_WORDS: [u64; 10] = [40, 48, 72, 80, 88, 96, 144, 152, 160, 2664];
const OFF_STATE: u64 = 24;
const OFF_CAPACITY: u64 = 32;
const OFF_COMMITTED: u64 = 40;
const OFF_TOP: u64 = 48;
const OFF_DIR: u64 = 72;
const OFF_DIR_CAP: u64 = 80;
const OFF_REG: u64 = 104;
const OFF_REG_LEN: u64 = 112;
const OFF_REG_CAP: u64 = 120;
const OFF_PARKED: u64 = 136;
const OFF_JOURNAL: u64 = 144;
const OFF_JOURNAL_CAP: u64 = 152;
const OFF_JOURNAL_LEN: u64 = 160;
const OFF_PROCS: u64 = 168;
const OFF_PROCS_LEN: u64 = 176;
/// The free-list bitmap (3 words), the bin heads (`NBINS`: 125 exact small
/// bins of 32..=1024 bytes, then 38 power-of-two bins) and the fast-list
/// heads (`NFAST`: one per small size), as `alloc.rs` sizes them.
const OFF_BITMAP: u64 = 256;
const BITMAP_WORDS: u64 = 3;
const OFF_BINS: u64 = 320;
const NBINS: u64 = 125 + 38;
const OFF_FAST: u64 = 1664;
const NFAST: u64 = 125;
/// Block header bits (`alloc.rs`).
const INUSE: u64 = 1;
const FAST: u64 = 4;
/// Directory slots (`dir.rs`): offset / 8 in bits 0..40.
const SLOT_OFF_MASK: u64 = (1 << 40) - 1;
/// Record fields (`dir.rs`).
const REC_PINS: u64 = 12;
const REC_NAME: u64 = 24;
const PIN_REMOVED: u32 = 1 << 31;
/// Registry entries (`registry.rs`).
const REG_ENTRY: u64 = 32;
/// Process slots and pin-table entries (`procs.rs`).
const PROC_SLOT: u64 = 64;
const PIN_ENTRY: u64 = 16;
/// Journal entries (`journal.rs`).
const JOURNAL_ENTRY: u64 = 16;

/// What a byte of the pristine image is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    /// A header field that locates names (directory words, `top`,
    /// `committed`, the journal's words): rule 3 does not hold for it.
    HeaderIndex,
    /// Any other header field the store reads, and the free-list roots.
    Header,
    /// The header lock (never changed by a case).
    Lock,
    /// A heap block's header word.
    BlockHead,
    /// A free block's list links and footer, or a parked block's link.
    FreeLink,
    /// A directory table slot.
    DirSlot,
    /// A registry entry's fields.
    Registry,
    /// A used process slot's words, or a free slot's pid word.
    ProcSlot,
    /// A pin-table entry.
    PinEntry,
    /// Record fields or the name of object `i` of [`Walk::objects`].
    Record(u16),
    /// The value bytes of object `i`.
    Value(u16),
    /// Bytes nothing reads (see [`Inert`]).
    Inert(Inert),
}

/// Why a byte is never read (rule 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Inert {
    HeaderPadding,
    RecordPadding,
    FreeInterior,
    BlockSlack,
    RegistryPadding,
    JournalEntry,
    FreeProcSlot,
}

/// How the script reads an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    U64,
    U32,
    I16,
    F64,
    Bytes4,
    U16x3,
    F32s,
    Config,
    Mutex,
    AtomicU32,
}

fn kind_of(name: &str) -> Kind {
    match name {
        "counter" | "tail" | "gone_small" | "new" => Kind::U64,
        "config" | "gone_cfg" => Kind::Config,
        "samples" | "gone_big" | "new_slice" => Kind::F32s,
        "lock" => Kind::Mutex,
        "small_u32" => Kind::U32,
        "small_i16" => Kind::I16,
        "bytes" => Kind::Bytes4,
        "float" => Kind::F64,
        "new_type" => Kind::U16x3,
        "hits" => Kind::AtomicU32,
        n if n.starts_with("fill") => Kind::U64,
        other => panic!("no kind for object {other:?}"),
    }
}

/// The canonical text of a value's bytes, as the script compares them;
/// `None` for bytes that are not a valid value of the kind.
fn decode(kind: Kind, b: &[u8]) -> Option<String> {
    let u = |n: usize| {
        let mut w = [0u8; 8];
        w[..n].copy_from_slice(&b[..n]);
        u64::from_le_bytes(w)
    };
    Some(match kind {
        Kind::U64 | Kind::Mutex => u(8).to_string(),
        Kind::U32 | Kind::AtomicU32 => u(4).to_string(),
        Kind::I16 => (u(2) as u16 as i16).to_string(),
        Kind::F64 => format!("f64:{:#x}", u(8)),
        Kind::Bytes4 => format!("{:?}", &b[..4]),
        Kind::U16x3 => format!(
            "{:?}",
            [
                u(2),
                u64::from_le_bytes([b[2], b[3], 0, 0, 0, 0, 0, 0]),
                u64::from_le_bytes([b[4], b[5], 0, 0, 0, 0, 0, 0])
            ]
        ),
        Kind::F32s => {
            // FNV-1a over the element bits, with the length.
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for &x in b {
                h = (h ^ x as u64).wrapping_mul(0x100_0000_01b3);
            }
            format!("{} f32 fnv {h:#x}", b.len() / 4)
        }
        Kind::Config => {
            if b[0] > 1 || b[1] > 2 {
                return None;
            }
            format!(
                "Config({}, {}, {})",
                b[0],
                b[1],
                u32::from_le_bytes(b[4..8].try_into().unwrap())
            )
        }
    })
}

/// The bytes of a value as the script read it, for [`decode`].
trait Bytes {
    fn bytes(&self) -> Vec<u8>;
}
impl Bytes for u64 {
    fn bytes(&self) -> Vec<u8> {
        self.to_le_bytes().to_vec()
    }
}
impl Bytes for u32 {
    fn bytes(&self) -> Vec<u8> {
        self.to_le_bytes().to_vec()
    }
}
impl Bytes for i16 {
    fn bytes(&self) -> Vec<u8> {
        self.to_le_bytes().to_vec()
    }
}
impl Bytes for f64 {
    fn bytes(&self) -> Vec<u8> {
        self.to_bits().to_le_bytes().to_vec()
    }
}
impl Bytes for [u8; 4] {
    fn bytes(&self) -> Vec<u8> {
        self.to_vec()
    }
}
impl Bytes for [u16; 3] {
    fn bytes(&self) -> Vec<u8> {
        self.iter().flat_map(|x| x.to_le_bytes()).collect()
    }
}
impl Bytes for [f32] {
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len() * 4);
        for x in self {
            out.extend_from_slice(&x.to_bits().to_le_bytes());
        }
        out
    }
}
impl Bytes for Config {
    fn bytes(&self) -> Vec<u8> {
        let mut b = vec![self.enabled as u8, self.mode as u8, 0, 0];
        b.extend(self.level.to_le_bytes());
        b
    }
}
impl Bytes for AtomicU32 {
    fn bytes(&self) -> Vec<u8> {
        self.load(Ordering::Relaxed).to_le_bytes().to_vec()
    }
}

/// One named object of the pristine store.
#[derive(Debug, Clone)]
struct Obj {
    name: String,
    kind: Kind,
    /// Its block: `[blk, end)`; the record starts at `blk + 8`.
    blk: u64,
    end: u64,
    rec: u64,
    /// Its value bytes: `[value, value_end)`.
    value: u64,
    value_end: u64,
    /// Reachable from the directory (not a removed object still pinned).
    live: bool,
}

/// A metadata word and the values a case may set it to besides the
/// generic extremes of its width.
#[derive(Debug, Clone)]
struct Word {
    off: u64,
    width: u8,
    what: String,
    extras: Vec<u64>,
    /// Another word set with it (offset, width, value): the journal's
    /// length for a journal entry's words, which are read only then.
    also: Option<(u64, u8, u64)>,
}

/// The pristine image, walked.
struct Walk {
    image: Vec<u8>,
    capacity: u64,
    committed: u64,
    top: u64,
    /// The class of every byte below `top`.
    classes: Vec<Class>,
    objects: Vec<Obj>,
    words: Vec<Word>,
}

fn rd(img: &[u8], off: u64, width: u8) -> u64 {
    let o = off as usize;
    let mut w = [0u8; 8];
    w[..width as usize].copy_from_slice(&img[o..o + width as usize]);
    u64::from_le_bytes(w)
}

impl Walk {
    /// Walks `image` as the layouts document it, panicking if the pristine
    /// store is not shaped as the sweep expects.
    fn new(image: Vec<u8>) -> Walk {
        let img = &image[..];
        let w64 = |off: u64| rd(img, off, 8);
        let capacity = w64(OFF_CAPACITY);
        let committed = w64(OFF_COMMITTED);
        let top = w64(OFF_TOP);
        assert_eq!(capacity, image.len() as u64);
        assert!(
            (HEADER_PAGE..=committed).contains(&top),
            "pristine top {top}"
        );
        let mut classes = vec![Class::Inert(Inert::HeaderPadding); top as usize];
        let set = |classes: &mut Vec<Class>, from: u64, to: u64, c: Class| {
            classes[from as usize..to as usize].fill(c);
        };
        let mut words: Vec<Word> = Vec::new();
        let word = |words: &mut Vec<Word>, off: u64, width: u8, what: String, extras: Vec<u64>| {
            words.push(Word {
                off,
                width,
                what,
                extras,
                also: None,
            })
        };

        // Tables the header points to (for "another table's offset").
        let dir = w64(OFF_DIR);
        let dir_cap = w64(OFF_DIR_CAP);
        let reg = w64(OFF_REG);
        let reg_len = w64(OFF_REG_LEN);
        let reg_cap = w64(OFF_REG_CAP);
        let journal = w64(OFF_JOURNAL);
        let journal_cap = w64(OFF_JOURNAL_CAP);
        let procs = w64(OFF_PROCS);
        let procs_len = w64(OFF_PROCS_LEN);
        let tables = [dir, reg, journal, procs];

        // Heap blocks.
        struct Block {
            off: u64,
            size: u64,
            flags: u64,
        }
        let mut blocks = Vec::new();
        let mut blk = HEADER_PAGE;
        while blk < top {
            let head = w64(blk);
            let size = head & !7;
            assert!(
                size >= 32 && blk + size <= top,
                "pristine block {blk:#x}: {head:#x}"
            );
            blocks.push(Block {
                off: blk,
                size,
                flags: head & 7,
            });
            blk += size;
        }
        let parked: Vec<u64> = blocks
            .iter()
            .filter(|b| b.flags & (INUSE | FAST) == INUSE | FAST)
            .map(|b| b.off)
            .collect();
        let binned: Vec<u64> = blocks
            .iter()
            .filter(|b| b.flags & INUSE == 0)
            .map(|b| b.off)
            .collect();
        assert!(
            !parked.is_empty() && !binned.is_empty(),
            "the pristine store has parked and binned blocks"
        );

        // Records: every live directory slot, then records the process
        // table pins (a removed object still pinned).
        let mut recs: Vec<(u64, bool)> = Vec::new();
        for i in 0..dir_cap {
            let slot = w64(dir + 8 * i);
            if slot > 1 {
                recs.push(((slot & SLOT_OFF_MASK) << 3, true));
            }
        }
        let mut pin_tables = Vec::new();
        for s in 0..procs_len {
            let so = procs + s * PROC_SLOT;
            if rd(img, so, 4) != 0 {
                let (t, cap) = (w64(so + 16), w64(so + 24));
                pin_tables.push((so, t, cap));
                for e in 0..cap {
                    let r = w64(t + e * PIN_ENTRY);
                    if r != 0 && !recs.iter().any(|&(x, _)| x == r) {
                        recs.push((r, false));
                    }
                }
            }
        }
        assert_eq!(
            pin_tables.len(),
            2,
            "the pristine store has two used process slots"
        );

        // Registry entries: (size of the type) by index, for value sizes.
        let type_size = |idx: u64| w64(reg + idx * REG_ENTRY + 16);
        let mut objects = Vec::new();
        for &(rec, live) in &recs {
            let blk = rec - 8;
            let end = blk + (w64(blk) & !7);
            let name_len = rd(img, rec + 16, 2);
            let name = String::from_utf8(
                img[(rec + REC_NAME) as usize..(rec + REC_NAME + name_len) as usize].to_vec(),
            )
            .unwrap();
            let value = rec + rd(img, rec + 20, 4);
            let value_end = value + type_size(rd(img, rec + 8, 4)) * w64(rec);
            objects.push(Obj {
                kind: kind_of(&name),
                name,
                blk,
                end,
                rec,
                value,
                value_end,
                live,
            });
        }
        objects.sort_by_key(|o| o.rec);
        assert_eq!(
            objects.iter().filter(|o| o.live).count(),
            9 + FILLERS as usize
        );
        let rec_of = |n: &str| objects.iter().find(|o| o.name == n).unwrap().rec;
        let (config_rec, samples_rec, gone_cfg_rec) =
            (rec_of("config"), rec_of("samples"), rec_of("gone_cfg"));

        // ---- classes, then words, structure by structure.
        // Header page.
        set(&mut classes, LOCK.start, LOCK.end, Class::Lock);
        let generic_tables: Vec<u64> = tables
            .iter()
            .copied()
            .chain([config_rec, samples_rec, parked[0] + 8, binned[0] + 8])
            .collect();
        for &(off, width, what) in HEADER_WORDS {
            let class = if INDEX_WORDS.contains(&off) {
                Class::HeaderIndex
            } else {
                Class::Header
            };
            set(&mut classes, off, off + width as u64, class);
            let extras = match off {
                OFF_COMMITTED => vec![
                    top,
                    capacity - HEADER_PAGE,
                    committed - HEADER_PAGE,
                    committed + HEADER_PAGE,
                ],
                OFF_TOP => vec![
                    top - 8,
                    top - 16,
                    top - 64,
                    committed,
                    committed - 8,
                    HEADER_PAGE,
                ],
                OFF_DIR | OFF_REG | OFF_JOURNAL | OFF_PROCS => generic_tables.clone(),
                OFF_DIR_CAP => vec![2, 32, 128, dir_cap * 2, 1 << 40, 1 << 61],
                OFF_REG_LEN => vec![reg_cap + 1, reg_len - 1],
                OFF_REG_CAP => vec![reg_len - 1, reg_cap * 2, 1 << 61],
                OFF_JOURNAL_CAP => vec![journal_cap * 2, 1 << 60],
                OFF_JOURNAL_LEN => vec![2, journal_cap, journal_cap + 1],
                OFF_PROCS_LEN => vec![procs_len + 1, 1 << 58],
                OFF_PARKED => vec![parked.len() as u64 + 1, parked.len() as u64 - 1],
                OFF_STATE => vec![2],
                _ => vec![],
            };
            word(&mut words, off, width, format!("header {what}"), extras);
        }
        let blocky: Vec<u64> = [config_rec - 8, parked[0], binned[0], top, top - 8].to_vec();
        for i in 0..BITMAP_WORDS {
            let off = OFF_BITMAP + 8 * i;
            set(&mut classes, off, off + 8, Class::Header);
            word(
                &mut words,
                off,
                8,
                format!("free-list bitmap word {i}"),
                vec![],
            );
        }
        for i in 0..NBINS {
            let off = OFF_BINS + 8 * i;
            set(&mut classes, off, off + 8, Class::Header);
            word(&mut words, off, 8, format!("bin head {i}"), blocky.clone());
        }
        for i in 0..NFAST {
            let off = OFF_FAST + 8 * i;
            set(&mut classes, off, off + 8, Class::Header);
            word(
                &mut words,
                off,
                8,
                format!("fast-list head {i}"),
                blocky.clone(),
            );
        }

        // Every heap block: its header, and a free block's links.
        for b in &blocks {
            let (off, size, flags) = (b.off, b.size, b.flags);
            set(
                &mut classes,
                off + 8,
                off + size,
                Class::Inert(Inert::BlockSlack),
            );
            set(&mut classes, off, off + 8, Class::BlockHead);
            word(
                &mut words,
                off,
                8,
                format!("block {off:#x} header"),
                vec![
                    (top - off) | flags,
                    (capacity - off) | flags,
                    (size + 8) | flags,
                    (size + 24) | flags,
                    (size - 8) | flags,
                    size | (flags ^ INUSE),
                    size | (flags ^ 2),
                    size | (flags ^ FAST),
                ],
            );
            if flags & INUSE == 0 {
                set(
                    &mut classes,
                    off + 24,
                    off + size - 8,
                    Class::Inert(Inert::FreeInterior),
                );
                for (at, what) in [
                    (off + 8, "next"),
                    (off + 16, "prev"),
                    (off + size - 8, "footer"),
                ] {
                    set(&mut classes, at, at + 8, Class::FreeLink);
                    let extras = if what == "footer" {
                        vec![size + 8, size - 8]
                    } else {
                        vec![off, config_rec - 8, parked[0]]
                    };
                    word(
                        &mut words,
                        at,
                        8,
                        format!("free block {off:#x} {what}"),
                        extras,
                    );
                }
            } else if flags & FAST != 0 {
                set(
                    &mut classes,
                    off + 16,
                    off + size,
                    Class::Inert(Inert::FreeInterior),
                );
                set(&mut classes, off + 8, off + 16, Class::FreeLink);
                let other = parked.iter().copied().find(|&p| p != off).unwrap_or(0);
                word(
                    &mut words,
                    off + 8,
                    8,
                    format!("parked block {off:#x} link"),
                    vec![off, other, config_rec - 8, binned[0]],
                );
            }
        }

        // The directory table.
        set(&mut classes, dir, dir + dir_cap * 8, Class::DirSlot);
        for i in 0..dir_cap {
            let off = dir + 8 * i;
            let slot = w64(off);
            let tag = slot & !SLOT_OFF_MASK;
            word(
                &mut words,
                off,
                8,
                format!("directory slot {i}"),
                vec![
                    tag | config_rec >> 3,
                    tag | gone_cfg_rec >> 3,
                    tag | (parked[0] + 8) >> 3,
                    tag | top >> 3,
                    slot ^ (1 << 40),
                ],
            );
        }

        // The registry table and the type descriptions.
        for i in 0..reg_cap {
            let e = reg + i * REG_ENTRY;
            if i >= reg_len {
                set(
                    &mut classes,
                    e,
                    e + REG_ENTRY,
                    Class::Inert(Inert::RegistryPadding),
                );
                continue;
            }
            set(&mut classes, e, e + REG_ENTRY, Class::Registry);
            let (desc, desc_len) = (w64(e + 8), rd(img, e + 28, 4));
            // The encoded layout is read whenever the type is: by a wrong
            // type's error, `entries`, `check`, and the walk that frees a
            // removed object's containers.
            set(&mut classes, desc, desc + desc_len, Class::Registry);
            let other_fp = w64(reg + ((i + 1) % reg_len) * REG_ENTRY);
            let size = w64(e + 16);
            for (at, width, what, extras) in [
                (0, 8, "fingerprint", vec![other_fp]),
                (
                    8,
                    8,
                    "encoded layout offset",
                    vec![config_rec, capacity - 16],
                ),
                (
                    16,
                    8,
                    "size",
                    vec![size + 8, size * 2, size.saturating_sub(4), 4096, 1 << 40],
                ),
                (24, 4, "align", vec![3, 4096, 8192, 1 << 31]),
                (
                    28,
                    4,
                    "encoded layout length",
                    vec![desc_len + 1, capacity as u32 as u64],
                ),
            ] {
                word(
                    &mut words,
                    e + at,
                    width,
                    format!("registry entry {i} {what}"),
                    extras,
                );
            }
        }

        // The journal: its entries are never read while its length is 0;
        // entry 0's words are cases with the length set to 1 (what a
        // process that died in an operation leaves), so it is replayed.
        assert_eq!(w64(OFF_JOURNAL_LEN), 0, "the pristine journal is empty");
        let tagged = |kind: u64, off: u64| kind << 60 | off;
        let config_value = objects.iter().find(|o| o.name == "config").unwrap().value;
        for (at, what, extras) in [
            (
                0,
                "offset",
                vec![
                    tagged(3, 0),
                    tagged(3, 8),
                    tagged(3, OFF_CAPACITY),
                    tagged(3, OFF_TOP),
                    tagged(3, LOCK.start),
                    tagged(2, LOCK.start + 16),
                    tagged(3, committed - 8),
                    tagged(3, committed),
                    tagged(3, top),
                    tagged(3, config_value),
                    tagged(1, OFF_CAPACITY + 1),
                    tagged(4, OFF_TOP),
                    tagged(15, OFF_TOP),
                ],
            ),
            (8, "old value", vec![top, top + 8, HEADER_PAGE]),
        ] {
            words.push(Word {
                off: journal + at,
                width: 8,
                what: format!("journal entry 0 {what} (journal length 1)"),
                extras,
                also: Some((OFF_JOURNAL_LEN, 8, 1)),
            });
        }
        set(
            &mut classes,
            journal,
            journal + journal_cap * JOURNAL_ENTRY,
            Class::Inert(Inert::JournalEntry),
        );

        // The process table: used slots, their pin tables, free slots.
        for s in 0..procs_len {
            let so = procs + s * PROC_SLOT;
            if rd(img, so, 4) == 0 {
                set(
                    &mut classes,
                    so,
                    so + PROC_SLOT,
                    Class::Inert(Inert::FreeProcSlot),
                );
                set(&mut classes, so, so + 4, Class::ProcSlot);
                word(
                    &mut words,
                    so,
                    4,
                    format!("free process slot {s} pid"),
                    vec![1, 0x8000_0000],
                );
                continue;
            }
            set(&mut classes, so, so + PROC_SLOT, Class::ProcSlot);
            let (t, cap) = (w64(so + 16), w64(so + 24));
            for (at, width, what, extras) in [
                (0u64, 4u8, "pid", vec![0x8000_0000]),
                (4, 4, "pid namespace", vec![]),
                (8, 8, "start time", vec![]),
                (16, 8, "pin table", {
                    // ...and the other used slot's pin table (aliasing).
                    let other = pin_tables.iter().find(|p| p.0 != so).map_or(0, |p| p.1);
                    generic_tables.iter().copied().chain([other]).collect()
                }),
                (24, 8, "pin table capacity", vec![2, 3, cap * 2, 1 << 60]),
                (32, 8, "pin entries used", vec![cap, cap + 1]),
                (
                    40,
                    8,
                    "reservation 0",
                    vec![config_rec, gone_cfg_rec, binned[0] + 8, parked[0] + 8],
                ),
                (48, 8, "reservation 1", vec![config_rec]),
                (56, 8, "reservation 2", vec![config_rec]),
            ] {
                word(
                    &mut words,
                    so + at,
                    width,
                    format!("process slot {s} {what}"),
                    extras,
                );
            }
            set(&mut classes, t, t + cap * PIN_ENTRY, Class::PinEntry);
            for e in 0..cap {
                let eo = t + e * PIN_ENTRY;
                word(
                    &mut words,
                    eo,
                    8,
                    format!("process slot {s} pin entry {e} record"),
                    vec![
                        config_rec,
                        gone_cfg_rec,
                        binned[0] + 8,
                        parked[0] + 8,
                        HEADER_PAGE,
                    ],
                );
                word(
                    &mut words,
                    eo + 8,
                    8,
                    format!("process slot {s} pin entry {e} count"),
                    vec![2, u32::MAX as u64, 1 << 32],
                );
            }
        }

        // Records, last: their bytes are inside the blocks classified above.
        for (i, o) in objects.iter().enumerate() {
            let i16_ = i as u16;
            let name_end = o.rec + REC_NAME + o.name.len() as u64;
            set(
                &mut classes,
                o.rec,
                o.end,
                Class::Inert(Inert::RecordPadding),
            );
            set(&mut classes, o.rec, name_end, Class::Record(i16_));
            set(&mut classes, o.value, o.value_end, Class::Value(i16_));
            let payload = o.end - o.rec;
            let rel = o.value - o.rec;
            let count = w64(o.rec);
            let who = format!("record of {:?}", o.name);
            for (at, width, what, extras) in [
                (
                    0u64,
                    8u8,
                    "count",
                    vec![2, count + 1, count.saturating_sub(1)],
                ),
                (8, 4, "type index", vec![reg_len - 1, reg_len, reg_cap]),
                (
                    12,
                    4,
                    "pin word",
                    vec![
                        PIN_REMOVED as u64,
                        PIN_REMOVED as u64 | 1,
                        (PIN_REMOVED - 1) as u64,
                    ],
                ),
                (
                    16,
                    2,
                    "name length",
                    vec![payload - REC_NAME, payload - REC_NAME + 1],
                ),
                (18, 2, "flags", vec![2, 3]),
                (
                    20,
                    4,
                    "value offset",
                    vec![payload, payload - 8, REC_NAME, rel + 8, rel - 8, rel + 4],
                ),
            ] {
                word(
                    &mut words,
                    o.rec + at,
                    width,
                    format!("{who} {what}"),
                    extras,
                );
            }
        }

        Walk {
            image,
            capacity,
            committed,
            top,
            classes,
            objects,
            words,
        }
    }

    /// The values a case sets `w` to: the generic extremes of its width,
    /// then its extras, without repeats (a value equal to the pristine one
    /// is kept: that case must then behave exactly like the pristine run).
    fn values(&self, w: &Word) -> Vec<u64> {
        let max = if w.width == 8 {
            u64::MAX
        } else {
            (1u64 << (8 * w.width as u32)) - 1
        };
        let mut v = vec![0, 1, max, max - 7];
        if w.width == 8 {
            v.extend([self.capacity, self.capacity - 8, self.top, self.top + 8]);
        }
        v.extend(w.extras.iter().map(|&x| x & max));
        let mut seen = BTreeSet::new();
        v.retain(|x| seen.insert(*x));
        v
    }

    fn object_index(&self, name: &str) -> Option<usize> {
        self.objects.iter().position(|o| o.name == name)
    }
}

// ---- cases ----------------------------------------------------------------------

/// Byte ranges `[lo, hi)` of the image a case concerns.
struct Ranges {
    /// The bytes the case changed.
    changed: Vec<(u64, u64)>,
    /// Words a rollback of the journal the case leaves may write.
    replayed: Vec<(u64, u64)>,
}

/// One change to the pristine image.
#[derive(Debug, Clone, Copy)]
enum Case {
    /// Flip byte `off` with pattern `pattern`.
    Flip { off: u64, pattern: u8 },
    /// Set word `word` of [`Walk::words`] to `value`.
    Word { word: u32, value: u64 },
}

/// Which families to run.
fn family_enabled(name: &str) -> bool {
    std::env::var(FAMILY_VAR).map_or(true, |f| f == name)
}

fn full_sweep() -> bool {
    std::env::var(FULL_SWEEP_VAR).is_ok_and(|v| v == "1")
}

/// The byte-flip cases, offset-major: all of the header page (except the
/// lock) and all of the heap up to `top`. Sampled unless
/// `SHMSTORE_FULL_SWEEP=1`:
///
/// - every pattern for every metadata byte (header fields, block headers,
///   free-list links, directory slots, record fields and names, registry
///   entries, process slots, pin entries) and for the first 32 bytes of
///   each heap block;
/// - two of the patterns, rotating with the word, for every value byte
///   (byte `i` of word `w` gets patterns `(i + w) % 8` and
///   `(i + w + 4) % 8`, so that each byte position of a word meets every
///   pattern across consecutive words);
/// - the same two patterns for the bytes nothing reads (rule 4: header
///   and record padding, free-block interiors, journal entries, free
///   process slots, type descriptions), but only in one word out of 8.
fn flip_cases(walk: &Walk, upto: u64, out: &mut Vec<Case>) {
    let top = walk.top;
    let mut block_heads = vec![false; top as usize];
    let mut blk = HEADER_PAGE;
    while blk < top {
        block_heads[blk as usize..(blk + 32).min(top) as usize].fill(true);
        blk += rd(&walk.image, blk, 8) & !7;
    }
    let full = full_sweep();
    let n = PATTERNS.len() as u64;
    for off in (0..upto.min(top)).filter(|off| !LOCK.contains(off)) {
        let head = block_heads[off as usize];
        let class = walk.class_at(off);
        let inert = matches!(class, Class::Inert(_));
        if !full && inert && !head && (off / 8) % 8 != 0 {
            continue;
        }
        let every = full || head || !(inert || matches!(class, Class::Value(_)));
        let rot = (off % 8 + off / 8) % n;
        for p in (0..n).filter(|&p| every || p == rot || p == (rot + n / 2) % n) {
            out.push(Case::Flip {
                off,
                pattern: p as u8,
            });
        }
    }
}

/// The word-extreme cases: every word of the walk with every value of
/// [`Walk::values`].
fn word_cases(walk: &Walk, out: &mut Vec<Case>) {
    for (i, w) in walk.words.iter().enumerate() {
        for value in walk.values(w) {
            out.push(Case::Word {
                word: i as u32,
                value,
            });
        }
    }
}

impl Case {
    /// The bytes it changes, and the words a replay of the journal it
    /// leaves may write (the targets of the entries its length covers, in
    /// the case's image `img`), clipped to the image.
    fn ranges(&self, walk: &Walk, img: &[u8]) -> Ranges {
        let changed = match *self {
            Case::Flip { off, .. } => vec![(off, off + 1)],
            Case::Word { word, .. } => {
                let w = &walk.words[word as usize];
                let mut r = vec![(w.off, w.off + w.width as u64)];
                if let Some((off, width, _)) = w.also {
                    r.push((off, off + width as u64));
                }
                r
            }
        };
        let mut replayed = Vec::new();
        let (area, cap) = (rd(img, OFF_JOURNAL, 8), rd(img, OFF_JOURNAL_CAP, 8));
        let len = rd(img, OFF_JOURNAL_LEN, 8);
        if len > 0 && area < img.len() as u64 {
            for i in 0..len.min(cap).min((img.len() as u64 - area) / JOURNAL_ENTRY) {
                let target = rd(img, area + i * JOURNAL_ENTRY, 8) & ((1 << 60) - 1);
                replayed.push((target, target.saturating_add(8)));
            }
        }
        let end = img.len() as u64;
        let clip = |v: Vec<(u64, u64)>| -> Vec<(u64, u64)> {
            v.into_iter()
                .map(|(lo, hi)| (lo.min(end), hi.min(end)))
                .filter(|(lo, hi)| lo < hi)
                .collect()
        };
        Ranges {
            changed: clip(changed),
            replayed: clip(replayed),
        }
    }

    fn apply(&self, walk: &Walk, img: &mut [u8]) {
        match *self {
            Case::Flip { off, pattern } => {
                img[off as usize] = PATTERNS[pattern as usize].1(img[off as usize])
            }
            Case::Word { word, value } => {
                let w = &walk.words[word as usize];
                let mut set = |off: u64, width: u8, value: u64| {
                    let o = off as usize;
                    img[o..o + width as usize]
                        .copy_from_slice(&value.to_le_bytes()[..width as usize]);
                };
                if let Some((off, width, value)) = w.also {
                    set(off, width, value);
                }
                set(w.off, w.width, value);
            }
        }
    }

    /// A name for the kind of bytes the case changes, for the case counts.
    fn category(&self, walk: &Walk) -> &'static str {
        match *self {
            Case::Flip { off, .. } => match walk.class_at(off) {
                Class::Header | Class::HeaderIndex => "flips of header fields",
                Class::Inert(_) => "flips of unread bytes",
                Class::Value(_) => "flips of values",
                _ => "flips of heap metadata",
            },
            Case::Word { word, .. } => {
                let what = &walk.words[word as usize].what;
                if what.starts_with("journal") {
                    "journal entry words"
                } else if what.starts_with("header")
                    || what.contains("head ")
                    || what.starts_with("free-list")
                {
                    "header words"
                } else if what.starts_with("block")
                    || what.starts_with("free block")
                    || what.starts_with("parked")
                {
                    "block header and free-list words"
                } else if what.starts_with("directory") {
                    "directory slots"
                } else if what.starts_with("record") {
                    "record fields"
                } else if what.starts_with("registry") {
                    "registry fields"
                } else {
                    "process table words"
                }
            }
        }
    }

    fn describe(&self, walk: &Walk) -> String {
        match *self {
            Case::Flip { off, pattern } => {
                format!(
                    "flip offset {off} ({:?}) with {}",
                    walk.class_at(off),
                    PATTERNS[pattern as usize].0
                )
            }
            Case::Word { word, value } => {
                let w = &walk.words[word as usize];
                format!(
                    "set {} (offset {}, {} bytes) to {value:#x}",
                    w.what, w.off, w.width
                )
            }
        }
    }
}

impl Walk {
    fn class_at(&self, off: u64) -> Class {
        self.classes
            .get(off as usize)
            .copied()
            .unwrap_or(Class::Inert(Inert::BlockSlack))
    }
}

// ---- the script and its model -------------------------------------------------------

/// What a case changed, as the rules see it.
struct Ctx {
    /// The image is the pristine one (a word set to its own value).
    pristine: bool,
    /// The case changed a header word that locates names or the directory
    /// table: names may become unreachable (rule 3).
    index: bool,
    /// The case changed a registry entry.
    registry: bool,
    /// Every changed byte is one nothing reads (rule 4).
    inert: bool,
    /// Every changed byte is a value byte of this object (rule 4).
    value_only: Option<usize>,
    /// Objects whose block the case changed.
    touched: BTreeSet<usize>,
    /// Objects whose block, other than the value bytes, the case changed.
    meta_touched: BTreeSet<usize>,
}

impl Ctx {
    /// `changed`: the bytes the case changed in `img`; `replayed`: words a
    /// rollback of the journal the case leaves may write (with values
    /// from the journal, so an object there may then read anything).
    fn new(walk: &Walk, Ranges { changed, replayed }: Ranges, img: &[u8]) -> Ctx {
        let classes: BTreeSet<Class> = changed
            .iter()
            .chain(&replayed)
            .flat_map(|&(lo, hi)| (lo..hi).map(|o| walk.class_at(o)))
            .collect();
        let mut touched = BTreeSet::new();
        let mut meta_touched = BTreeSet::new();
        for (i, o) in walk.objects.iter().enumerate() {
            for &(lo, hi) in &changed {
                if lo < o.end && o.blk < hi {
                    touched.insert(i);
                    if lo < o.value || hi > o.value_end {
                        meta_touched.insert(i);
                    }
                }
            }
            for &(lo, hi) in &replayed {
                if lo < o.end && o.blk < hi {
                    touched.insert(i);
                    meta_touched.insert(i);
                }
            }
        }
        let value_only = match classes.iter().collect::<Vec<_>>()[..] {
            [Class::Value(i)] => Some(*i as usize),
            _ => None,
        };
        Ctx {
            pristine: img == walk.image,
            index: classes
                .iter()
                .any(|c| matches!(c, Class::HeaderIndex | Class::DirSlot)),
            registry: classes.contains(&Class::Registry),
            inert: classes.iter().all(|c| matches!(c, Class::Inert(_))),
            value_only,
            touched,
            meta_touched,
        }
    }
}

/// What the model expects of a name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Exp {
    Absent,
    /// Present with this value (`None`: any value, its own metadata was
    /// changed; `Some(None)`: bytes that are not a valid value, so a read
    /// must fail).
    Present(Option<Option<String>>),
}

/// One operation's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Op {
    label: &'static str,
    subject: Option<&'static str>,
    outcome: String,
}

struct Run<'a> {
    walk: &'a Walk,
    ctx: Ctx,
    model: BTreeMap<String, Exp>,
    ops: Vec<Op>,
    findings: Vec<String>,
}

fn kind(e: &Error) -> String {
    let dbg = format!("{e:?}");
    dbg.split([' ', '{', '(']).next().unwrap_or("?").to_string()
}

fn outcome<T>(r: &Result<T, Error>, ok: impl FnOnce(&T) -> String) -> String {
    match r {
        Ok(v) => {
            let s = ok(v);
            if s.is_empty() {
                "Ok".into()
            } else {
                format!("Ok:{s}")
            }
        }
        Err(e) => format!("Err:{}", kind(e)),
    }
}

/// The errors each operation may give on a damaged store (rule 5).
fn allowed(label: &str, err: &str) -> bool {
    let common = matches!(err, "Corrupted");
    if label == "open" {
        return common || matches!(err, "NotAStore" | "Incompatible");
    }
    if label.starts_with("insert") {
        return common || matches!(err, "AlreadyExists" | "OutOfMemory" | "NoSpace");
    }
    if label.starts_with("get_or_insert") {
        return common || matches!(err, "OutOfMemory" | "NoSpace" | "TypeMismatch");
    }
    if label.starts_with("try_lock") {
        return common || matches!(err, "OwnerDied" | "NotFound" | "TypeMismatch");
    }
    if label.starts_with("get") || label.starts_with("read") {
        return common || matches!(err, "NotFound" | "TypeMismatch");
    }
    if label.starts_with("remove") {
        return common || matches!(err, "NotFound");
    }
    // contains, entries, stats, check
    common
}

impl<'a> Run<'a> {
    fn new(walk: &'a Walk, ctx: Ctx, img: &[u8]) -> Run<'a> {
        let mut model = BTreeMap::new();
        for (i, o) in walk.objects.iter().enumerate() {
            let exp = if !o.live {
                Exp::Absent
            } else if ctx.meta_touched.contains(&i)
                || (o.kind == Kind::Mutex && ctx.touched.contains(&i))
            {
                Exp::Present(None)
            } else if o.kind == Kind::Mutex {
                Exp::Present(Some(Some("5".into())))
            } else {
                Exp::Present(Some(decode(
                    o.kind,
                    &img[o.value as usize..o.value_end as usize],
                )))
            };
            model.insert(o.name.clone(), exp);
        }
        Run {
            walk,
            ctx,
            model,
            ops: Vec::new(),
            findings: Vec::new(),
        }
    }

    fn exp(&self, name: &str) -> Exp {
        self.model.get(name).cloned().unwrap_or(Exp::Absent)
    }

    fn meta_touched(&self, name: &str) -> bool {
        self.walk
            .object_index(name)
            .is_some_and(|i| self.ctx.meta_touched.contains(&i))
    }

    /// Rule 3 does not apply to `name` in this case.
    fn lenient(&self, name: &str) -> bool {
        self.ctx.index || self.meta_touched(name)
    }

    fn finding(&mut self, rule: &str, label: &str, what: String) {
        self.findings.push(format!("[{rule}] {label}: {what}"));
    }

    fn record(&mut self, label: &'static str, subject: Option<&'static str>, outcome: String) {
        if let Some(err) = outcome.strip_prefix("Err:") {
            if !allowed(label, err) {
                self.finding("5 specific errors", label, format!("returned {err}"));
            }
        }
        self.ops.push(Op {
            label,
            subject,
            outcome,
        });
    }

    /// Rule 3: `visible` is what the store said about `name`. Where the
    /// rule does not apply, the model follows the store from here on (a
    /// name that became unreachable stays so; one that appeared has an
    /// unknown value).
    fn visible(&mut self, label: &str, name: &str, visible: bool) {
        let present = matches!(self.exp(name), Exp::Present(_));
        if present == visible {
            return;
        }
        if self.lenient(name) {
            let now = if visible {
                Exp::Present(None)
            } else {
                Exp::Absent
            };
            self.model.insert(name.to_string(), now);
            return;
        }
        self.finding(
            "3 names",
            label,
            format!(
                "{name:?} is {} but the model says it is {}",
                if visible { "visible" } else { "missing" },
                if present { "present" } else { "absent" }
            ),
        );
    }

    /// Rules 1 and 3 for a read of `name` that gave `got` (decoded bytes).
    fn read_result(&mut self, label: &str, name: &str, got: Result<&str, &Error>) {
        match got {
            Ok(v) => {
                self.visible(label, name, true);
                match self.exp(name) {
                    Exp::Present(Some(Some(want))) if v != want => self.finding(
                        "1 wrong data",
                        label,
                        format!("{name:?} read {v}, expected {want}"),
                    ),
                    Exp::Present(Some(None)) => self.finding(
                        "1 wrong data",
                        label,
                        format!("{name:?} read {v} from bytes that are not a valid value"),
                    ),
                    _ => {}
                }
            }
            Err(Error::NotFound { .. }) => self.visible(label, name, false),
            Err(_) => {}
        }
    }

    /// A typed read of `name` (for the `ShmMutex`, getting its handle).
    fn read(&mut self, store: &Store, label: &'static str, name: &'static str) {
        let k = self
            .walk
            .object_index(name)
            .map_or_else(|| kind_of(name), |i| self.walk.objects[i].kind);
        let got: Result<Vec<u8>, Error> = match k {
            Kind::U64 => store.get::<u64>(name).map(|h| h.bytes()),
            Kind::U32 => store.get::<u32>(name).map(|h| h.bytes()),
            Kind::I16 => store.get::<i16>(name).map(|h| h.bytes()),
            Kind::F64 => store.get::<f64>(name).map(|h| h.bytes()),
            Kind::Bytes4 => store.get::<[u8; 4]>(name).map(|h| h.bytes()),
            Kind::U16x3 => store.get::<[u16; 3]>(name).map(|h| h.bytes()),
            Kind::F32s => store.get_slice::<f32>(name).map(|h| h.bytes()),
            Kind::Config => store.get::<Config>(name).map(|h| h.bytes()),
            Kind::AtomicU32 => store.get::<AtomicU32>(name).map(|h| h.bytes()),
            Kind::Mutex => unreachable!("the mutex is read by try_lock"),
        };
        let got = got.map(|b| decode(k, &b).expect("a typed read is a valid value"));
        self.read_result(label, name, got.as_deref());
        self.record(label, Some(name), outcome(&got, |v| v.clone()));
    }

    /// An insert of `name` with `value` (as the model will read it back).
    fn inserted(
        &mut self,
        label: &'static str,
        name: &'static str,
        r: Result<(), Error>,
        value: String,
    ) {
        match &r {
            Ok(()) => {
                self.visible(label, name, false);
                self.model
                    .insert(name.to_string(), Exp::Present(Some(Some(value))));
            }
            Err(Error::AlreadyExists { .. }) => self.visible(label, name, true),
            Err(_) => {}
        }
        self.record(label, Some(name), outcome(&r, |_| String::new()));
    }

    fn removed(&mut self, label: &'static str, name: &'static str, r: Result<(), Error>) {
        match &r {
            Ok(()) => {
                self.visible(label, name, true);
                self.model.insert(name.to_string(), Exp::Absent);
            }
            Err(Error::NotFound { .. }) => self.visible(label, name, false),
            Err(_) => {}
        }
        self.record(label, Some(name), outcome(&r, |_| String::new()));
    }

    /// `get_or_insert_with(name, init)` that read `got`: the existing
    /// value if the model has one, else `init`'s.
    fn got_or_inserted(
        &mut self,
        label: &'static str,
        name: &'static str,
        got: Result<String, Error>,
        init: String,
    ) {
        if let Ok(v) = &got {
            match self.exp(name) {
                Exp::Absent => {
                    if *v != init && !self.lenient(name) {
                        self.finding(
                            "1 wrong data",
                            label,
                            format!("{name:?} was absent, yet reads {v}, not the new {init}"),
                        );
                    }
                }
                // The name may have become unreachable (an index case):
                // then a new value was stored.
                _ if *v == init && self.lenient(name) => {}
                _ => self.read_result(label, name, Ok(v)),
            }
            self.model
                .insert(name.to_string(), Exp::Present(Some(Some(v.clone()))));
        } else if let Err(e) = &got {
            self.read_result(label, name, Err(e));
        }
        self.record(label, Some(name), outcome(&got, |v| v.clone()));
    }

    /// Runs the script over the store `name`.
    fn script(&mut self, name: &str) {
        step("open");
        let store = match Store::options().open_timeout(OPEN_TIMEOUT).open(name) {
            Ok(s) => s,
            Err(e) => {
                self.record("open", None, format!("Err:{}", kind(&e)));
                return;
            }
        };
        self.record("open", None, "Ok".into());
        step("get u64");
        self.read(&store, "get counter", "counter");
        step("get Config");
        self.read(&store, "get config", "config");
        step("get_slice f32");
        self.read(&store, "get_slice samples", "samples");
        step("get wrong type");
        let wrong = store.get::<u32>("counter").map(|h| *h);
        if let Ok(v) = &wrong {
            if !self.meta_touched("counter") && !self.ctx.index && !self.ctx.registry {
                self.finding(
                    "1 wrong data",
                    "get counter as u32",
                    format!("a u64 object read as a u32: {v}"),
                );
            }
        }
        self.record(
            "get counter as u32",
            Some("counter"),
            outcome(&wrong, |_| String::new()),
        );
        step("get removed");
        self.read(&store, "get gone_small", "gone_small");
        step("contains");
        for n in NAMES {
            let r = store.contains(n);
            if let Ok(v) = r {
                self.visible("contains", n, v);
            }
            self.record("contains", Some(n), outcome(&r, |v| v.to_string()));
        }
        step("entries");
        let entries = store.entries();
        if let Ok(list) = &entries {
            let listed: BTreeSet<&str> = list.iter().map(|e| e.name.as_str()).collect();
            let names: Vec<String> = self.model.keys().cloned().collect();
            for n in &names {
                self.visible("entries", n, listed.contains(n.as_str()));
            }
            for n in &listed {
                // A record whose own name (length) changed is listed
                // under what its bytes now say.
                if !self.model.contains_key(*n)
                    && !self.ctx.index
                    && self.ctx.meta_touched.is_empty()
                {
                    self.finding("3 names", "entries", format!("lists an unknown name {n:?}"));
                }
            }
        }
        self.record("entries", None, outcome(&entries, |l| l.len().to_string()));
        step("stats");
        let stats = store.stats();
        self.record(
            "stats",
            None,
            outcome(&stats, |s| format!("{} objects", s.objects)),
        );
        step("check");
        let check = store.check();
        self.record(
            "check",
            None,
            outcome(&check, |c| {
                if c.is_ok() {
                    "clean".into()
                } else {
                    "problems".into()
                }
            }),
        );
        step("try_lock mutex");
        self.try_lock(&store);
        // Before anything grows the directory: a re-inserted name takes the
        // tombstone its removal left.
        step("re-insert removed names (reuses tombstones)");
        let r = store.insert("gone_small", 3u64);
        self.inserted("insert gone_small", "gone_small", r, "3".into());
        let r = store.insert("gone_cfg", NEW_CONFIG);
        self.inserted(
            "insert gone_cfg",
            "gone_cfg",
            r,
            decode(Kind::Config, &NEW_CONFIG.bytes()).unwrap(),
        );
        step("insert u64");
        let r = store.insert("new", 7u64);
        self.inserted("insert new", "new", r, "7".into());
        step("insert_slice f32 (grows the directory, consolidates parked blocks)");
        let r = store.insert_slice("new_slice", &[0.5f32; 300]);
        self.inserted(
            "insert_slice new_slice",
            "new_slice",
            r,
            decode(Kind::F32s, &[0.5f32; 300].bytes()).unwrap(),
        );
        step("insert new type (grows the registry)");
        let r = store.insert("new_type", [7u16; 3]);
        self.inserted(
            "insert new_type",
            "new_type",
            r,
            decode(Kind::U16x3, &[7u16; 3].bytes()).unwrap(),
        );
        step("remove");
        let r = store.remove("counter");
        self.removed("remove counter", "counter", r);
        step("remove a pinned object");
        let pinned = store.get::<u64>("tail");
        let got = pinned
            .as_ref()
            .map(|h| decode(Kind::U64, &h.bytes()).unwrap());
        self.read_result("get tail", "tail", got.as_deref().map_err(|e| *e));
        let out = match &got {
            Ok(v) => format!("Ok:{v}"),
            Err(e) => format!("Err:{}", kind(e)),
        };
        self.record("get tail", Some("tail"), out);
        let r = store.remove("tail");
        self.removed("remove tail", "tail", r);
        step("drop the last pin of a removed object");
        drop(pinned);
        step("remove a slice");
        let r = store.remove("samples");
        self.removed("remove samples", "samples", r);
        step("get_or_insert_with");
        let hits = store
            .get_or_insert_with("hits", || AtomicU32::new(0))
            .map(|h| h.fetch_add(1, Ordering::Relaxed).to_string());
        let was = hits.as_ref().ok().and_then(|v| v.parse::<u32>().ok());
        self.got_or_inserted("get_or_insert_with hits", "hits", hits, "0".into());
        if let Some(v) = was {
            self.model
                .insert("hits".into(), Exp::Present(Some(Some((v + 1).to_string()))));
        }
        let init = Config {
            enabled: true,
            mode: Mode::Off,
            level: 0,
        };
        let cfg = store
            .get_or_insert_with("config", || init)
            .map(|h| decode(Kind::Config, &h.bytes()).unwrap());
        self.got_or_inserted(
            "get_or_insert_with config",
            "config",
            cfg,
            decode(Kind::Config, &init.bytes()).unwrap(),
        );
        step("check again");
        let check = store.check();
        self.record(
            "check again",
            None,
            outcome(&check, |c| {
                if c.is_ok() {
                    "clean".into()
                } else {
                    "problems".into()
                }
            }),
        );
        step("read back");
        for (label, name) in [
            ("read new", "new"),
            ("read new_slice", "new_slice"),
            ("read new_type", "new_type"),
            ("read gone_small", "gone_small"),
            ("read gone_cfg", "gone_cfg"),
            ("read hits", "hits"),
            ("read fill0", "fill0"),
            ("read fill34", "fill34"),
        ] {
            self.read(&store, label, name);
        }
        // Not in the script: a slice over 64 KiB (copied outside the header
        // lock). A debug build initialises each element in place, one call
        // each, which made every case several times slower.
        step("drop");
        drop(store);
    }

    /// `try_lock` of the `ShmMutex`, then an increment under it.
    fn try_lock(&mut self, store: &Store) {
        let label = "try_lock lock";
        let m = match store.get::<ShmMutex<u64>>("lock") {
            Ok(m) => m,
            Err(e) => {
                self.read_result(label, "lock", Err(&e));
                self.record(label, Some("lock"), format!("Err:{}", kind(&e)));
                return;
            }
        };
        self.visible(label, "lock", true);
        let out = match m.try_lock() {
            Ok(Some(mut g)) => {
                let v = *g;
                if let Exp::Present(Some(Some(want))) = self.exp("lock") {
                    if want != v.to_string() {
                        self.finding(
                            "1 wrong data",
                            label,
                            format!("the mutex holds {v}, expected {want}"),
                        );
                    }
                    self.model
                        .insert("lock".into(), Exp::Present(Some(Some((v + 1).to_string()))));
                }
                *g += 1;
                format!("Ok:locked {v}")
            }
            Ok(None) => "Ok:busy".into(),
            Err(e) => format!("Err:{}", kind(&e)),
        };
        self.record(label, Some("lock"), out);
    }
}

/// Writes `img`'s committed bytes into the target segment and runs the
/// script over it, catching a panic (returned as its message).
fn run_case<'w>(
    walk: &'w Walk,
    file: &std::fs::File,
    target: &str,
    img: &[u8],
    ctx: Ctx,
) -> Result<Run<'w>, String> {
    file.write_all_at(&img[..walk.committed as usize], 0)
        .unwrap();
    let mut run = Run::new(walk, ctx, img);
    match catch_unwind(AssertUnwindSafe(|| run.script(target))) {
        Ok(()) => Ok(run),
        Err(_) => Err(LAST_PANIC
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default()),
    }
}

// ---- child: the sweep ---------------------------------------------------------------

/// The step of the script being run (for hang and panic reports).
static STEP: Mutex<&str> = Mutex::new("");
/// The case being run, plus one (0: none yet).
static CASE: AtomicUsize = AtomicUsize::new(0);
/// Milliseconds since `EPOCH` when the current case started.
static CASE_START_MS: AtomicU64 = AtomicU64::new(0);
/// Log every step to stderr (only in a child replaying one case: logging
/// every step of the whole sweep would cost millions of writes).
static VERBOSE: AtomicBool = AtomicBool::new(false);
/// Where and why the last panic happened, recorded by the panic hook.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

fn step(s: &'static str) {
    *STEP.lock().unwrap_or_else(|e| e.into_inner()) = s;
    if VERBOSE.load(Ordering::Relaxed) {
        let _ = writeln!(std::io::stderr(), "  step {s}");
    }
}

fn current_step() -> &'static str {
    *STEP.lock().unwrap_or_else(|e| e.into_inner())
}

/// Which sweep a child runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sweep {
    /// Both families over a small store on the machine's `/dev/shm`.
    Main,
    /// The word family over a partly committed store on a full tiny tmpfs.
    Tmpfs,
}

fn cases_for(walk: &Walk, mode: Sweep) -> Vec<Case> {
    let mut cases = Vec::new();
    if family_enabled("flips") {
        // The tmpfs part flips the header page only: the words that say
        // what is committed and where the tables are.
        let upto = if mode == Sweep::Main {
            walk.top
        } else {
            HEADER_PAGE
        };
        flip_cases(walk, upto, &mut cases);
    }
    if family_enabled("words") {
        word_cases(walk, &mut cases);
    }
    cases
}

/// Rule 2: the bytes of untouched objects that nothing may write, and the
/// header's identity words, after the script.
fn stray_writes(walk: &Walk, ctx: &Ctx, before: &[u8], after: &[u8], findings: &mut Vec<String>) {
    // Magic, version, creator, ABI, state and capacity: no operation
    // writes them.
    let ident = 0..OFF_COMMITTED as usize;
    if before[ident.clone()] != after[ident.clone()] {
        findings.push(format!(
            "[2 stray write] header identity words changed: {:02x?} -> {:02x?}",
            &before[ident.clone()],
            &after[ident]
        ));
    }
    for (i, o) in walk.objects.iter().enumerate() {
        if !o.live || !never_written(&o.name) || ctx.touched.contains(&i) {
            continue;
        }
        let (blk, end) = (o.blk as usize, o.end as usize);
        let head = |b: &[u8]| u64::from_le_bytes(b[blk..blk + 8].try_into().unwrap());
        let pins = (o.rec + REC_PINS) as usize..(o.rec + REC_PINS + 4) as usize;
        let same_head = (head(before) ^ head(after)) & !2 == 0;
        let same_rest = before[blk + 8..pins.start] == after[blk + 8..pins.start]
            && before[pins.end..end] == after[pins.end..end];
        if !same_head || !same_rest {
            let first = (blk..end).find(|&x| {
                !pins.contains(&x)
                    && before[x] != after[x]
                    && (x >= blk + 8 || (before[x] ^ after[x]) & !2 != 0)
            });
            findings.push(format!(
                "[2 stray write] object {:?} (block {blk:#x}..{end:#x}, value at {:#x}) was written at {first:#x?}",
                o.name, o.value
            ));
        }
    }
}

/// Runs cases `range` of the mode's case list: builds the pristine store
/// `<base>-p` (the same layout in every child), reads its bytes and unlinks
/// it, then runs each case over the segment `<base>-t`.
fn sweep(test: &str, base: &str, mode: Sweep, range: std::ops::Range<usize>) {
    let target = StoreGuard::new(format!("{base}-t"));
    let capacity = if mode == Sweep::Tmpfs {
        TMPFS_CAPACITY
    } else {
        CAPACITY
    };
    if mode == Sweep::Tmpfs {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            mounts
                .lines()
                .any(|l| l.contains(" /dev/shm ") && l.contains("size=4096k")),
            "not running over the 4 MiB tmpfs"
        );
    }
    let image = {
        let pristine = StoreGuard::new(format!("{base}-p"));
        let (store, counter) = build_pristine(test, pristine.name(), capacity);
        let image = std::fs::read(pristine.path()).unwrap();
        drop((counter, store));
        image
    };
    let walk = Walk::new(image);
    let committed = walk.committed as usize;
    if mode == Sweep::Tmpfs {
        assert!(
            walk.committed < walk.capacity,
            "the tmpfs part needs uncommitted pages"
        );
    }
    let cases = cases_for(&walk, mode);
    if range.start == 0 {
        let flips = cases
            .iter()
            .filter(|c| matches!(c, Case::Flip { .. }))
            .count();
        let mut by: BTreeMap<&str, usize> = BTreeMap::new();
        for c in &cases {
            *by.entry(c.category(&walk)).or_default() += 1;
        }
        let by: Vec<String> = by.iter().map(|(k, n)| format!("{n} {k}")).collect();
        report(
            "cases",
            format!(
                "{} cases: {flips} byte flips ({}), {} word extremes over {} metadata words [{}]; store of {} bytes, {} committed, top {}",
                cases.len(),
                if full_sweep() { "full" } else { "sampled" },
                cases.len() - flips,
                walk.words.len(),
                by.join(", "),
                walk.capacity,
                walk.committed,
                walk.top
            ),
        );
    }
    // The target segment: a file in /dev/shm of the store's length, of
    // which only the committed pages are written (the rest stays a hole),
    // rewritten in place for each case (no store is open on it then).
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(target.path())
        .unwrap();
    file.set_len(walk.capacity).unwrap();
    file.write_all_at(&walk.image[..committed], 0).unwrap();
    if mode == Sweep::Tmpfs {
        fill_dev_shm(base);
        // The control: touching a page the header does not say is
        // committed really is a SIGBUS here (in a child: it dies of it).
        if range.start == 0 {
            let touch =
                spawn_role_with_arg(test, "touch", target.name(), &walk.committed.to_string())
                    .wait_timeout(Duration::from_secs(60));
            let how = match touch.status.signal() {
                Some(libc::SIGBUS) => "SIGBUS".to_string(),
                _ => format!("{} {:?}", touch.status, touch.reports("read")),
            };
            report("control", how);
        }
    }
    let epoch = Instant::now();

    std::panic::set_hook(Box::new(|info| {
        let msg = if let Some(s) = info.payload().downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = info.payload().downcast_ref::<String>() {
            s.clone()
        } else {
            "(non-string payload)".to_string()
        };
        let at = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{at} {msg}"));
    }));

    // Watchdog: a case that runs too long is a hang; report it and exit so
    // that the parent can go on at the next case.
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(100));
        let case = CASE.load(Ordering::Acquire);
        if case == 0 {
            continue;
        }
        let started = CASE_START_MS.load(Ordering::Acquire);
        let now = epoch.elapsed().as_millis() as u64;
        if now.saturating_sub(started) > HANG.as_millis() as u64
            && CASE.load(Ordering::Acquire) == case
        {
            report(
                "hang",
                format!("case={} step={:?}", case - 1, current_step()),
            );
            std::process::exit(3);
        }
    });

    // The pristine run: the reference for rule 4.
    let pristine_ops = {
        let none = Ranges {
            changed: vec![],
            replayed: vec![],
        };
        let ctx = Ctx::new(&walk, none, &walk.image);
        let run = run_case(&walk, &file, target.name(), &walk.image, ctx)
            .expect("the pristine run panicked");
        assert!(
            run.findings.is_empty(),
            "the pristine run has findings: {:?}",
            run.findings
        );
        for op in &run.ops {
            assert!(
                op.outcome.starts_with("Ok")
                    || matches!(op.label, "get counter as u32" | "get gone_small"),
                "pristine {op:?}"
            );
        }
        if range.start == 0 {
            let ops: Vec<String> = run
                .ops
                .iter()
                .map(|o| format!("{}={}", o.label, o.outcome))
                .collect();
            report("pristine", ops.join(", "));
        }
        run.ops
    };

    let mut outcomes: BTreeMap<String, u64> = Default::default();
    let mut after = vec![0u8; walk.top as usize];
    let mut img = walk.image.clone();
    let end = range.end.min(cases.len());
    for (i, case) in cases.iter().enumerate().take(end).skip(range.start) {
        let _ = writeln!(std::io::stderr(), "case {i}");
        img.copy_from_slice(&walk.image);
        case.apply(&walk, &mut img);
        let ctx = Ctx::new(&walk, case.ranges(&walk, &img), &img);
        CASE_START_MS.store(epoch.elapsed().as_millis() as u64, Ordering::Release);
        CASE.store(i + 1, Ordering::Release);
        let what = || format!("case={i} {}", case.describe(&walk));
        if VERBOSE.load(Ordering::Relaxed) {
            report("case", what());
            std::io::stdout().flush().unwrap();
        }
        let t0 = Instant::now();
        let result = run_case(&walk, &file, target.name(), &img, ctx);
        let took = t0.elapsed();
        match result {
            Ok(mut run) => {
                // Rule 2.
                file.read_exact_at(&mut after, 0).unwrap();
                stray_writes(&walk, &run.ctx, &img, &after, &mut run.findings);
                // Rule 4.
                if run.ctx.pristine || run.ctx.inert || run.ctx.value_only.is_some() {
                    let skip = run.ctx.value_only.map(|i| walk.objects[i].name.as_str());
                    if run.ops.len() != pristine_ops.len() {
                        run.findings.push(format!(
                            "[4 unread bytes] {} operations ran, {} in the pristine run",
                            run.ops.len(),
                            pristine_ops.len()
                        ));
                    } else {
                        for (got, want) in run.ops.iter().zip(&pristine_ops) {
                            if got != want && (skip.is_none() || got.subject != skip) {
                                run.findings.push(format!(
                                    "[4 unread bytes] {}: {} (pristine: {})",
                                    got.label, got.outcome, want.outcome
                                ));
                            }
                        }
                    }
                }
                for op in &run.ops {
                    // Counted by variant; `check` also by what it found.
                    let k = match op.outcome.split_once(':') {
                        None => op.outcome.as_str(),
                        Some(("Ok", detail)) if op.label.starts_with("check") => {
                            if detail == "clean" {
                                "Ok, clean"
                            } else {
                                "Ok, problems found"
                            }
                        }
                        Some(("Ok", _)) => "Ok",
                        Some(_) => op.outcome.as_str(),
                    };
                    *outcomes.entry(format!("{}|{k}", op.label)).or_default() += 1;
                }
                for f in run.findings {
                    report(
                        "finding",
                        format!("{} step={:?} :: {f}", what(), current_step()),
                    );
                }
            }
            Err(why) => {
                report(
                    "panic",
                    format!("{} step={:?} at={why}", what(), current_step()),
                );
                *outcomes.entry("panic|panic".into()).or_default() += 1;
            }
        }
        if took > SLOW {
            report("slow", format!("{} took={took:?}", what()));
        }
    }
    CASE.store(0, Ordering::Release);
    let _ = std::panic::take_hook();
    for (outcome, n) in outcomes {
        report("outcome", format!("{outcome} {n}"));
    }
    report("done", cases.len());
}

/// Fills the (tiny, private) `/dev/shm` to the brim, so that touching any
/// page that was not committed raises `SIGBUS`.
fn fill_dev_shm(base: &str) {
    let path = format!("/dev/shm/{base}-filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0x5au8; 4096];
    let mut filled = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => filled += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling /dev/shm: {e}"),
        }
    }
    // One more byte does not fit either.
    let more = f.write(&[0u8]);
    assert!(
        matches!(&more, Err(e) if e.raw_os_error() == Some(libc::ENOSPC)) || matches!(more, Ok(0)),
        "/dev/shm is not full: {more:?}"
    );
    report(
        "filled",
        format!("{filled} bytes of filler; /dev/shm is full"),
    );
}

// ---- parent ----------------------------------------------------------------------------

/// What the children of one sweep reported.
#[derive(Default)]
struct Summary {
    cases: String,
    pristine: String,
    filled: String,
    control: String,
    panics: Vec<String>,
    findings: Vec<String>,
    deaths: Vec<String>,
    slow: Vec<String>,
    outcomes: BTreeMap<String, BTreeMap<String, u64>>,
    children: usize,
    elapsed: Duration,
}

/// Runs a sweep in children made by `command` (role, arg),
/// restarting after every crash or hang at the next case.
fn drive(command: &dyn Fn(&str, &str) -> Command) -> Summary {
    let started = Instant::now();
    let mut s = Summary::default();
    let mut start = 0usize;
    loop {
        s.children += 1;
        let child = Child::spawn(command("sweep", &start.to_string()));
        let done = child.wait_timeout(Duration::from_secs(900));
        if let Some(c) = done.reports("cases").first() {
            s.cases = c.clone();
        }
        if let Some(c) = done.reports("pristine").first() {
            s.pristine = c.clone();
        }
        if let Some(c) = done.reports("filled").first() {
            s.filled = c.clone();
        }
        if let Some(c) = done.reports("control").first() {
            s.control = c.clone();
        }
        s.panics.extend(done.reports("panic"));
        s.findings.extend(done.reports("finding"));
        s.slow.extend(done.reports("slow"));
        for o in done.reports("outcome") {
            let (key, n) = o.rsplit_once(' ').unwrap();
            let (label, kind) = key.split_once('|').unwrap();
            *s.outcomes
                .entry(label.to_string())
                .or_default()
                .entry(kind.to_string())
                .or_default() += n.parse::<u64>().unwrap();
        }
        if done.status.success() && !done.reports("done").is_empty() {
            break;
        }
        // The child died or hung: find the case it was running, from its
        // last "case <i>" line.
        let Some(last_line) = done
            .stderr
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("case "))
        else {
            panic!("the sweep child failed before its first case\n{done}");
        };
        let last: usize = last_line.split(' ').next().unwrap().parse().unwrap();
        // Replay that case alone, logging every step, to see where it dies.
        let replay = Child::spawn(command("replay", &last.to_string()))
            .wait_timeout(Duration::from_secs(120));
        let last_step = replay
            .stderr
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("  step "))
            .unwrap_or("?")
            .to_string();
        let case_desc = replay.reports("case").first().cloned().unwrap_or_default();
        let how = match (done.status.signal(), done.reports("hang").first()) {
            (_, Some(hang)) => format!("hang ({hang})"),
            (Some(sig), _) => format!("killed by signal {sig}"),
            (None, _) => format!("exited with {}", done.status),
        };
        let tail: Vec<&str> = done.stderr.lines().rev().take(6).collect();
        s.deaths.push(format!(
            "case {last} ({case_desc}) step={last_step}: child {how}; stderr tail (newest first): {tail:?}"
        ));
        start = last + 1;
        if s.children >= MAX_CHILDREN {
            break;
        }
    }
    s.elapsed = started.elapsed();
    s
}

/// Prints the summary and fails on any panic, crash, hang or finding.
fn conclude(s: Summary) {
    eprintln!(
        "swept {} in {:?} with {} child(ren)",
        s.cases, s.elapsed, s.children
    );
    if !s.filled.is_empty() {
        eprintln!(
            "tmpfs: {}; reading an uncommitted page there: {}",
            s.filled, s.control
        );
    }
    eprintln!("pristine run: {}", s.pristine);
    for (label, kinds) in &s.outcomes {
        let k: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
        eprintln!("outcomes: {label}: {}", k.join(", "));
    }
    // Group panics and findings by site / rule and operation.
    let mut by_site: BTreeMap<String, (usize, String)> = Default::default();
    for p in &s.panics {
        let site = p
            .split(" at=")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .unwrap_or("?")
            .to_string();
        let e = by_site.entry(site).or_insert((0, p.clone()));
        e.0 += 1;
    }
    for (site, (n, example)) in &by_site {
        eprintln!("PANIC SITE {site}: {n} case(s), e.g. {example}");
    }
    let mut by_rule: BTreeMap<String, (usize, String)> = Default::default();
    for f in &s.findings {
        let key = f
            .split(" :: ")
            .nth(1)
            .map(|r| r.split(':').next().unwrap_or(r).to_string())
            .unwrap_or_default();
        let e = by_rule.entry(key).or_insert((0, f.clone()));
        e.0 += 1;
    }
    for (rule, (n, example)) in &by_rule {
        eprintln!("FINDING {rule}: {n} case(s), e.g. {example}");
    }
    for f in s.findings.iter().take(60) {
        eprintln!("FINDING {f}");
    }
    for p in s.panics.iter().take(60) {
        eprintln!("PANIC {p}");
    }
    for d in &s.deaths {
        eprintln!("CRASH/HANG {d}");
    }
    for x in &s.slow {
        eprintln!("SLOW {x}");
    }
    std::io::stderr().flush().unwrap();
    assert!(
        s.panics.is_empty() && s.deaths.is_empty() && s.findings.is_empty(),
        "{} panicking case(s) at {} site(s), {} crash(es)/hang(s), {} finding(s) in {} group(s) (details above)",
        s.panics.len(),
        by_site.len(),
        s.deaths.len(),
        s.findings.len(),
        by_rule.len()
    );
}

/// No core files: a crashing case (or the tmpfs part's control) must stay
/// cheap, and must not leave a dump of a mapping behind.
fn no_core_dumps() {
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the struct we pass; no other preconditions.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };
}

/// The child's part of either test.
fn child(test: &str, mode: Sweep, role: &str, store: &str) {
    no_core_dumps();
    let arg = role_arg();
    match role {
        "sweep" => sweep(test, store, mode, arg.parse().unwrap()..usize::MAX),
        "replay" => {
            VERBOSE.store(true, Ordering::Relaxed);
            let case: usize = arg.parse().unwrap();
            sweep(test, store, mode, case..case + 1);
        }
        "pinner" => pin_and_die(store),
        "touch" => touch(store, arg.parse().unwrap()),
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn corrupted_metadata_gives_intact_data_or_an_error_never_a_crash() {
    if let Some((role, store)) = role() {
        return child(TEST, Sweep::Main, &role, &store);
    }
    // The children's segments (`<base>-p`, `<base>-t`); a child unlinks
    // them itself, these guards unlink them too if it dies.
    let base = unique_name("flip");
    let _pristine = StoreGuard::new(format!("{base}-p"));
    let _target = StoreGuard::new(format!("{base}-t"));
    let summary = drive(&|role, arg| role_command_with_arg(TEST, role, &base, arg));
    conclude(summary);
}

#[test]
fn word_extremes_on_a_full_tiny_dev_shm_are_errors_never_sigbus() {
    if let Some((role, store)) = role() {
        return child(TMPFS_TEST, Sweep::Tmpfs, &role, &store);
    }
    if !is_root() {
        println!("note: skipped, needs root to mount a tmpfs");
        return;
    }
    let Some(unshare) = find_program("unshare") else {
        println!("note: skipped, unshare is not installed");
        return;
    };
    // Everything lives in each child's private tmpfs; the name is still
    // unique, so a leak would be attributable.
    let base = unique_name("fullshm");
    let command = |role: &str, arg: &str| {
        let inner = role_command_with_arg(TMPFS_TEST, role, &base, arg);
        let mut cmd = Command::new(&unshare);
        cmd.args([
            "-m",
            "sh",
            "-c",
            &format!("mount -t tmpfs -o size={TMPFS_SIZE} tmpfs /dev/shm && exec \"$0\" \"$@\""),
        ])
        .arg(inner.get_program())
        .args(inner.get_args());
        for (k, v) in inner.get_envs() {
            if let Some(v) = v {
                cmd.env(k, v);
            }
        }
        cmd
    };
    // A probe: can this machine mount a tmpfs in a new mount namespace?
    let probe = Child::spawn({
        let mut c = Command::new(&unshare);
        c.args([
            "-m",
            "sh",
            "-c",
            &format!("mount -t tmpfs -o size={TMPFS_SIZE} tmpfs /dev/shm"),
        ]);
        c
    })
    .wait();
    if !probe.status.success() {
        println!("note: skipped, cannot mount a tmpfs in a new mount namespace\n{probe}");
        return;
    }
    let summary = drive(&command);
    assert!(shmstore_tests::segments_with_prefix(&base).is_empty());
    assert_eq!(
        summary.control, "SIGBUS",
        "the control read of an uncommitted page must be a SIGBUS on the full tmpfs"
    );
    conclude(summary);
}
