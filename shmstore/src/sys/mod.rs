//! One-to-one wrappers of the OS calls shmstore makes; the only module that calls libc.
//!
//! Each wrapper makes exactly one system or libc call (retrying `EINTR` where
//! the call can be interrupted) and maps its `errno` to an [`Error`]
//! variant *at the call site*, where the cause is known:
//!
//! | errno                     | variant                                  |
//! |---------------------------|------------------------------------------|
//! | `EACCES`, `EPERM`         | [`Error::PermissionDenied`] (name calls) |
//! | `ENOENT`                  | [`Error::NotFound`] `store "/name"`      |
//! | `EEXIST`                  | [`Error::AlreadyExists`] `store "/name"` |
//! | `ENOSPC`, `EFBIG`         | [`Error::NoSpace`]                       |
//! | `ENAMETOOLONG`, `EINVAL`  | [`Error::InvalidName`] (name calls)      |
//! | anything else             | [`Error::Io`] with the raw errno         |
//!
//! Calls on a file descriptor have no name to report, so their permission
//! errors (which only seals or security modules can cause) keep the raw errno
//! in [`Error::Io`].
//!
//! [`Error`]: crate::Error
//! [`Error::PermissionDenied`]: crate::Error::PermissionDenied
//! [`Error::NotFound`]: crate::Error::NotFound
//! [`Error::AlreadyExists`]: crate::Error::AlreadyExists
//! [`Error::NoSpace`]: crate::Error::NoSpace
//! [`Error::InvalidName`]: crate::Error::InvalidName
//! [`Error::Io`]: crate::Error::Io

pub(crate) mod futex;
pub(crate) mod proc;
pub(crate) mod pthread;
pub(crate) mod shm;
