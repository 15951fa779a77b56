//! Process-shared synchronisation.
//!
//! [`ShmMutex<T>`] is a mutual-exclusion lock that lives in a store and is
//! shared by every process that opens it. It is robust: when a process dies
//! while holding it, later lockers are told ([`Error::OwnerDied`]) until one
//! of them repairs the data and marks it consistent, instead of waiting
//! forever or reading a half-done update unawares.
//!
//! In a store, a `ShmMutex` is created with the value and shared through a
//! handle (`store.get_or_insert_with("counter", || ShmMutex::new(0u64))?`).
//! The same type also works as a plain local mutex:
//!
//! ```
//! use shmstore::ShmMutex;
//!
//! # fn main() -> shmstore::Result<()> {
//! let counter = ShmMutex::new(0u64);
//! *counter.lock()? += 1; // an owner's death would be `Error::OwnerDied`
//! assert_eq!(*counter.lock()?, 1);
//! # Ok(())
//! # }
//! ```
//!
//! [`Error::OwnerDied`]: crate::Error::OwnerDied

pub(crate) mod held;
mod mutex;

pub(crate) use mutex::{mutex_data_offset, try_with_locked};

pub use mutex::{ShmMutex, ShmMutexGuard};
