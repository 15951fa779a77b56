//! [`StoreOptions`]: capacity, permissions and patience of a new or opened store.

use super::*;

/// How to create or open a store: capacity, permissions, patience.
///
/// ```
/// # fn main() -> shmstore::Result<()> {
/// # let name = format!("doc-options-{}", std::process::id());
/// let store = shmstore::Store::options()
///     .capacity(16 << 20)
///     .mode(0o660)
///     .create(&name)?;
/// assert_eq!(store.stats()?.capacity, 16 << 20);
/// # shmstore::Store::unlink(&name)?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct StoreOptions {
    capacity: u64,
    mode: u32,
    open_timeout: Duration,
    lock_timeout: Option<Duration>,
    remove_when_unused: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            capacity: 64 << 20,
            mode: 0o600,
            open_timeout: Duration::from_secs(5),
            lock_timeout: None,
            remove_when_unused: false,
        }
    }
}

impl StoreOptions {
    /// Bytes to reserve for a new store (default 64 MiB). Rounded up to a
    /// multiple of 4096; at least [`MIN_CAPACITY`].
    ///
    /// The capacity is a sparse reservation: the segment is sized to it at
    /// once, but only the pages the allocator hands out are committed (with
    /// `fallocate`, as the heap grows), so a store created with 64 GiB that
    /// holds 1 MiB costs about 1 MiB of memory. Ask for what the store may
    /// ever need: it cannot grow later.
    pub fn capacity(mut self, bytes: u64) -> Self {
        self.capacity = bytes;
        self
    }

    /// Permission bits of a new store (default `0o600`: this user only).
    /// The process umask does not apply.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// How long `open` waits for a store that another process is still
    /// creating (default 5 s) before reporting it as broken.
    pub fn open_timeout(mut self, timeout: Duration) -> Self {
        self.open_timeout = timeout;
        self
    }

    /// How long any operation of the store waits for its header lock while
    /// another process holds it (default: no limit) before it gives up with
    /// [`Error::TimedOut`], having done nothing. Opening takes the lock too
    /// (to join the store's process table).
    ///
    /// The header lock guards metadata only and is held for short, bounded
    /// work, so the default waits as long as it takes; a holder can still
    /// stall (stopped, swapped out, stuck in a slow `fallocate`). Tools
    /// that must answer in bounded time (`shmstore check --repair --wait`)
    /// set a limit. Each take of the lock waits at most this long, so an
    /// operation that takes it several times may wait a multiple of it.
    /// When a drop (of a handle, or of the last `Store`) times out, what it
    /// would have released is left to be released once this process is
    /// found dead, as after a crash; when freeing the buffers of a removed
    /// value's containers (done in steps after the removal) times out, they
    /// are left for [`Store::collect`](crate::Store::collect). A wait with
    /// a deadline of its own ([`Store::wait_for`](crate::Store::wait_for))
    /// waits for the lock until the earlier of the two.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = Some(timeout);
        self
    }

    /// Makes a new store go away with its last user (default: `false`, the
    /// store persists until [`Store::unlink`]ed).
    ///
    /// The flag is recorded in the store's header when it is created (it
    /// does not change an existing store's). Then:
    ///
    /// - when the last process that has the store open drops it (its last
    ///   [`Store`] and handle), that process removes the store's name, so
    ///   the next [`open`](StoreOptions::open) is [`Error::NotFound`] and the
    ///   next [`open_or_create`](StoreOptions::open_or_create) makes a new,
    ///   empty store;
    /// - if the last users died instead (killed, crashed), the next process
    ///   that opens the name finds every registered user dead, removes the
    ///   store and proceeds as above; and `shmstore gc` lists it as
    ///   abandoned and removes it.
    ///
    /// A process that cannot be told dead (another pid namespace, an
    /// unreadable `/proc`) counts as a user. Processes beyond the 128 that
    /// the store's process table records are not counted: with more users
    /// than that, the store may be removed while some still use it (their
    /// mappings stay valid; the name is gone).
    ///
    /// ```
    /// # fn main() -> shmstore::Result<()> {
    /// # let name = format!("doc-ephemeral-{}", std::process::id());
    /// let store = shmstore::Store::options()
    ///     .capacity(1 << 20)
    ///     .remove_when_unused(true)
    ///     .create(&name)?;
    /// store.insert("x", 1u64)?;
    /// drop(store); // the last user: the store goes with it
    /// assert!(matches!(shmstore::Store::open(&name), Err(shmstore::Error::NotFound { .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn remove_when_unused(mut self, yes: bool) -> Self {
        self.remove_when_unused = yes;
        self
    }

    /// Creates a new store; [`Error::AlreadyExists`] if the name is taken.
    pub fn create(&self, name: &str) -> Result<Store> {
        let name = SegmentName::parse(name)?;
        let capacity = self.checked_capacity()?;
        let region = Region::create(&name, capacity as usize, self.mode)?;
        let flags = if self.remove_when_unused {
            FLAG_REMOVE_WHEN_UNUSED
        } else {
            0
        };
        match Store::initialise(region, flags, self.lock_timeout) {
            Ok(store) => Ok(store),
            Err(e) => {
                let _ = region::unlink(&name);
                Err(e)
            }
        }
    }

    /// Opens an existing store, validating everything it will trust.
    ///
    /// A store another process is still creating is waited for, up to the
    /// open timeout. One whose creator died before it was ready is
    /// [`Error::Corrupted`] at once ("left half-initialised by its
    /// creator"); it is never repaired or re-created behind your back:
    /// [`Store::unlink`] it and create it again. A segment that never got a
    /// store header is [`Error::NotAStore`] after the timeout.
    pub fn open(&self, name: &str) -> Result<Store> {
        let name = SegmentName::parse(name)?;
        Store::attach(&name, self.open_timeout, self.lock_timeout)
    }

    /// Opens the store, creating it if it does not exist. When several
    /// processes race, exactly one creates and initialises it; the others
    /// wait (up to the open timeout) for it to become ready.
    ///
    /// A store that already exists with another capacity than this one's
    /// (rounded up to a multiple of 4096) is [`Error::CapacityMismatch`],
    /// which carries both: a capacity cannot change once a store exists, and
    /// a program that asked for more room than it got would otherwise find
    /// out only when the store is full. [`open`](StoreOptions::open) takes
    /// a store whatever its capacity; [`Store::stats`] tells it.
    pub fn open_or_create(&self, name: &str) -> Result<Store> {
        let parsed = SegmentName::parse(name)?;
        let capacity = self.checked_capacity()?;
        let deadline = super::deadline_after(self.open_timeout);
        loop {
            match self.create(name) {
                Err(Error::AlreadyExists { .. }) => {}
                other => return other,
            }
            match Store::attach(&parsed, self.open_timeout, self.lock_timeout) {
                // Unlinked between our create and open: try again.
                Err(Error::NotFound { .. }) if Instant::now() < deadline => continue,
                Ok(store) if store.inner.mem.len() != capacity => {
                    return Err(Error::CapacityMismatch {
                        name: parsed.as_str().to_string(),
                        requested: capacity,
                        existing: store.inner.mem.len(),
                    })
                }
                other => return other,
            }
        }
    }

    pub(super) fn checked_capacity(&self) -> Result<u64> {
        let cap = self
            .capacity
            .checked_next_multiple_of(4096)
            .unwrap_or(u64::MAX);
        if !(MIN_CAPACITY..=crate::arena::dir::MAX_CAPACITY).contains(&cap) {
            return Err(Error::InvalidArgument {
                reason: format!(
                    "capacity {} is outside [{MIN_CAPACITY}, {}] bytes",
                    self.capacity,
                    crate::arena::dir::MAX_CAPACITY
                ),
            });
        }
        Ok(cap)
    }
}
