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
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            capacity: 64 << 20,
            mode: 0o600,
            open_timeout: Duration::from_secs(5),
        }
    }
}

impl StoreOptions {
    /// Bytes to reserve for a new store (default 64 MiB). The segment is
    /// sparse: only pages the allocator hands out are committed. Rounded up
    /// to a multiple of 4096; at least [`MIN_CAPACITY`].
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

    /// Creates a new store; [`Error::AlreadyExists`] if the name is taken.
    pub fn create(&self, name: &str) -> Result<Store> {
        let name = SegmentName::parse(name)?;
        let capacity = self.checked_capacity()?;
        let region = Region::create(&name, capacity as usize, self.mode)?;
        match Store::initialise(region) {
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
        Store::attach(&name, self.open_timeout)
    }

    /// Opens the store, creating it if it does not exist. When several
    /// processes race, exactly one creates and initialises it; the others
    /// wait (up to the open timeout) for it to become ready.
    pub fn open_or_create(&self, name: &str) -> Result<Store> {
        let parsed = SegmentName::parse(name)?;
        let deadline = Instant::now() + self.open_timeout;
        loop {
            match self.create(name) {
                Err(Error::AlreadyExists { .. }) => {}
                other => return other,
            }
            match Store::attach(&parsed, self.open_timeout) {
                // Unlinked between our create and open: try again.
                Err(Error::NotFound { .. }) if Instant::now() < deadline => continue,
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
