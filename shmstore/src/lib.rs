//! shmstore: a typed, zero-copy object store in POSIX shared memory.
#![warn(missing_docs)]

mod error;
pub mod layout;
pub(crate) mod sys;
pub(crate) mod region;
pub mod sync;

pub use error::{Error, Result};
pub use layout::{FieldLayout, InvalidBitPattern, LayoutKind, ShmSafe, TypeLayout, VariantLayout};
pub use shmstore_derive::ShmSafe;
// pub use sync::{LockError, ShmMutex, ShmMutexGuard};  (enabled once sync lands)
