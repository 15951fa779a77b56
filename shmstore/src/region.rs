//! Mapped shared-memory segments.
//!
//! A [`Region`] is one POSIX shared-memory object (`/dev/shm/<name>`) mapped
//! whole, read-write and `MAP_SHARED`, into this process. It knows nothing of
//! what the bytes mean; the arena and the store lay their structures over
//! [`Region::base`].
//!
//! # Never a `SIGBUS`
//!
//! On tmpfs, the first access (read *or* write) to a page of a shared
//! mapping allocates that page; if the file system is full the kernel can
//! only answer with `SIGBUS`. shmstore avoids that:
//!
//! - [`Region::create`] `ftruncate`s the segment to its full capacity at
//!   once. The file is sparse: this reserves address space, not memory, and
//!   no access can fall beyond the file's end.
//! - [`Region::create`] and [`Region::open`] map without touching any page
//!   (no `MAP_POPULATE`), so opening a store costs no memory.
//! - Before any page is handed out, its range is committed with
//!   [`Region::commit`] (`fallocate`), which allocates the pages or fails
//!   with [`Error::NoSpace`]. A full `/dev/shm` is thus an error at commit
//!   time, not a signal at first touch. Callers must never touch a page they
//!   have not committed (or seen committed by the store's header).
//!
//! Each region also keeps its *backed* limit: how many bytes from the
//! start this process knows to be committed (it committed them itself, or
//! committed them again, idempotently, after another process's header said
//! so — see [`Region::commit`]). Every access to segment bytes is checked
//! against it ([`Mem`](crate::arena::mem::Mem)), so a corrupted offset or
//! a lying header can never make this process touch an uncommitted page.
//! Opening commits the header page itself before reading it.
//!
//! What this cannot prevent: another process shrinking the segment with
//! `ftruncate`, or punching holes in it. Processes sharing a store are
//! trusted not to.
//!
//! # Never unmapped under a held lock
//!
//! A region is not unmapped while a thread of this process may hold a
//! robust lock inside it (a guard that was `mem::forget`ten): the thread's
//! robust list runs through the lock's bytes, and unmapping them would make
//! the next lock operation of that thread, or the kernel at its exit, write
//! into whatever is mapped there later. Such a region is leaked instead
//! (see [`crate::sync::held`]).

use std::ffi::{CStr, CString};
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::arena::mem::Backed;
use crate::sys::shm::{self, OpenHow};
use crate::{Error, Result};

/// `NAME_MAX`: the longest file name `/dev/shm` takes, counting the leading
/// slash of the segment name.
const NAME_MAX: usize = 255;

/// A validated shared-memory segment name, stored with its leading slash
/// (`"/demo"`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct SegmentName {
    name: String,
    cname: CString,
}

impl SegmentName {
    /// Validates `name`, given as `"demo"` or `"/demo"`.
    ///
    /// Refused with [`Error::InvalidName`]: the empty name, `"/"`, a `/`
    /// after the leading one, a NUL byte, `"."` and `".."`, and names longer
    /// than 255 bytes counting the leading slash.
    pub(crate) fn parse(name: &str) -> Result<SegmentName> {
        let invalid = |reason| Error::InvalidName {
            name: name.to_string(),
            reason,
        };
        let bare = name.strip_prefix('/').unwrap_or(name);
        if bare.is_empty() {
            return Err(invalid("a store name must not be empty"));
        }
        if bare.contains('/') {
            return Err(invalid(
                "a store name must not contain '/' after the leading one",
            ));
        }
        if bare.contains('\0') {
            return Err(invalid("a store name must not contain a NUL byte"));
        }
        if bare == "." || bare == ".." {
            return Err(invalid("\".\" and \"..\" are not store names"));
        }
        if bare.len() + 1 > NAME_MAX {
            return Err(invalid(
                "a store name must be at most 255 bytes long, counting the leading '/'",
            ));
        }
        let full = format!("/{bare}");
        let cname = CString::new(full.clone()).map_err(|_| invalid("contains a NUL byte"))?;
        Ok(SegmentName { name: full, cname })
    }

    /// The name with its leading slash: `"/demo"`.
    pub(crate) fn as_str(&self) -> &str {
        &self.name
    }

    /// The name as passed to `shm_open`.
    pub(crate) fn as_cstr(&self) -> &CStr {
        &self.cname
    }
}

impl fmt::Debug for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.name, f)
    }
}

impl fmt::Display for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// A shared-memory segment mapped whole into this process (or, with the
/// `fuzzing` feature, page-aligned heap memory standing for one: see
/// `Region::heap`).
///
/// Dropping it unmaps the segment and closes its descriptor; the segment
/// itself lives on until [`unlink`]ed and unmapped everywhere.
pub(crate) struct Region {
    backing: Backing,
    base: NonNull<u8>,
    len: usize,
    name: SegmentName,
    /// Bytes from the start known to be committed (`Mem`s point at it).
    backed: Backed,
    /// Unique among this process's regions.
    id: u64,
}

/// What a region's bytes are.
enum Backing {
    /// A POSIX shared-memory object, mapped `MAP_SHARED`.
    Shm(OwnedFd),
    /// Page-aligned heap memory allocated with this layout, for fuzz targets
    /// (feature `fuzzing`): AddressSanitizer sees every access to it, and
    /// there is no file whose pages need committing.
    #[cfg(feature = "fuzzing")]
    Heap(std::alloc::Layout),
}

// SAFETY: a `Region` owns its mapping and descriptor (or, for heap memory,
// its allocation); none is tied to the thread that created it (mappings
// and allocations are process-wide, and the fd calls it makes are
// thread-safe). It hands out only a raw base pointer, whose use is
// the caller's responsibility.
unsafe impl Send for Region {}
// SAFETY: every `&self` method is either a read of immutable fields, a
// thread-safe system call on the descriptor (`fstat`, `fallocate`), or (heap
// memory) a call of the page hooks, plain `fn`s.
unsafe impl Sync for Region {}

/// Unlinks a freshly created segment unless disarmed.
struct UnlinkOnError<'a>(Option<&'a SegmentName>);

impl Drop for UnlinkOnError<'_> {
    fn drop(&mut self) {
        if let Some(name) = self.0 {
            let _ = shm::shm_unlink(name.as_cstr());
        }
    }
}

impl Region {
    /// Creates the segment exclusively (`O_CREAT | O_EXCL`), with exactly
    /// `mode` as permission bits (set with `fchmod`, so the umask does not
    /// apply), sizes it to `len` bytes (sparse: nothing is allocated) and
    /// maps it.
    ///
    /// On any failure after the segment was created it is unlinked again.
    /// Between creation and `ftruncate` the segment is empty; a concurrent
    /// [`Region::open`] then gets [`Error::NotAStore`] and should retry.
    pub(crate) fn create(name: &SegmentName, len: usize, mode: u32) -> Result<Region> {
        if len == 0 {
            return Err(Error::InvalidArgument {
                reason: "a segment must be at least 1 byte long".to_string(),
            });
        }
        if mode & !0o777 != 0 {
            return Err(Error::InvalidArgument {
                reason: format!("mode {mode:#o} has bits outside 0o777"),
            });
        }
        let fd = shm::shm_open(name.as_cstr(), OpenHow::CreateExclusive { mode })?;
        let mut cleanup = UnlinkOnError(Some(name));
        shm::fchmod(fd.as_fd(), mode)?;
        shm::ftruncate(fd.as_fd(), len as u64)?;
        let base = shm::mmap_shared(fd.as_fd(), len)?;
        cleanup.0 = None;
        Ok(Region {
            backing: Backing::Shm(fd),
            base,
            len,
            name: name.clone(),
            backed: Backed::new(0),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Opens an existing segment read-write and maps all of it.
    ///
    /// A 0-byte segment (its creator has not sized it yet, or it is not a
    /// store) is [`Error::NotAStore`], and so is a name that is not a
    /// regular file (opened without following a symlink and without
    /// blocking on a FIFO, then checked with `fstat`).
    pub(crate) fn open(name: &SegmentName) -> Result<Region> {
        let fd = shm::shm_open(name.as_cstr(), OpenHow::Existing).map_err(|e| {
            if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENXIO)) {
                not_regular(name)
            } else {
                e
            }
        })?;
        let st = shm::fstat(fd.as_fd())?;
        if !st.regular {
            return Err(not_regular(name));
        }
        let size = st.size;
        if size == 0 {
            return Err(Error::NotAStore {
                name: name.as_str().to_string(),
                reason: "segment is empty (0 bytes)".to_string(),
            });
        }
        let len = usize::try_from(size).map_err(|_| Error::NotAStore {
            name: name.as_str().to_string(),
            reason: format!("segment of {size} bytes does not fit in the address space"),
        })?;
        let base = shm::mmap_shared(fd.as_fd(), len)?;
        let region = Region {
            backing: Backing::Shm(fd),
            base,
            len,
            name: name.clone(),
            backed: Backed::new(0),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        };
        // The header page is read before anything says it was committed:
        // make sure it is (idempotent for a store; a page of zeros for a
        // segment that never got one), so that reading it cannot fault.
        region.commit(0, (len as u64).min(HEADER_PAGE))?;
        Ok(region)
    }

    /// The first byte of the mapping (page-aligned). Only committed pages may
    /// be accessed through it; see the [module docs](self).
    pub(crate) fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// The mapped length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Which file the segment is (`st_dev`, `st_ino`). A region in heap
    /// memory (the `fuzzing` feature) is a file of its own: no device is
    /// numbered `u64::MAX`, and its id is unique in this process.
    pub(crate) fn file_id(&self) -> Result<(u64, u64)> {
        match &self.backing {
            Backing::Shm(fd) => {
                let st = shm::fstat(fd.as_fd())?;
                Ok((st.dev, st.ino))
            }
            #[cfg(feature = "fuzzing")]
            Backing::Heap(_) => Ok((u64::MAX, self.id)),
        }
    }

    /// The segment's name.
    pub(crate) fn name(&self) -> &SegmentName {
        &self.name
    }

    /// This region's id, unique among the regions this process mapped.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The descriptor of a shared-memory region (`None` for heap memory).
    #[cfg(test)]
    fn shm_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        match &self.backing {
            Backing::Shm(fd) => Some(fd.as_fd()),
            #[cfg(feature = "fuzzing")]
            Backing::Heap(_) => None,
        }
    }

    /// The backed limit, for [`Mem::new`](crate::arena::mem::Mem::new):
    /// valid for as long as the region lives.
    pub(crate) fn backed(&self) -> NonNull<AtomicU64> {
        self.backed.ptr()
    }

    /// Allocates the pages of `offset..offset + len` (`fallocate`, mode 0),
    /// so that touching them can never raise `SIGBUS`.
    ///
    /// A full file system is [`Error::NoSpace`] `{ requested: len, op:
    /// "commit" }`; a range outside the mapping is
    /// [`Error::InvalidArgument`]. Committing is idempotent; `len == 0` does
    /// nothing.
    ///
    /// A commit that starts at or below the backed limit raises it to the
    /// end of the range: everything below is then known to be committed.
    pub(crate) fn commit(&self, offset: u64, len: u64) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len as u64 => {}
            _ => {
                return Err(Error::InvalidArgument {
                    reason: format!(
                        "commit of {len} bytes at offset {offset} exceeds the {}-byte segment",
                        self.len
                    ),
                })
            }
        }
        if len == 0 {
            return Ok(());
        }
        match &self.backing {
            Backing::Shm(fd) => shm::fallocate(fd.as_fd(), offset, len).map_err(|e| match e {
                Error::NoSpace { .. } => Error::NoSpace {
                    requested: len,
                    op: "commit",
                },
                e => e,
            })?,
            // Heap memory is all there: committing only tells the hooks.
            #[cfg(feature = "fuzzing")]
            Backing::Heap(_) => {
                // `offset + len <= self.len` was checked above.
                crate::fuzzing::page_hooks().commit(self.base, offset as usize, len as usize)
            }
        }
        let backed = self.backed.get();
        if offset <= backed.load(Ordering::Acquire) {
            backed.fetch_max(offset + len, Ordering::AcqRel);
        }
        Ok(())
    }
}

impl Region {
    /// Unlinks the segment's name if it still names this segment (the same
    /// file: device and inode), not a newer one made under the same name
    /// since. Returns whether it unlinked.
    ///
    /// The comparison and the unlink are two system calls: the caller must
    /// hold this store's header lock and have marked the store removed
    /// under it. Every process that unlinks the name of a ready store does
    /// so only that way (the last user of a store removed when unused, an
    /// opener that finds a store marked removed or its users all dead,
    /// `shmstore gc` and `rm`), so while the name names this segment no one
    /// else can unlink it and create another segment under it between the
    /// two calls. (`Store::unlink` and `shmstore rm --force` unlink a name
    /// without asking; that is what they are for.)
    pub(crate) fn unlink_if_same(&self) -> Result<bool> {
        let mine = match &self.backing {
            Backing::Shm(fd) => shm::fstat(fd.as_fd())?,
            // Heap memory has no name in `/dev/shm` to unlink.
            #[cfg(feature = "fuzzing")]
            Backing::Heap(_) => return Ok(false),
        };
        match shm::stat_segment(self.name.as_str())? {
            Some(now) if now.dev == mine.dev && now.ino == mine.ino => match unlink(&self.name) {
                Ok(()) => Ok(true),
                Err(Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(e),
            },
            _ => Ok(false),
        }
    }
}

#[cfg(feature = "fuzzing")]
impl Region {
    /// A region over `len` bytes of page-aligned heap memory holding
    /// `image` (zero past its end), for fuzz targets: the store code runs
    /// over it exactly as over a mapping, committing pages as it goes (see
    /// [`crate::fuzzing::PageHooks`]), and AddressSanitizer sees every
    /// access. `name` is a label only: nothing is created in `/dev/shm`.
    pub(crate) fn heap(name: &SegmentName, image: &[u8], len: usize) -> Result<Region> {
        if len == 0 || image.len() > len {
            return Err(Error::InvalidArgument {
                reason: format!(
                    "a heap region of {len} bytes cannot hold an image of {} bytes",
                    image.len()
                ),
            });
        }
        let layout =
            std::alloc::Layout::from_size_align(len, HEADER_PAGE as usize).map_err(|_| {
                Error::InvalidArgument {
                    reason: format!("a heap region of {len} bytes overflows the address space"),
                }
            })?;
        // SAFETY: `layout` has a non-zero size (`len > 0`) and a power-of-two
        // alignment.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let base = NonNull::new(raw).ok_or(Error::OutOfMemory {
            requested: len as u64,
            capacity: len as u64,
            free: 0,
        })?;
        // SAFETY: `base` is a fresh allocation of `len >= image.len()` bytes,
        // which cannot overlap the caller's slice.
        unsafe { core::ptr::copy_nonoverlapping(image.as_ptr(), base.as_ptr(), image.len()) };
        crate::fuzzing::page_hooks().reserve(base, len);
        Ok(Region {
            backing: Backing::Heap(layout),
            base,
            len,
            name: name.clone(),
            backed: Backed::new(0),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if crate::sync::held::any_in(self.base.as_ptr() as usize, self.len) {
            // A forgotten guard's lock lives here: leave the pages mapped
            // (the descriptor is closed; the mapping keeps the memory).
            LEAKED.lock().push(self.id);
            return;
        }
        match &self.backing {
            Backing::Shm(_) => {
                // SAFETY:
                // - `base`/`len` are the mapping made in `create`/`open`,
                //   unmapped only here;
                // - the region is being dropped, so no borrow of it remains,
                //   and users of `base` must not outlive the region (its
                //   documented contract).
                let result = unsafe { shm::munmap(self.base, self.len) };
                debug_assert!(result.is_ok(), "munmap failed: {result:?}");
            }
            #[cfg(feature = "fuzzing")]
            Backing::Heap(layout) => {
                crate::fuzzing::page_hooks().release(self.base, self.len);
                // SAFETY:
                // - `base` was allocated in `Region::heap` with exactly
                //   `layout`, and is freed only here;
                // - the region is being dropped, so no borrow of it remains
                //   (as for a mapping above).
                unsafe { std::alloc::dealloc(self.base.as_ptr(), *layout) };
            }
        }
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region")
            .field("name", &self.name)
            .field("base", &self.base)
            .field("len", &self.len)
            .finish()
    }
}

/// Ids of the regions left mapped because a lock inside them may still be
/// held (see the [module docs](self)).
static LEAKED: parking_lot::Mutex<Vec<u64>> = parking_lot::Mutex::new(Vec::new());

/// The id of the next region mapped by this process.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// `true` if the region with this [`Region::id`] was left mapped when it
/// was dropped, because a thread may still hold a lock inside it.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn was_leaked(id: u64) -> bool {
    LEAKED.lock().contains(&id)
}

/// A name in `/dev/shm` that is not a regular file (a FIFO, a directory,
/// a symlink, a socket): not a store, whatever it holds.
fn not_regular(name: &SegmentName) -> Error {
    Error::NotAStore {
        name: name.as_str().to_string(),
        reason: "not a regular file".to_string(),
    }
}

/// The header page, committed by whoever opens a segment.
const HEADER_PAGE: u64 = 4096;

/// Removes the segment's name (`shm_unlink`); mappings stay valid until
/// unmapped.
pub(crate) fn unlink(name: &SegmentName) -> Result<()> {
    shm::shm_unlink(name.as_cstr())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A segment name unique to this process and call; unlinked on drop,
    /// even if the test fails.
    struct TestName(SegmentName);

    impl TestName {
        fn new(tag: &str) -> TestName {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let name = format!("shmstore-ut-{}-{tag}-{n}", std::process::id());
            TestName(SegmentName::parse(&name).unwrap())
        }
    }

    impl Drop for TestName {
        fn drop(&mut self) {
            let _ = unlink(&self.0);
        }
    }

    #[test]
    fn good_names_parse() {
        assert_eq!(SegmentName::parse("demo").unwrap().as_str(), "/demo");
        assert_eq!(SegmentName::parse("/demo").unwrap().as_str(), "/demo");
        assert_eq!(
            SegmentName::parse("demo").unwrap(),
            SegmentName::parse("/demo").unwrap()
        );
        assert_eq!(
            SegmentName::parse("a.b-c_d").unwrap().as_cstr(),
            c"/a.b-c_d"
        );
        assert!(SegmentName::parse("...").is_ok());
        let longest = "x".repeat(254);
        assert_eq!(SegmentName::parse(&longest).unwrap().as_str().len(), 255);
        assert!(SegmentName::parse(&format!("/{longest}")).is_ok());
    }

    #[test]
    fn bad_names_are_refused() {
        let too_long = "x".repeat(255);
        for bad in [
            "",
            "/",
            "//demo",
            "a/b",
            "/a/b",
            "de\0mo",
            ".",
            "..",
            "/.",
            "/..",
            too_long.as_str(),
        ] {
            match SegmentName::parse(bad) {
                Err(Error::InvalidName { name, .. }) => assert_eq!(name, bad),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn create_open_commit_unlink_round_trip() {
        let name = TestName::new("round-trip");
        let created = Region::create(&name.0, 1 << 20, 0o600).unwrap();
        assert_eq!(created.len(), 1 << 20);
        assert_eq!(created.name(), &name.0);
        let fd = created.shm_fd().expect("made by Region::create");
        assert_eq!(shm::fstat(fd).unwrap().size, 1 << 20);
        assert_eq!(created.base().as_ptr() as usize % 4096, 0);
        created.commit(0, 4096).unwrap();
        created.commit(0, 4096).unwrap();
        created.commit(4096, 0).unwrap();
        // SAFETY: the first page is committed and inside the mapping; no
        // reference to it exists.
        unsafe { created.base().as_ptr().write(0xA5) };

        let opened = Region::open(&name.0).unwrap();
        assert_eq!(opened.len(), 1 << 20);
        // SAFETY: the same committed page, seen through a second mapping;
        // the write above happened-before on this thread.
        assert_eq!(unsafe { opened.base().as_ptr().read() }, 0xA5);

        unlink(&name.0).unwrap();
        assert!(matches!(Region::open(&name.0), Err(Error::NotFound { .. })));
        // Existing mappings outlive the name.
        // SAFETY: as above.
        assert_eq!(unsafe { opened.base().as_ptr().read() }, 0xA5);
    }

    #[test]
    fn longest_name_round_trips() {
        let long = format!("shmstore-ut-{}-{}", std::process::id(), "l".repeat(254));
        let name = SegmentName::parse(&long[..254]).unwrap();
        let guard = TestName(name);
        Region::create(&guard.0, 4096, 0o600).unwrap();
        Region::open(&guard.0).unwrap();
    }

    #[test]
    fn creating_twice_is_already_exists() {
        let name = TestName::new("twice");
        let _first = Region::create(&name.0, 4096, 0o600).unwrap();
        match Region::create(&name.0, 4096, 0o600) {
            Err(Error::AlreadyExists { what }) => {
                assert_eq!(what, format!("store \"{}\"", name.0.as_str()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn opening_a_missing_segment_is_not_found() {
        let name = TestName::new("missing");
        match Region::open(&name.0) {
            Err(Error::NotFound { what }) => {
                assert_eq!(what, format!("store \"{}\"", name.0.as_str()));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(unlink(&name.0), Err(Error::NotFound { .. })));
    }

    #[test]
    fn mode_is_exactly_what_was_asked_whatever_the_umask() {
        for mode in [0o600, 0o640, 0o666] {
            let name = TestName::new("mode");
            let region = Region::create(&name.0, 4096, mode).unwrap();
            let fd = region.shm_fd().expect("made by Region::create");
            let st = shm::fstat(fd).unwrap();
            assert_eq!(st.mode, mode, "{mode:#o} became {:#o}", st.mode);
            assert_eq!(st.uid, shm::effective_uid());
        }
        let name = TestName::new("bad-mode");
        assert!(matches!(
            Region::create(&name.0, 4096, 0o4755),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(Region::open(&name.0), Err(Error::NotFound { .. })));
    }

    #[test]
    fn an_empty_segment_is_not_a_store() {
        let name = TestName::new("empty");
        let _fd =
            shm::shm_open(name.0.as_cstr(), OpenHow::CreateExclusive { mode: 0o600 }).unwrap();
        match Region::open(&name.0) {
            Err(Error::NotAStore { name: n, reason }) => {
                assert_eq!(n, name.0.as_str());
                assert_eq!(reason, "segment is empty (0 bytes)");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn commit_outside_the_segment_is_invalid() {
        let name = TestName::new("bounds");
        let region = Region::create(&name.0, 8192, 0o600).unwrap();
        region.commit(4096, 4096).unwrap();
        for (offset, len) in [(4096, 4097), (8193, 0), (u64::MAX, 1)] {
            assert!(
                matches!(
                    region.commit(offset, len),
                    Err(Error::InvalidArgument { .. })
                ),
                "{offset} + {len}"
            );
        }
    }

    #[test]
    fn zero_length_create_is_invalid() {
        let name = TestName::new("zero");
        assert!(matches!(
            Region::create(&name.0, 0, 0o600),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(Region::open(&name.0), Err(Error::NotFound { .. })));
    }

    /// Committing more than the whole tmpfs can hold fails up front (tmpfs
    /// checks the request against its size before allocating anything), so
    /// this is deterministic and allocates no memory.
    #[test]
    fn committing_more_than_dev_shm_holds_is_no_space() {
        let Some(capacity) = shm::dev_shm_capacity() else {
            eprintln!("/dev/shm has no size limit; skipped");
            return;
        };
        let len = capacity + (64 << 20);
        let name = TestName::new("no-space");
        let region = Region::create(&name.0, len as usize, 0o600).unwrap();
        match region.commit(0, len) {
            Err(Error::NoSpace { requested, op }) => {
                assert_eq!(requested, len);
                assert_eq!(op, "commit");
            }
            other => panic!("{other:?}"),
        }
    }
}
