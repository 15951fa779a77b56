//! Regression tests of review 8 (attempts to break the synchronisation
//! primitives), in one process. Each test that once failed says what the
//! reviewer found (FOUND) and checks the fixed behaviour; the `held_up_*`
//! tests are the reviewer's attacks that held up from the start.
//!
//! Finding 1 (containers inside a `ShmRwLock` or a `ShmQueue` hidden from
//! `collect`) is refused at compile time now: see `tests/ui_mono.rs`.
//!
//! Run: `cargo test -p shmstore --test sync_regressions`.

mod common;
use common::Temp;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use shmstore::sync::RELEASE_PATIENCE;
use shmstore::{
    Error, ShmCondvar, ShmEvent, ShmMutex, ShmQueue, ShmRwLock, ShmSafe, ShmSemaphore, Store,
};

/// Runs `f` on a detached thread; `Some(result)` if it returned within
/// `limit`, `None` if it is still running (it is left running: the
/// caller must make it finish, or accept a stuck thread until the test
/// binary exits).
fn returns_within<R: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> R + Send + 'static,
) -> Option<R> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).ok()
}

/// The word of type `A` at byte offset `off` of a primitive, as another
/// process scribbling on the segment would reach it. Only used on atomic
/// words (interior mutability), at the offsets the type docs publish.
fn word_at<P, A>(p: &P, off: usize) -> &A {
    assert!(off + core::mem::size_of::<A>() <= core::mem::size_of::<P>());
    // SAFETY: `off` is inside `*p` (asserted), and the docs' layout tables
    // put an atomic of type `A` there, aligned.
    unsafe { &*(p as *const P as *const u8).add(off).cast::<A>() }
}

// ---------------------------------------------------------------------------
// 2. ShmRwLock re-entrancy bookkeeping (thread-local, keyed by address).
// ---------------------------------------------------------------------------

/// Finding 10. A fresh, unlocked lock can be read and written, whatever
/// guard of an earlier lock at the same address was forgotten (`std`'s
/// `RwLock`: a forgotten guard leaves *that* lock locked; a new lock
/// written over it works).
///
/// FOUND: the thread's note of the forgotten guard, keyed by address, made
/// every later lock at that address refuse this thread with
/// `InvalidArgument`, forever. Now a note is checked against the lock's
/// words, and dropped when they contradict it.
#[test]
fn a_forgotten_guard_does_not_refuse_a_new_lock_at_the_same_address() {
    let mut locks = [ShmRwLock::new(0u64)];
    std::mem::forget(locks[0].write().unwrap());
    // A brand-new lock at the same address (as a removed object's offset
    // reused by a new one would be).
    locks[0] = ShmRwLock::new(1u64);
    let read = locks[0].try_read().map(|g| g.map(|g| *g));
    let write = locks[0].try_write().map(|g| g.is_some());
    assert!(
        matches!(read, Ok(Some(1))) && matches!(write, Ok(true)),
        "a new unlocked lock is refused: read {read:?}, write {write:?}"
    );
    // The same for a forgotten read guard: the new lock's slots count
    // nothing, so the note goes.
    std::mem::forget(locks[0].read().unwrap());
    locks[0] = ShmRwLock::new(2u64);
    let write = locks[0].try_write().map(|g| g.is_some());
    assert!(matches!(write, Ok(true)), "{write:?}");
    // And the old lock itself stays held by the forgotten guard, as in
    // std: this thread is refused (it would wait for itself).
    let old = ShmRwLock::new(3u64);
    std::mem::forget(old.write().unwrap());
    assert!(matches!(old.try_read(), Err(Error::InvalidArgument { .. })));
}

/// Finding 9. Through two mappings of one store in one process, a call
/// that would wait for the calling thread itself is refused, as through
/// one (rwlock docs of `read`/`write`: "InvalidArgument if this thread
/// holds the write lock" / "holds a read or the write lock of this lock
/// already").
///
/// FOUND: the thread's notes were keyed by address, and the same lock has
/// two addresses: the thread waited for itself (a timed call timed out, an
/// untimed one would never return). Now a lock is known by its store id
/// and offset.
#[test]
fn two_mappings_of_one_store_keep_the_would_deadlock_check() {
    let t = Temp::new("rw-2maps");
    let a = t
        .store
        .get_or_insert_with("l", || ShmRwLock::new(0u64))
        .unwrap();
    let second = Store::open(t.store.name()).unwrap();
    let b = second.get::<ShmRwLock<u64>>("l").unwrap();
    assert_ne!(
        &*a as *const _ as usize, &*b as *const _ as usize,
        "two mappings expected"
    );
    let w = a.write().unwrap();
    let started = Instant::now();
    let r = b
        .try_read_for(Duration::from_millis(300))
        .map(|g| g.is_some());
    let took = started.elapsed();
    let w2 = b
        .try_write_for(Duration::from_millis(300))
        .map(|g| g.is_some());
    let untimed = b.read().map(|_| ());
    drop(w);
    assert!(
        matches!(r, Err(Error::InvalidArgument { .. }))
            && matches!(w2, Err(Error::InvalidArgument { .. }))
            && matches!(untimed, Err(Error::InvalidArgument { .. })),
        "a thread holding the write lock through one mapping waits for itself through the \
         other: try_read_for -> {r:?} after {took:?}, try_write_for -> {w2:?}, read -> \
         {untimed:?}"
    );
    // A read through one mapping: a write through the other is refused,
    // and a read through the other is a read again, even while a writer
    // (another thread) waits.
    let r1 = a.read().unwrap();
    assert!(matches!(b.try_write(), Err(Error::InvalidArgument { .. })));
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let w = a.try_write_for(Duration::from_secs(60)).unwrap();
            w.map(|mut w| *w = 5).is_some()
        });
        // The writer claims the lock (it then waits for our read): seen
        // when a thread that holds nothing can no longer read.
        let t = Instant::now();
        while s.spawn(|| b.try_read().unwrap().is_some()).join().unwrap()
            && t.elapsed() < Duration::from_secs(30)
        {
            std::thread::yield_now();
        }
        let again = b.read().unwrap();
        assert_eq!(*again, 0);
        drop(again);
        drop(r1);
        assert!(writer.join().unwrap());
    });
    assert_eq!(*b.read().unwrap(), 5);
}

/// Held up: a thread that reads may read again while a writer waits, and
/// write-after-read in one thread is refused, through one mapping.
#[test]
fn held_up_reentrancy_through_one_mapping() {
    let l = ShmRwLock::new(5u32);
    let r = l.read().unwrap();
    assert!(matches!(l.try_write(), Err(Error::InvalidArgument { .. })));
    assert!(matches!(
        l.write().map(|_| ()),
        Err(Error::InvalidArgument { .. })
    ));
    let r2 = l.read().unwrap();
    drop(r);
    drop(r2);
    let w = l.write().unwrap();
    assert!(matches!(l.try_read(), Err(Error::InvalidArgument { .. })));
    assert!(matches!(
        l.read().map(|_| ()),
        Err(Error::InvalidArgument { .. })
    ));
    drop(w);
    assert_eq!(*l.read().unwrap(), 5);
}

// ---------------------------------------------------------------------------
// 3. Corrupted words: an Error or a bounded wait, never a silent wedge or an
//    unbounded hang.
// ---------------------------------------------------------------------------

/// Finding 7. A corrupted queue `head` is `Error::Corrupted`, not a queue
/// whose values are never found.
///
/// FOUND: with `head` (offset 64) set to `u64::MAX`, pops scanned
/// `head..head.saturating_add(N)`, an empty range, and said `Ok(None)`
/// forever, values pushed or not; pushes then filled the ring and waited
/// forever. Now the head and tail are checked against each other (once a
/// lap, and whenever a push finds the queue full or a pop finds it empty),
/// and ranges are never saturated.
#[test]
fn a_queue_head_of_u64_max_is_corruption() {
    let q = ShmQueue::<u64, 4>::new();
    word_at::<_, AtomicU64>(&q, 64).store(u64::MAX, Ordering::SeqCst);
    let pushed = q.try_push(42);
    let popped = q.try_pop_for(Duration::from_millis(200));
    assert!(
        matches!(pushed, Err(Error::Corrupted { .. }))
            && matches!(popped, Err(Error::Corrupted { .. })),
        "corrupted head: push -> {pushed:?}, then pop -> {popped:?}"
    );
}

/// Finding 7, a plausible head: 3 ahead of the tail.
///
/// FOUND: the first 3 values pushed were never popped and the queue wedged
/// for good after N pushes, with no error anywhere. Now the first push
/// (the start of a lap) finds the head ahead of the tail: every push and
/// pop is `Error::Corrupted`, and nothing is taken in or lost.
#[test]
fn a_queue_head_ahead_of_its_tail_is_corruption() {
    let q = ShmQueue::<u64, 8>::new();
    word_at::<_, AtomicU64>(&q, 64).store(3, Ordering::SeqCst);
    for i in 0..8u64 {
        let pushed = q.try_push(i);
        assert!(
            matches!(pushed, Err(Error::Corrupted { .. })),
            "{i}: {pushed:?}"
        );
    }
    let popped = q.try_pop_for(Duration::from_millis(100));
    assert!(matches!(popped, Err(Error::Corrupted { .. })), "{popped:?}");
    let pushed = q.try_push_for(100, Duration::from_millis(200));
    assert!(matches!(pushed, Err(Error::Corrupted { .. })), "{pushed:?}");
    // A tail far ahead of the head, likewise.
    let q = ShmQueue::<u64, 8>::new();
    word_at::<_, AtomicU64>(&q, 0).store(1000, Ordering::SeqCst);
    assert!(matches!(q.try_pop(), Err(Error::Corrupted { .. })));
    assert!(matches!(q.try_push(1), Err(Error::Corrupted { .. })));
}

/// Finding 5. An owned semaphore's `release` is bounded: a bookkeeping
/// lock word naming a live process that does not let go (here pid 1, start
/// unknown — what a holder stopped with `SIGSTOP`, or a live process's id
/// written over the word, looks like) makes `try_release_for` return
/// `Ok(false)` at its timeout and `release` give up with `Error::Busy`
/// after `RELEASE_PATIENCE`, both having changed nothing (the permit is
/// still held, and is released once the lock is free).
///
/// FOUND: `release` looped on the bookkeeping lock forever.
#[test]
fn an_owned_semaphore_release_is_bounded_on_a_lock_word_naming_a_live_process() {
    let sem: &'static ShmSemaphore = Box::leak(Box::new(ShmSemaphore::with_owners(2)));
    assert!(sem.try_acquire().unwrap());
    let lock_word = word_at::<_, AtomicU64>(sem, 8);
    // pid 1 (always alive), start time unknown (u32::MAX in the high half).
    lock_word.store(1 | (u64::from(u32::MAX) << 32), Ordering::SeqCst);
    let t = Instant::now();
    let timed = sem.try_acquire_for(Duration::from_millis(200));
    let timed_took = t.elapsed();
    assert!(matches!(timed, Ok(false)), "{timed:?}");
    assert!(timed_took < Duration::from_secs(5), "{timed_took:?}");
    let t = Instant::now();
    let try_release = sem.try_release_for(Duration::from_millis(200));
    assert!(matches!(try_release, Ok(false)), "{try_release:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(sem.held(), 1, "nothing changed");
    let released = returns_within(RELEASE_PATIENCE * 3, move || {
        let t = Instant::now();
        (sem.release(), t.elapsed())
    });
    let (released, took) = released.expect("release() returned");
    match &released {
        Err(e @ Error::Busy { what }) => {
            assert!(what.contains("pid 1"), "{e}");
        }
        other => panic!("release() -> {other:?}"),
    }
    assert!(took >= RELEASE_PATIENCE, "{took:?}");
    assert_eq!((sem.held(), sem.available()), (1, 1), "nothing changed");
    // Once the lock is free, the permit goes back.
    lock_word.store(0, Ordering::SeqCst);
    sem.release().unwrap();
    assert_eq!((sem.held(), sem.available()), (0, 2));
}

/// Held up: every bit pattern of the words of ShmEvent, ShmCondvar, a plain
/// ShmSemaphore and ShmRwLock's state gives a value or an error within
/// about its timeout.
#[test]
fn held_up_extreme_words_give_a_value_or_an_error_in_bounded_time() {
    for w in [
        0u64,
        1,
        u64::MAX,
        u64::MAX - 1,
        1 << 63,
        (1 << 32) - 1,
        1 << 32,
    ] {
        let e = ShmEvent::new();
        word_at::<_, AtomicU64>(&e, 0).store(w, Ordering::SeqCst);
        let g = e.generation();
        let t = Instant::now();
        assert_eq!(
            e.wait_for_change(g, Duration::from_millis(30)).unwrap(),
            None
        );
        assert!(t.elapsed() < Duration::from_secs(2));
        let n = e.notify();
        assert_eq!(
            e.wait_for_change(g, Duration::from_millis(30)).unwrap(),
            Some(n)
        );
    }
    for w in [0u32, 1, u32::MAX, u32::MAX - 1, 1 << 31] {
        let cv = ShmCondvar::new();
        word_at::<_, AtomicU32>(&cv, 0).store(w, Ordering::SeqCst);
        let m = ShmMutex::new(0u32);
        let t = Instant::now();
        let (_g, r) = cv
            .wait_timeout_while(m.lock().unwrap(), Duration::from_millis(40), |v| *v == 0)
            .unwrap();
        assert!(r.timed_out());
        assert!(t.elapsed() < Duration::from_secs(2));
        cv.notify_one();
        cv.notify_all();
    }
    for w in [0u32, 1, u32::MAX, u32::MAX - 1, 1 << 31, (1 << 31) - 1] {
        let s = ShmSemaphore::new(0);
        word_at::<_, AtomicU32>(&s, 0).store(w, Ordering::SeqCst);
        let t = Instant::now();
        let r = s.try_acquire_for(Duration::from_millis(40));
        assert!(t.elapsed() < Duration::from_secs(2), "{w:#x}: {r:?}");
        let _ = s.release();
    }
    for mode in [2u32, u32::MAX] {
        let s = ShmSemaphore::new(1);
        word_at::<_, AtomicU32>(&s, 4).store(mode, Ordering::SeqCst);
        assert!(matches!(s.try_acquire(), Err(Error::Corrupted { .. })));
        assert!(matches!(s.release(), Err(Error::Corrupted { .. })));
    }
    for st in [4u32, u32::MAX, 0x8000_0000] {
        let l = ShmRwLock::new(0u64);
        word_at::<_, AtomicU32>(&l, 8).store(st, Ordering::SeqCst);
        assert!(matches!(
            l.try_read().map(|_| ()),
            Err(Error::Corrupted { .. })
        ));
        assert!(matches!(
            l.try_write().map(|_| ()),
            Err(Error::Corrupted { .. })
        ));
        assert!(matches!(l.read().map(|_| ()), Err(Error::Corrupted { .. })));
    }
    // A reader slot of this process counting all it can (the reader slot
    // word is one word since review 8: count in bits 0..12, then the pid
    // and the start time): a read counts in another slot. And every other
    // bit pattern of a slot: a read is taken or refused at once.
    let l = ShmRwLock::new(0u64);
    let pid = std::process::id();
    let slot = (pid as usize) % 32;
    let probe = ShmRwLock::new(0u64);
    drop(probe.read().unwrap());
    let mine = word_at::<_, AtomicU64>(&probe, 64 + 16 * slot).load(Ordering::SeqCst);
    assert_eq!(mine >> 12 & ((1 << 22) - 1), u64::from(pid), "{mine:#x}");
    let full = mine | 0xfff;
    word_at::<_, AtomicU64>(&l, 64 + 16 * slot).store(full, Ordering::SeqCst);
    let g = l.try_read().unwrap().expect("counted in another slot");
    assert_eq!(
        word_at::<_, AtomicU64>(&l, 64 + 16 * slot).load(Ordering::SeqCst),
        full
    );
    drop(g);
    for w in [u64::MAX, u64::MAX - 1, 1 << 63, 0xfff, mine ^ 1 << 40] {
        for s in 0..32 {
            let l = ShmRwLock::new(0u64);
            word_at::<_, AtomicU64>(&l, 64 + 16 * s).store(w, Ordering::SeqCst);
            let t = Instant::now();
            let r = l.try_read().map(|g| g.is_some());
            assert!(t.elapsed() < Duration::from_secs(2), "{w:#x}@{s}: {r:?}");
        }
    }
    // A writer word of a dead pid with WRITING: reported, not a hang.
    let l = ShmRwLock::new(0u64);
    word_at::<_, AtomicU64>(&l, 0).store(u64::from(i32::MAX as u32), Ordering::SeqCst);
    word_at::<_, AtomicU32>(&l, 8).store(2, Ordering::SeqCst);
    let r = l.try_read_for(Duration::from_secs(5));
    assert!(matches!(r.map(|_| ()), Err(Error::OwnerDied { .. })));
}

/// Held up: queue slot words with extreme laps/phases/owners give an error
/// or a bounded wait.
#[test]
fn held_up_extreme_queue_slot_words() {
    let words = [
        u64::MAX,
        u64::MAX - 1,
        1 << 63,
        (1 << 40) - 1,
        1,
        2,
        3,
        (0xff_ffff << 40) | 2,
        (1 << 40) | 2,
    ];
    for w in words {
        for slot in 0..2 {
            let q = ShmQueue::<u64, 2>::new();
            let off = 192 + 16 * slot;
            word_at::<_, AtomicU64>(&q, off).store(w, Ordering::SeqCst);
            let t = Instant::now();
            let push = q.try_push_for(1, Duration::from_millis(60));
            let pop = q.try_pop_for(Duration::from_millis(60));
            let push2 = q.try_push_for(2, Duration::from_millis(60));
            let pop2 = q.try_pop_for(Duration::from_millis(60));
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "{w:#x}@{slot}: {push:?} {pop:?} {push2:?} {pop2:?}"
            );
        }
    }
    for tail in [u64::MAX, u64::MAX - 1, 1 << 63] {
        let q = ShmQueue::<u64, 2>::new();
        word_at::<_, AtomicU64>(&q, 0).store(tail, Ordering::SeqCst);
        let t = Instant::now();
        let _ = q.try_push_for(1, Duration::from_millis(60));
        let _ = q.try_pop_for(Duration::from_millis(60));
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}

// ---------------------------------------------------------------------------
// 4. Timeouts and exact accounting (held up).
// ---------------------------------------------------------------------------

/// Held up: zero and `Duration::MAX` timeouts.
#[test]
fn held_up_zero_and_max_timeouts() {
    let l = ShmRwLock::new(0u8);
    let w = l.write().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            let t = Instant::now();
            assert!(l.try_read_for(Duration::ZERO).unwrap().is_none());
            assert!(l.try_write_for(Duration::ZERO).unwrap().is_none());
            assert!(t.elapsed() < Duration::from_secs(1));
        })
        .join()
        .unwrap();
    });
    drop(w);
    assert!(l.try_write_for(Duration::MAX).unwrap().is_some());
    let e = ShmEvent::new();
    assert_eq!(e.wait_for_change(0, Duration::ZERO).unwrap(), None);
    e.notify();
    assert_eq!(e.wait_for_change(0, Duration::MAX).unwrap(), Some(1));
    let s = ShmSemaphore::new(0);
    assert!(!s.try_acquire_for(Duration::ZERO).unwrap());
    s.release().unwrap();
    assert!(s.try_acquire_for(Duration::MAX).unwrap());
    let q = ShmQueue::<u8, 1>::new();
    assert_eq!(q.try_pop_for(Duration::ZERO).unwrap(), None);
    q.try_push_for(1, Duration::MAX).unwrap().unwrap();
    assert_eq!(q.try_push_for(2, Duration::ZERO).unwrap(), Err(2));
    let m = ShmMutex::new(0u8);
    let g = m.lock().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(m.try_lock_for(Duration::ZERO).unwrap().is_none());
            assert!(m.try_lock_for(Duration::from_millis(30)).unwrap().is_none());
        })
        .join()
        .unwrap();
    });
    drop(g);
    assert!(m.try_lock_for(Duration::MAX).unwrap().is_some());
}

/// Held up: many threads through a small queue — every value popped
/// exactly once, with `pop_with` closures that panic now and then (the
/// value goes back). (Per-consumer order is checked separately, below.)
#[test]
fn held_up_queue_exact_accounting_with_panicking_closures() {
    const PRODUCERS: u64 = 3;
    const PER: u64 = 3000;
    let q: &'static ShmQueue<u64, 2> = Box::leak(Box::new(ShmQueue::new()));
    let got = std::thread::scope(|s| {
        for p in 0..PRODUCERS {
            s.spawn(move || {
                for i in 0..PER {
                    q.push(p << 32 | i).unwrap();
                }
            });
        }
        let consumers: Vec<_> = (0..3)
            .map(|c| {
                s.spawn(move || {
                    let mut got = Vec::new();
                    let mut n = 0u64;
                    loop {
                        n += 1;
                        if (n + c) % 7 == 0 {
                            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                q.try_pop_with_for(Duration::from_millis(500), |_| {
                                    panic!("review: a closure that panics")
                                })
                            }));
                            if matches!(r, Ok(Ok(None))) {
                                break;
                            }
                            assert!(r.is_err(), "{r:?}");
                            continue;
                        }
                        match q.try_pop_for(Duration::from_millis(500)).unwrap() {
                            Some(v) => got.push(v),
                            None => break,
                        }
                    }
                    got
                })
            })
            .collect();
        consumers
            .into_iter()
            .map(|c| c.join().unwrap())
            .collect::<Vec<_>>()
    });
    let mut all: Vec<u64> = got.into_iter().flatten().collect();
    all.sort_unstable();
    let want: Vec<u64> = (0..PRODUCERS)
        .flat_map(|p| (0..PER).map(move |i| p << 32 | i))
        .collect();
    assert_eq!(all.len(), want.len());
    assert_eq!(all, want);
}

/// Finding 8. A value put back (here: a `pop_with` closure that panics;
/// alike for a consumer that dies) is claimed again after the values
/// claimed while it was out — the queue docs say so now — and is still
/// returned by exactly one pop.
///
/// FOUND: the docs promised that one producer's values are always claimed
/// in push order, which a put-back value breaks (one consumer received 2,
/// then 1). The docs were wrong; the behaviour is the documented one.
#[test]
fn a_put_back_value_is_claimed_after_the_values_claimed_while_it_was_out() {
    let q: &'static ShmQueue<u64, 4> = Box::leak(Box::new(ShmQueue::new()));
    q.push(1).unwrap();
    q.push(2).unwrap();
    let (claimed_tx, claimed_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let other = std::thread::spawn(move || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = q.pop_with(|_v| {
                claimed_tx.send(()).unwrap();
                go_rx.recv_timeout(Duration::from_secs(30)).unwrap();
                panic!("review: this consumer gives its value back");
            });
        }))
        .is_err()
    });
    claimed_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let mut mine = vec![q.try_pop_for(Duration::from_secs(5)).unwrap()];
    go_tx.send(()).unwrap();
    assert!(other.join().unwrap());
    mine.push(q.try_pop_for(Duration::from_secs(5)).unwrap());
    assert_eq!(
        mine,
        vec![Some(2), Some(1)],
        "the value put back comes after the one claimed while it was out"
    );
    assert_eq!(q.try_pop().unwrap(), None, "each value once");
}

/// Held up: writer exclusion and reader visibility with threads (data
/// written under the write lock is seen whole by readers).
#[test]
fn held_up_rwlock_threads_never_see_a_torn_pair() {
    #[derive(ShmSafe, Clone, Copy)]
    #[repr(C)]
    struct Pair {
        a: u64,
        b: u64,
    }
    let l: &'static ShmRwLock<Pair> = Box::leak(Box::new(ShmRwLock::new(Pair { a: 0, b: 0 })));
    let deadline = Instant::now() + Duration::from_millis(1500);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(move || {
                while Instant::now() < deadline {
                    let mut w = l.write().unwrap();
                    w.a += 1;
                    std::hint::spin_loop();
                    w.b += 1;
                }
            });
        }
        for _ in 0..2 {
            s.spawn(move || {
                while Instant::now() < deadline {
                    let r = l.read().unwrap();
                    assert_eq!(r.a, r.b, "torn pair under a read lock");
                }
            });
        }
    });
}

/// Held up: condvar notify_one with racing waiters — each notify under the
/// mutex releases one "ticket"; every ticket is taken, none twice, and no
/// waiter is left behind.
#[test]
fn held_up_condvar_tickets_with_racing_waiters() {
    #[derive(ShmSafe)]
    #[repr(C)]
    struct Box2 {
        m: ShmMutex<u64>,
        cv: ShmCondvar,
    }
    let b: &'static Box2 = Box::leak(Box::new(Box2 {
        m: ShmMutex::new(0),
        cv: ShmCondvar::new(),
    }));
    const WAITERS: usize = 4;
    const TICKETS: u64 = 2000;
    let taken = std::thread::scope(|s| {
        let ws: Vec<_> = (0..WAITERS)
            .map(|_| {
                s.spawn(move || {
                    let mut mine = 0u64;
                    loop {
                        let g = b.m.lock().unwrap();
                        let (mut g, _) =
                            b.cv.wait_timeout_while(g, Duration::from_millis(500), |t| *t == 0)
                                .unwrap();
                        if *g == 0 {
                            return mine;
                        }
                        *g -= 1;
                        mine += 1;
                    }
                })
            })
            .collect();
        for _ in 0..TICKETS {
            *b.m.lock().unwrap() += 1;
            b.cv.notify_one();
        }
        ws.into_iter().map(|w| w.join().unwrap()).sum::<u64>()
    });
    assert_eq!(taken, TICKETS);
}

/// Held up: plain semaphore permits are conserved under racing acquire and
/// release from many threads.
#[test]
fn held_up_semaphore_permits_are_conserved() {
    let s: &'static ShmSemaphore = Box::leak(Box::new(ShmSemaphore::new(3)));
    let inside: &'static AtomicU32 = Box::leak(Box::new(AtomicU32::new(0)));
    std::thread::scope(|sc| {
        for _ in 0..6 {
            sc.spawn(move || {
                for _ in 0..3000 {
                    s.acquire().unwrap();
                    let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    assert!(n <= 3, "{n} inside a 3-permit section");
                    inside.fetch_sub(1, Ordering::SeqCst);
                    s.release().unwrap();
                }
            });
        }
    });
    assert_eq!(s.available(), 3);
}

// ---------------------------------------------------------------------------
// 5. ShmMutex: a lock word naming no thread; panics while holding.
// ---------------------------------------------------------------------------

/// Finding 6. A store's mutex whose lock word names a thread that does not
/// exist (no one holds it: its bytes were overwritten) is
/// `Error::Corrupted` from `lock()`, not a hang (DESIGN.md: "a corrupted
/// segment ... gives a clear `Error`, never ... a hang").
///
/// FOUND: `lock()` was an untimed `pthread_mutex_lock`, which the kernel
/// only ends through the owner's robust list: it never returned. Now the
/// wait is sliced (100 ms) and the owner's existence checked between
/// slices.
#[test]
fn a_mutex_word_naming_no_thread_is_corruption_not_a_hang() {
    let t = Temp::new("mutex-ghost");
    let m = t
        .store
        .get_or_insert_with("m", || ShmMutex::new(0u64))
        .unwrap();
    // glibc's `__lock` (offset 0): the owner's thread id. 0x3fff_fff0 is
    // above every Linux pid_max (at most 2^22): no thread has it.
    word_at::<_, AtomicU32>(&*m, 0).store(0x3fff_fff0, Ordering::SeqCst);
    let timed = m
        .try_lock_for(Duration::from_millis(50))
        .map(|g| g.is_some());
    let store = t.store.clone();
    let locked = returns_within(Duration::from_secs(30), move || {
        let m = store.get::<ShmMutex<u64>>("m").unwrap();
        let t = Instant::now();
        let r = m.lock().map(|_| ());
        (format!("{r:?}"), t.elapsed())
    });
    let timed_long = m.try_lock_for(Duration::from_secs(20)).map(|g| g.is_some());
    // Let a stuck locker (if any) go: an OWNER_DIED word hands it the lock.
    word_at::<_, AtomicU32>(&*m, 0).store(0x4000_0000, Ordering::SeqCst);
    let _ = shmstore_futex_wake(&*m);
    // Too short for two looks at the owner: it timed out.
    assert!(matches!(timed, Ok(false)), "{timed:?}");
    let (locked, took) = locked.expect("lock() returned");
    assert!(
        locked.starts_with("Err(Corrupted") && locked.contains("does not exist"),
        "lock() on a mutex no thread holds: {locked} after {took:?}"
    );
    assert!(
        matches!(timed_long, Err(Error::Corrupted { .. })),
        "{timed_long:?}"
    );
}

/// Wakes sleepers on the mutex's lock word (so that a stuck `lock()` sees
/// the word the test wrote).
fn shmstore_futex_wake<T>(m: &T) -> i64 {
    // SAFETY: FUTEX_WAKE on the first 4 bytes of a live mutex (a shared
    // futex, as glibc's process-shared mutexes use).
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            m as *const T as *const u32,
            libc::FUTEX_WAKE,
            i32::MAX,
            core::ptr::null::<libc::timespec>(),
            core::ptr::null::<u32>(),
            0u32,
        )
    }
}

/// Finding 11. A writer that panics half-way through an update does not
/// silently hand torn data to the next reader: like `std`'s poisoning, and
/// like this crate does for a writer that dies, the data is marked
/// inconsistent and every later `read`/`write` (in any process) is
/// `Error::OwnerDied` until a `write_recover` holder repairs it and calls
/// `mark_consistent`. The same for a `ShmMutex` guard.
///
/// FOUND: the guard's `Drop` released the lock as if the update were
/// complete; the next `read()` got the torn pair with no report.
#[test]
fn a_writer_that_panics_half_way_is_reported_until_repaired() {
    #[derive(ShmSafe, Clone, Copy, Debug, PartialEq)]
    #[repr(C)]
    struct Pair {
        a: u64,
        b: u64,
    }
    let l = ShmRwLock::new(Pair { a: 0, b: 0 });
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut w = l.write().unwrap();
        w.a = 1;
        panic!("review: a writer panics half-way");
    }));
    assert!(r.is_err());
    let after = l.read().map(|g| *g);
    assert!(
        matches!(&after, Err(Error::OwnerDied { what }) if what.contains("ShmRwLock<Pair>")),
        "{after:?}"
    );
    assert!(matches!(
        l.write().map(|_| ()),
        Err(Error::OwnerDied { .. })
    ));
    let seen = l.read_recover().unwrap();
    assert!(seen.owner_died());
    assert_eq!(*seen, Pair { a: 1, b: 0 });
    drop(seen);
    let mut w = l.write_recover().unwrap();
    w.b = 1;
    w.mark_consistent();
    drop(w);
    assert_eq!(*l.read().unwrap(), Pair { a: 1, b: 1 });

    let t = Temp::new("mutex-panic");
    let m = t
        .store
        .get_or_insert_with("m", || ShmMutex::new(Pair { a: 0, b: 0 }))
        .unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut g = m.lock().unwrap();
        g.a = 1;
        panic!("review: a holder panics half-way");
    }));
    assert!(r.is_err());
    let after = m.lock().map(|g| *g);
    assert!(
        matches!(&after, Err(Error::OwnerDied { what }) if what.contains("\"m\"")),
        "{after:?}"
    );
    let mut g = m.lock_recover().unwrap();
    assert_eq!(*g, Pair { a: 1, b: 0 });
    g.b = 1;
    g.mark_consistent();
    drop(g);
    assert_eq!(*m.lock().unwrap(), Pair { a: 1, b: 1 });
}
