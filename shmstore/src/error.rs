//! The one error type of shmstore.

use std::fmt;
use std::io;

/// Everything that can go wrong in shmstore, each variant naming its cause.
///
/// Messages say what happened and what to do about it; the fields carry the
/// details for programs that want to react.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// No object (or no store) with this name.
    NotFound {
        /// What was looked for: `object "x"` or `store "/x"`.
        what: String,
    },
    /// The name is taken.
    AlreadyExists {
        /// What exists: `object "x"` or `store "/x"`.
        what: String,
    },
    /// The stored object has another layout than the requested type.
    TypeMismatch {
        /// The object's name.
        name: String,
        /// The requested type's layout, rendered field by field.
        expected: String,
        /// The stored type's layout, rendered field by field.
        found: String,
    },
    /// A store or object name that cannot be used.
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A bad argument other than a name (a capacity too small, a length
    /// that overflows).
    InvalidArgument {
        /// What was wrong.
        reason: String,
    },
    /// A container (a `ShmVec`, `ShmString`, `ShmMap` or `RelPtr`) lives in
    /// the segment of another store than the one it allocates from: it was
    /// moved there (`mem::swap` through guards of two stores). Its offsets
    /// mean nothing here, so it refuses to follow them.
    ForeignContainer {
        /// The container's type.
        container: &'static str,
        /// The store whose segment it now lives in.
        store: String,
    },
    /// [`open_or_create`](crate::StoreOptions::open_or_create) found the
    /// store already there, with another capacity than the one asked for.
    CapacityMismatch {
        /// The store's name.
        name: String,
        /// The capacity asked for (rounded up to a multiple of 4096).
        requested: u64,
        /// The existing store's capacity.
        existing: u64,
    },
    /// The store's arena has no free block large enough.
    OutOfMemory {
        /// Bytes requested (including the block's bookkeeping).
        requested: u64,
        /// Bytes free in the arena (possibly fragmented).
        free: u64,
        /// The store's capacity.
        capacity: u64,
    },
    /// The file system behind `/dev/shm` is full: pages could not be
    /// committed.
    NoSpace {
        /// Bytes that were being committed.
        requested: u64,
        /// The operation that failed.
        op: &'static str,
    },
    /// The operating system refused access (another user's store, mode bits).
    PermissionDenied {
        /// The store's name.
        name: String,
    },
    /// The segment exists but is not a shmstore store.
    NotAStore {
        /// The segment's name.
        name: String,
        /// What was found instead.
        reason: String,
    },
    /// A store of another format version or ABI.
    Incompatible {
        /// The segment's name.
        name: String,
        /// What differs.
        reason: String,
    },
    /// The store's metadata or an object's bytes are inconsistent.
    Corrupted {
        /// What was found, with the offset.
        reason: String,
    },
    /// A process died (or a thread panicked) while holding a lock, and no
    /// one has marked the data it guarded consistent since: it may be
    /// half-updated. Every `lock` reports this until a holder from
    /// `lock_recover` calls `mark_consistent` (see
    /// [`ShmMutex`](crate::ShmMutex#owner-death)).
    OwnerDied {
        /// The lock: its type and, when this process can tell, the store
        /// and object it lives in.
        what: String,
    },
    /// A call without a timed form waited as long as it may for something
    /// another process holds, which is held far longer than it ever should
    /// be (its holder is stopped, or the word that names it was
    /// overwritten); nothing was changed. (See
    /// [`ShmSemaphore::release`](crate::ShmSemaphore::release).)
    Busy {
        /// What was waited for, who holds it, and how long was waited.
        what: String,
    },
    /// A store's header lock was held by another process for longer than
    /// this process was told to wait
    /// ([`StoreOptions::lock_timeout`](crate::StoreOptions::lock_timeout),
    /// or the wait given to [`Store::remove_unused`](crate::Store::remove_unused)).
    /// Nothing was done; try again later.
    TimedOut {
        /// What was waited for, and how long.
        what: String,
    },
    /// An operating-system call failed for a reason without its own variant.
    Io {
        /// The call that failed (`shm_open`, `mmap`, ...).
        op: &'static str,
        /// The error, with its raw errno.
        source: io::Error,
    },
}

/// `Result<T, shmstore::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn corrupted(reason: impl Into<String>) -> Error {
        Error::Corrupted {
            reason: reason.into(),
        }
    }

    pub(crate) fn io(op: &'static str, source: io::Error) -> Error {
        Error::Io { op, source }
    }

    /// The raw OS error number, if this error came from a system call.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound { what } => write!(f, "{what} not found"),
            Error::AlreadyExists { what } => write!(f, "{what} already exists"),
            Error::TypeMismatch {
                name,
                expected,
                found,
            } => write!(
                f,
                "object \"{name}\" has another type\n  expected:\n{}\n  found:\n{}",
                indent(expected),
                indent(found)
            ),
            Error::InvalidName { name, reason } => write!(f, "invalid name {name:?}: {reason}"),
            Error::InvalidArgument { reason } => write!(f, "invalid argument: {reason}"),
            Error::ForeignContainer { container, store } => write!(
                f,
                "this {container} was moved into store \"{store}\" from another store: its \
                 offsets belong to the store it was created in; move it back, or build a new \
                 one in this store"
            ),
            Error::CapacityMismatch {
                name,
                requested,
                existing,
            } => write!(
                f,
                "store \"{name}\" already exists with a capacity of {existing} bytes, not the \
                 {requested} asked for; open it with Store::open to take it as it is, or remove \
                 it (`shmstore rm {}`) to create it anew",
                name.trim_start_matches('/')
            ),
            Error::OutOfMemory {
                requested,
                free,
                capacity,
            } => write!(
                f,
                "store is full: {requested} bytes requested, {free} bytes free of a {capacity}-byte capacity; \
                 remove objects or create the store with a larger capacity"
            ),
            Error::NoSpace { requested, op } => write!(
                f,
                "no space left in /dev/shm: {op} could not commit {requested} bytes; \
                 free space in /dev/shm (see `df /dev/shm`) or remove unused stores"
            ),
            Error::PermissionDenied { name } => write!(
                f,
                "permission denied opening store \"{name}\": it belongs to another user \
                 or its mode does not allow access (see Store::options().mode)"
            ),
            Error::NotAStore { name, reason } => {
                write!(f, "shared memory segment \"{name}\" is not a shmstore store: {reason}")
            }
            Error::Incompatible { name, reason } => {
                write!(f, "store \"{name}\" is incompatible with this build: {reason}")
            }
            Error::Corrupted { reason } => write!(f, "store is corrupted: {reason}"),
            Error::OwnerDied { what } => write!(
                f,
                "a holder of {what} died or panicked while holding it; the data it guards may \
                 be half-updated: lock it with lock_recover() (write_recover() for a \
                 ShmRwLock), repair the data and call mark_consistent()"
            ),
            Error::Busy { what } => write!(f, "gave up waiting: {what}"),
            Error::TimedOut { what } => write!(f, "timed out: {what}; nothing was done"),
            Error::Io { op, source } => write!(f, "{op} failed: {source}"),
        }
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
