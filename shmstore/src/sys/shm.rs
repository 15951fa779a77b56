//! POSIX shared-memory objects: `shm_open`, `shm_unlink`, `fchmod`,
//! `ftruncate`, `fstat`, `fallocate`, `mmap`, `munmap`.
//!
//! Thin wrappers: no policy lives here (that is [`crate::region`]'s job),
//! only the call and the mapping of its errno to an [`Error`].

use std::ffi::CStr;
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use nix::errno::Errno;
use nix::fcntl::{FallocateFlags, OFlag};
use nix::sys::mman::{MapFlags, ProtFlags};
use nix::sys::stat::Mode;

use crate::{Error, Result};

/// How [`shm_open`] opens a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenHow {
    /// `O_RDWR | O_CREAT | O_EXCL` with these permission bits (the process
    /// umask still applies; see [`fchmod`]).
    CreateExclusive {
        /// Permission bits, `0o600` style.
        mode: u32,
    },
    /// `O_RDWR` on an existing segment.
    Existing,
    /// `O_RDONLY` on an existing segment: for looking without changing
    /// anything (a read permission suffices).
    ReadOnly,
}

/// Flags every open of an existing segment adds: `O_NOFOLLOW` (a symlink
/// put in `/dev/shm` is not followed to another file) and `O_NONBLOCK` (a
/// FIFO put under a segment's name, by whoever may write to `/dev/shm`,
/// cannot block the open until a writer comes). The caller then `fstat`s
/// the descriptor and refuses anything but a regular file
/// ([`FileStat::regular`]). Neither flag changes how a regular file is
/// read, written, sized or mapped.
fn existing_flags() -> OFlag {
    OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC
}

/// The facts of [`fstat`] that shmstore uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStat {
    /// `st_size` in bytes.
    pub(crate) size: u64,
    /// `st_uid`: the owner.
    pub(crate) uid: u32,
    /// The permission bits of `st_mode` (`st_mode & 0o7777`), without the
    /// file type.
    pub(crate) mode: u32,
    /// `st_dev` and `st_ino`: which file it is, whatever its name.
    pub(crate) dev: u64,
    /// See `dev`.
    pub(crate) ino: u64,
    /// Bytes of memory the file holds (`st_blocks` × 512): its committed
    /// pages.
    pub(crate) allocated: u64,
    /// `true` for a regular file (every segment is one).
    pub(crate) regular: bool,
}

/// Where the C library keeps shared-memory segments: `shm_open("/x")`
/// opens `/dev/shm/x` on Linux.
pub(crate) const SHM_DIR: &str = "/dev/shm";

/// The path of segment `name` (`"/x"`) under [`SHM_DIR`].
pub(crate) fn segment_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(SHM_DIR).join(name.trim_start_matches('/'))
}

impl FileStat {
    fn of(m: &std::fs::Metadata) -> FileStat {
        use std::os::unix::fs::MetadataExt;
        FileStat {
            size: m.size(),
            uid: m.uid(),
            mode: m.mode() & 0o7777,
            dev: m.dev(),
            ino: m.ino(),
            allocated: m.blocks().saturating_mul(512),
            regular: m.file_type().is_file(),
        }
    }
}

/// `stat` of the segment `name` (`"/x"`) by its path, without opening it
/// (so without read permission): `Ok(None)` if there is no such segment.
pub(crate) fn stat_segment(name: &str) -> Result<Option<FileStat>> {
    match std::fs::symlink_metadata(segment_path(name)) {
        Ok(m) => Ok(Some(FileStat::of(&m))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("stat", e)),
    }
}

/// The names (`"/x"`) of every entry of [`SHM_DIR`], in no particular
/// order; names that are not UTF-8 are skipped (`shm_open` callers of
/// this crate cannot name them).
pub(crate) fn list_segments() -> Result<Vec<String>> {
    let dir = std::fs::read_dir(SHM_DIR).map_err(|e| Error::io("readdir", e))?;
    let mut out = Vec::new();
    for entry in dir {
        let entry = entry.map_err(|e| Error::io("readdir", e))?;
        if let Ok(name) = entry.file_name().into_string() {
            out.push(format!("/{name}"));
        }
    }
    Ok(out)
}

/// `pread(fd, buf, offset)` until `buf` is full or the file ends, retried
/// on `EINTR`; returns the bytes read. Reading a hole of a tmpfs file
/// gives zeros and allocates nothing, so it can never fault.
pub(crate) fn read_at(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let at = off_t(offset.saturating_add(done as u64), "an offset")?;
        match nix::sys::uio::pread(fd, &mut buf[done..], at) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::io("pread", os_error(e))),
        }
    }
    Ok(done)
}

fn os_error(errno: Errno) -> io::Error {
    io::Error::from_raw_os_error(errno as i32)
}

fn display_name(name: &CStr) -> String {
    name.to_string_lossy().into_owned()
}

/// The errors of a call that names a segment (`shm_open`, `shm_unlink`).
fn name_error(errno: Errno, op: &'static str, name: &CStr) -> Error {
    match errno {
        Errno::EACCES | Errno::EPERM => Error::PermissionDenied {
            name: display_name(name),
        },
        Errno::ENOENT => Error::NotFound {
            what: format!("store \"{}\"", display_name(name)),
        },
        Errno::EEXIST => Error::AlreadyExists {
            what: format!("store \"{}\"", display_name(name)),
        },
        Errno::ENAMETOOLONG => Error::InvalidName {
            name: display_name(name),
            reason: "too long for a shared-memory segment name",
        },
        Errno::EINVAL => Error::InvalidName {
            name: display_name(name),
            reason: "not a valid shared-memory segment name",
        },
        Errno::ENOSPC | Errno::EFBIG => Error::NoSpace { requested: 0, op },
        other => Error::io(op, os_error(other)),
    }
}

fn off_t(value: u64, what: &str) -> Result<libc::off_t> {
    libc::off_t::try_from(value).map_err(|_| Error::InvalidArgument {
        reason: format!("{what} of {value} bytes does not fit in off_t"),
    })
}

/// `shm_open(name, flags, mode)`; the descriptor is close-on-exec. An
/// existing segment is opened without following a symlink and without
/// blocking (see [`existing_flags`]).
pub(crate) fn shm_open(name: &CStr, how: OpenHow) -> Result<OwnedFd> {
    let (flags, mode) = match how {
        OpenHow::CreateExclusive { mode } => (
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        ),
        OpenHow::Existing => (OFlag::O_RDWR | existing_flags(), Mode::empty()),
        OpenHow::ReadOnly => (OFlag::O_RDONLY | existing_flags(), Mode::empty()),
    };
    nix::sys::mman::shm_open(name, flags, mode).map_err(|e| name_error(e, "shm_open", name))
}

/// `shm_unlink(name)`.
pub(crate) fn shm_unlink(name: &CStr) -> Result<()> {
    nix::sys::mman::shm_unlink(name).map_err(|e| name_error(e, "shm_unlink", name))
}

/// `fchmod(fd, mode)`: sets exactly `mode`, whatever the umask was at
/// creation.
pub(crate) fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> Result<()> {
    nix::sys::stat::fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(mode))
        .map_err(|e| Error::io("fchmod", os_error(e)))
}

/// `ftruncate(fd, len)`, retried on `EINTR`. On tmpfs this sets the size
/// without allocating pages (the file is sparse).
pub(crate) fn ftruncate(fd: BorrowedFd<'_>, len: u64) -> Result<()> {
    let off = off_t(len, "a segment")?;
    loop {
        match nix::unistd::ftruncate(fd, off) {
            Ok(()) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(Errno::ENOSPC | Errno::EFBIG) => {
                return Err(Error::NoSpace {
                    requested: len,
                    op: "ftruncate",
                })
            }
            Err(e) => return Err(Error::io("ftruncate", os_error(e))),
        }
    }
}

/// `fstat(fd)`: size, owner and permission bits.
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> Result<FileStat> {
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| Error::io("fstat", os_error(e)))?;
    Ok(FileStat {
        // st_size is never negative for a regular file.
        size: u64::try_from(st.st_size).unwrap_or(0),
        uid: st.st_uid,
        mode: st.st_mode & 0o7777,
        // Widths vary between targets (`dev_t`, `ino_t`, `blkcnt_t`).
        #[allow(clippy::useless_conversion)]
        dev: u64::from(st.st_dev),
        #[allow(clippy::useless_conversion)]
        ino: u64::from(st.st_ino),
        allocated: u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512),
        regular: st.st_mode & libc::S_IFMT == libc::S_IFREG,
    })
}

/// `fallocate(fd, 0, offset, len)`, retried on `EINTR` (tmpfs gives up
/// with `EINTR` when a signal arrives, after undoing its partial work).
/// `ENOSPC`/`EFBIG` become [`Error::NoSpace`] with `op: "fallocate"`.
pub(crate) fn fallocate(fd: BorrowedFd<'_>, offset: u64, len: u64) -> Result<()> {
    let off = off_t(offset, "an offset")?;
    let length = off_t(len, "a length")?;
    loop {
        match nix::fcntl::fallocate(fd.as_raw_fd(), FallocateFlags::empty(), off, length) {
            Ok(()) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(Errno::ENOSPC | Errno::EFBIG) => {
                return Err(Error::NoSpace {
                    requested: len,
                    op: "fallocate",
                })
            }
            Err(e) => return Err(Error::io("fallocate", os_error(e))),
        }
    }
}

/// `mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)`.
///
/// Touches no page (no `MAP_POPULATE`). The mapping is new and placed by
/// the kernel, so it cannot overlap memory the program already uses. It
/// stays valid until [`munmap`]; accessing a page beyond the file's end, or
/// a page tmpfs cannot allocate, raises `SIGBUS` — see [`crate::region`].
pub(crate) fn mmap_shared(fd: BorrowedFd<'_>, len: usize) -> Result<NonNull<u8>> {
    let length = NonZeroUsize::new(len).ok_or_else(|| Error::InvalidArgument {
        reason: "cannot map a 0-byte segment".to_string(),
    })?;
    // SAFETY: `mmap` with no address hint and no MAP_FIXED creates a new
    // mapping at a place the kernel chooses, so it cannot replace or alias
    // any memory the program already references; nothing is dereferenced
    // here.
    let ptr = unsafe {
        nix::sys::mman::mmap(
            None,
            length,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
            fd,
            0,
        )
    };
    ptr.map(NonNull::cast)
        .map_err(|e| Error::io("mmap", os_error(e)))
}

/// `mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0)`: a view that cannot
/// write (a write through it is a `SIGSEGV`, never a change), for reading
/// words another process changes atomically.
///
/// As for [`mmap_shared`], touching a page of the view that the file does
/// not hold is a `SIGBUS` (on a full tmpfs, or once the file's owner has
/// shrunk it): nothing in the library maps another process's segment this
/// way; tests use it to play an observer.
#[cfg(test)]
pub(crate) fn mmap_shared_read_only(fd: BorrowedFd<'_>, len: usize) -> Result<NonNull<u8>> {
    let length = NonZeroUsize::new(len).ok_or_else(|| Error::InvalidArgument {
        reason: "cannot map 0 bytes".to_string(),
    })?;
    // SAFETY: as in `mmap_shared`: a new mapping at a place the kernel
    // chooses, aliasing nothing; nothing is dereferenced here.
    let ptr = unsafe {
        nix::sys::mman::mmap(
            None,
            length,
            ProtFlags::PROT_READ,
            MapFlags::MAP_SHARED,
            fd,
            0,
        )
    };
    ptr.map(NonNull::cast)
        .map_err(|e| Error::io("mmap", os_error(e)))
}

/// `munmap(base, len)`.
///
/// # Safety
///
/// - `base` and `len` are exactly a mapping returned by [`mmap_shared`] that
///   has not been unmapped yet;
/// - no reference into the mapping is used after this call.
pub(crate) unsafe fn munmap(base: NonNull<u8>, len: usize) -> Result<()> {
    // SAFETY: the caller guarantees `base..base + len` is a live mapping of
    // ours that nothing references any more.
    unsafe { nix::sys::mman::munmap(base.cast(), len) }
        .map_err(|e| Error::io("munmap", os_error(e)))
}

/// The size in bytes of the tmpfs behind `/dev/shm`, or `None` if it has no
/// limit (tests use it to ask for more than can ever be committed).
#[cfg(test)]
pub(crate) fn dev_shm_capacity() -> Option<u64> {
    let st = nix::sys::statvfs::statvfs("/dev/shm").ok()?;
    let blocks = st.blocks() as u64;
    (blocks > 0).then(|| blocks * st.fragment_size() as u64)
}

/// The effective user id of this process (tests compare it with
/// [`FileStat::uid`]).
#[cfg(test)]
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: `geteuid` has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_errors_map_to_variants() {
        let name = c"/x";
        assert!(matches!(
            name_error(Errno::EACCES, "shm_open", name),
            Error::PermissionDenied { name } if name == "/x"
        ));
        assert!(matches!(
            name_error(Errno::ENOENT, "shm_open", name),
            Error::NotFound { what } if what == "store \"/x\""
        ));
        assert!(matches!(
            name_error(Errno::EEXIST, "shm_open", name),
            Error::AlreadyExists { what } if what == "store \"/x\""
        ));
        assert!(matches!(
            name_error(Errno::ENAMETOOLONG, "shm_open", name),
            Error::InvalidName { .. }
        ));
        let e = name_error(Errno::EMFILE, "shm_open", name);
        assert_eq!(e.raw_os_error(), Some(libc::EMFILE));
        assert!(matches!(e, Error::Io { op: "shm_open", .. }));
    }

    #[test]
    fn unlink_of_a_missing_segment_is_not_found() {
        let name = format!("/shmstore-ut-{}-sys-missing\0", std::process::id());
        let name = CStr::from_bytes_with_nul(name.as_bytes()).unwrap();
        assert!(matches!(shm_unlink(name), Err(Error::NotFound { .. })));
    }
}
