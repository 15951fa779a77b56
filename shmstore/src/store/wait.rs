//! Waiting for a named object to appear: [`Store::wait_for`].

use super::*;
use crate::sync::wait::{Bell, Deadline};

impl Inner {
    /// The header's publications word (see `arena::header`).
    fn published(&self) -> Result<&AtomicU32> {
        self.mem.atomic_u32(OFF_PUBLISHED)
    }

    /// Rings the publications word after a publish committed: one atomic
    /// read-modify-write, plus a wake-up when someone waits. A failure (a
    /// header this process cannot read) is not the publisher's to report:
    /// waiters look again within a slice anyway.
    pub(super) fn ring_published(&self) {
        if let Ok(word) = self.published() {
            Bell::new(word).ring();
        }
    }
}

impl Store {
    /// Waits until an object `name` of type `T` exists, for at most
    /// `timeout`, and returns a handle to it: `Ok(None)` if it did not
    /// appear in time. Returns at once if it exists already.
    ///
    /// Every insert, replace and new `get_or_insert` of any process rings a
    /// word in the store's header after it commits; a waiter sleeps on that
    /// word (a shared futex) and looks the name up again when it rings, and
    /// at least every 25 ms. No polling loop on your side, and a process
    /// that died between publishing and ringing delays waiters by 25 ms at
    /// most.
    ///
    /// The timeout bounds the whole call: each look-up waits for the
    /// store's header lock only until the deadline, so a process that
    /// holds it and does not run (stopped with `SIGSTOP`, say) makes this
    /// return `Ok(None)` at the deadline, not when it runs again — or
    /// [`Error::TimedOut`] sooner, if the store was opened with a
    /// [`lock_timeout`](crate::StoreOptions::lock_timeout) shorter than
    /// the time left. (Only an object whose bytes turn out invalid, an
    /// error, gives its pin back under an untimed lock.)
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> shmstore::Result<()> {
    /// # let name = format!("doc-wait-for-{}", std::process::id());
    /// let store = shmstore::Store::open_or_create(&name, 1 << 20)?;
    /// // In another process: store.insert("ready", 42u64)?;
    /// # store.insert("ready", 42u64)?;
    /// match store.wait_for::<u64>("ready", Duration::from_secs(10))? {
    ///     Some(ready) => println!("ready: {}", *ready),
    ///     None => println!("not ready after 10 s"),
    /// }
    /// # shmstore::Store::unlink(&name)?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`get`](Store::get), except that a missing object is waited
    /// for: [`Error::TypeMismatch`] at once if `name` exists with another
    /// type, [`Error::InvalidName`], [`Error::Corrupted`];
    /// [`Error::TimedOut`] as said above.
    pub fn wait_for<T: ShmSafe>(&self, name: &str, timeout: Duration) -> Result<Option<Handle<T>>> {
        let bell = Bell::new(self.inner.published()?);
        let deadline = Deadline::after(timeout);
        let until = Instant::now().checked_add(timeout);
        loop {
            // Read before looking: a publish after the look rings it.
            let seen = bell.read();
            let found = match until {
                Some(at) => self.get_until::<T>(name, at),
                // A timeout too large to represent: no deadline.
                None => self.get::<T>(name).map(Some),
            };
            match found {
                Ok(Some(handle)) => return Ok(Some(handle)),
                // The header lock was not free before the deadline.
                Ok(None) => return Ok(None),
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            let Some(slice) = deadline.slice() else {
                return Ok(None);
            };
            if let Some(announced) = bell.announce(seen) {
                bell.sleep(announced, slice)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Unlink(String);
    impl Drop for Unlink {
        fn drop(&mut self) {
            let _ = Store::unlink(&self.0);
        }
    }

    #[test]
    fn wait_for_returns_an_object_published_meanwhile_or_none() {
        let name = format!("shmstore-unit-wait-for-{}", std::process::id());
        let _unlink = Unlink(name.clone());
        let store = Store::create(&name, 1 << 20).unwrap();
        let t = Instant::now();
        assert!(store
            .wait_for::<u64>("late", Duration::from_millis(40))
            .unwrap()
            .is_none());
        assert!(t.elapsed() >= Duration::from_millis(40));
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                store
                    .wait_for::<u64>("late", Duration::from_secs(30))
                    .map(|h| h.map(|h| *h))
            });
            std::thread::sleep(Duration::from_millis(10));
            store.insert("other", 1u32).unwrap();
            store.insert("late", 9u64).unwrap();
            assert_eq!(waiter.join().unwrap().unwrap(), Some(9));
        });
        assert!(matches!(
            store.wait_for::<u32>("late", Duration::from_secs(30)),
            Err(Error::TypeMismatch { .. })
        ));
        assert!(matches!(
            store.wait_for::<u32>("", Duration::from_secs(30)),
            Err(Error::InvalidName { .. })
        ));
    }

    #[test]
    fn wait_for_returns_at_its_deadline_while_another_thread_holds_the_header_lock() {
        let name = format!("shmstore-unit-wait-for-held-{}", std::process::id());
        let _unlink = Unlink(name.clone());
        let store = Store::create(&name, 1 << 20).unwrap();
        store.insert("there", 1u64).unwrap();
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let holder = &store;
        std::thread::scope(|s| {
            s.spawn(move || {
                let _held = holder.test_hold_header_lock().unwrap();
                held_tx.send(()).unwrap();
                // Held until the waiter has returned (or 60 s).
                let _ = done_rx.recv_timeout(Duration::from_secs(60));
            });
            held_rx.recv().unwrap();
            let t = Instant::now();
            // Even an object that exists cannot be looked up: the lock is
            // held for the whole timeout.
            let got = store.wait_for::<u64>("there", Duration::from_millis(100));
            let took = t.elapsed();
            done_tx.send(()).unwrap();
            assert!(matches!(got, Ok(None)), "{got:?}");
            assert!(took < Duration::from_secs(30), "{took:?}");
        });
        assert_eq!(
            *store
                .wait_for::<u64>("there", Duration::from_secs(30))
                .unwrap()
                .unwrap(),
            1
        );
    }
}
