//! Process-shared synchronisation and message passing that no dead process
//! can wedge.
//!
//! Every type here lives in a store (or in any memory, as a local
//! primitive) and is shared by every process that maps it:
//!
//! | type                | what                                                          |
//! |---------------------|---------------------------------------------------------------|
//! | [`ShmMutex<T>`]     | a robust mutex around a `T` (a process-shared robust pthread mutex) |
//! | [`ShmRwLock<T>`]    | many readers or one writer, robust on both sides              |
//! | [`ShmCondvar`]      | a condition variable for a `ShmMutex`                         |
//! | [`ShmEvent`]        | a generation counter to wait on: "something changed"          |
//! | [`ShmSemaphore`]    | a counting semaphore; optionally, dead holders' permits return |
//! | [`ShmQueue<T, N>`]  | a bounded queue of values, many producers and consumers       |
//!
//! and [`Store::wait_for`](crate::Store::wait_for) waits for a named object
//! to appear.
//!
//! # Timeouts
//!
//! Every blocking call has a timed form that may come back without what it
//! waited for — as a value, never as an error:
//!
//! - `try_*_for(timeout)` returns `Ok(None)` (`Ok(false)` for a semaphore;
//!   a push gives the value back as `Ok(Err(value))`) when the time runs
//!   out, like `try_*()` does when the thing is not available now;
//! - [`ShmCondvar::wait_timeout`] returns the guard with a
//!   [`WaitTimeoutResult`], as `std` does; [`ShmEvent::wait_for_change`]
//!   and [`Store::wait_for`](crate::Store::wait_for) return `Ok(None)`.
//!
//! Errors are for what went wrong: a holder that died
//! ([`Error::OwnerDied`]), bytes that are not a valid primitive
//! ([`Error::Corrupted`]), a call that would deadlock
//! ([`Error::InvalidArgument`]).
//!
//! # Dead processes
//!
//! A robust pthread mutex is the only lock the kernel helps with when its
//! owner dies. Everything else records who holds what — pid and start time,
//! never a thread id — and every waiter sleeps at most 25 ms at a time,
//! then looks at the state again and, every 20 ms of waiting, at whether
//! the processes it waits for are alive (only a definite "dead" counts; see
//! each type's docs for what a dead holder, waiter or notifier leaves and
//! how it is repaired). Waiters announce themselves with a flag bit in the
//! futex word rather than a count, so a waiter killed at any instruction
//! leaves nothing wrong. Robustness is per process: a thread that exits
//! holding a guard it forgot counts as its living process.
//!
//! All processes using a primitive must share a pid namespace (pids are
//! recorded as their own namespace sees them).
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
//! [`Error::Corrupted`]: crate::Error::Corrupted
//! [`Error::InvalidArgument`]: crate::Error::InvalidArgument

mod condvar;
mod event;
pub(crate) mod held;
mod local;
mod mutex;
mod queue;
mod rwlock;
mod semaphore;
pub(crate) mod wait;

pub use condvar::{ShmCondvar, WaitTimeoutResult};
pub use event::ShmEvent;
pub(crate) use mutex::{mutex_data_offset, try_with_locked};
pub use mutex::{ShmMutex, ShmMutexGuard};
pub use queue::ShmQueue;
pub use rwlock::{ShmRwLock, ShmRwLockReadGuard, ShmRwLockWriteGuard, MAX_READER_PROCESSES};
pub use semaphore::{ShmSemaphore, MAX_HOLDERS, MAX_PERMITS};

use crate::layout::TypeLayout;

/// Names a lock for an [`Error::OwnerDied`](crate::Error::OwnerDied): its
/// type, and the store and object it lives in when this process can tell.
pub(crate) fn describe(addr: usize, layout: &'static TypeLayout) -> String {
    match crate::store::describe_address(addr) {
        Some(place) => format!("{} {place}", layout.type_expr()),
        None => format!("{} at {addr:#x}", layout.type_expr()),
    }
}
