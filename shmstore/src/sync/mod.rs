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
//! Errors are for what went wrong: a holder that died or panicked
//! ([`Error::OwnerDied`]), bytes that are not a valid primitive
//! ([`Error::Corrupted`]), a call that would deadlock
//! ([`Error::InvalidArgument`]), a call without a timed form that gave up
//! on a holder that does not let go ([`Error::Busy`]: only an owned
//! semaphore's `release`).
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
//! ## Pid namespaces
//!
//! Pids are recorded as their own pid namespace numbers them, and a pid
//! of another namespace names another process here, or none: judged from
//! the wrong namespace, a live holder would look dead and have its lock
//! taken over. So a holder is judged dead only when every process that
//! ever attached to the primitive's store shares one pid namespace — the
//! store's header records the creator's namespace, and the first process
//! to attach from another one (or one that cannot read its own) marks the
//! store *mixed*, for good, before it can hold anything — and only by a
//! process whose `/proc` is its own namespace's. In a mixed store no
//! holder is ever judged dead: a dead holder's write lock, reader slot,
//! permits or queue slot are waited for like a live one's (the timed forms
//! return; the untimed ones wait until the store is made anew). **Dead-
//! holder repair needs one shared pid namespace**; safety (no live holder
//! ever loses what it holds) does not. A `ShmMutex` is repaired by the
//! kernel, across namespaces.
//!
//! ## Panics
//!
//! A write guard (`ShmMutexGuard`, `ShmRwLockWriteGuard`) dropped while
//! its thread unwinds from a panic marks the data as a dead holder's is
//! marked: later lockers in every process get [`Error::OwnerDied`] until
//! someone repairs it (as `std`'s locks are poisoned). Read guards,
//! semaphore permits and queue claims need nothing: a read changes
//! nothing, a permit is only a count, and a `pop_with` whose closure
//! panics puts its value back.
//!
//! ## What is trusted
//!
//! Every word of a primitive is checked before it is acted on, and a word
//! no correct process writes is [`Error::Corrupted`] or, for a word that
//! can only be judged by waiting (a lock word naming a process that is
//! alive), a bounded wait for the timed forms. Two limits remain: a
//! `ShmMutex` lock word naming a live thread that does not hold it (bytes
//! overwritten with a real thread id) is waited on as held, and in a
//! mixed store nothing is judged at all (above).
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
//! [`Error::Busy`]: crate::Error::Busy

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
pub use rwlock::{
    ShmRwLock, ShmRwLockReadGuard, ShmRwLockWriteGuard, MAX_READER_PROCESSES, MAX_READS_PER_SLOT,
};
pub use semaphore::{ShmSemaphore, MAX_HOLDERS, MAX_PERMITS, RELEASE_PATIENCE};

use crate::layout::TypeLayout;

/// Names a lock for an [`Error::OwnerDied`](crate::Error::OwnerDied): its
/// type, and the store and object it lives in when this process can tell.
pub(crate) fn describe(addr: usize, layout: &'static TypeLayout) -> String {
    match crate::store::describe_address(addr) {
        Some(place) => format!("{} {place}", layout.type_expr()),
        None => format!("{} at {addr:#x}", layout.type_expr()),
    }
}
