//! The sleep protocol: endpoints that sleep through a doorbell are always woken.

use super::{scale, TestChannel};
use crate::Doorbell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A core's pending-doorbell flag, as the monitor keeps it for each vCPU.
#[derive(Default)]
struct Event {
    pending: Mutex<bool>,
    cv: Condvar,
}

/// What the two doorbells of a pair did.
#[derive(Default)]
struct Counts {
    waits: AtomicUsize,
    rings: AtomicUsize,
    /// Waits that timed out.
    lost: AtomicUsize,
}

impl Counts {
    fn waits(&self) -> usize {
        self.waits.load(Ordering::Relaxed)
    }
    fn rings(&self) -> usize {
        self.rings.load(Ordering::Relaxed)
    }
    fn lost(&self) -> usize {
        self.lost.load(Ordering::Relaxed)
    }
}

/// A doorbell between two threads: `ring` sets the peer's event, `wait` takes our own.
/// A wait that times out counts as a lost wake-up.
struct ThreadBell {
    mine: Arc<Event>,
    peer: Arc<Event>,
    counts: Arc<Counts>,
}

impl ThreadBell {
    /// The writer's and the reader's doorbell, and what they did.
    fn pair() -> (Self, Self, Arc<Counts>) {
        let (a, b) = (Arc::new(Event::default()), Arc::new(Event::default()));
        let counts = Arc::new(Counts::default());
        let one = Self {
            mine: a.clone(),
            peer: b.clone(),
            counts: counts.clone(),
        };
        let other = Self {
            mine: b,
            peer: a,
            counts: counts.clone(),
        };
        (one, other, counts)
    }
}

impl Doorbell for ThreadBell {
    fn ring(&self, _directory_index: usize) {
        self.counts.rings.fetch_add(1, Ordering::Relaxed);
        *self.peer.pending.lock().unwrap() = true;
        self.peer.cv.notify_one();
    }

    fn wait(&self) {
        self.counts.waits.fetch_add(1, Ordering::Relaxed);
        let pending = self.mine.pending.lock().unwrap();
        let (mut pending, timeout) = self
            .mine
            .cv
            .wait_timeout_while(pending, Duration::from_secs(20), |p| !*p)
            .unwrap();
        if timeout.timed_out() {
            self.counts.lost.fetch_add(1, Ordering::Relaxed);
        }
        *pending = false;
    }
}

#[test]
fn sleeping_endpoints_are_always_woken() {
    let ch = TestChannel::with_ring(64);
    let (bell_tx, bell_rx, counts) = ThreadBell::pair();
    let mut tx = ch.sender().with_doorbell(bell_tx).with_spin_limit(2);
    let mut rx = ch.receiver().with_doorbell(bell_rx).with_spin_limit(2);
    let count = scale(100_000, 200) as u64;
    std::thread::scope(|s| {
        s.spawn(|| {
            for seq in 0..count {
                tx.send(&seq.to_le_bytes()[..(seq % 9) as usize]).unwrap();
                if seq % 1000 == 0 {
                    // Let the reader fall asleep on an empty ring now and then.
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        });
        s.spawn(|| {
            let mut buf = [0u8; 8];
            for seq in 0..count {
                let len = rx.recv(&mut buf).unwrap();
                assert_eq!(len, (seq % 9) as usize);
                assert_eq!(&buf[..len], &seq.to_le_bytes()[..len]);
            }
        });
    });
    assert_eq!(counts.lost(), 0, "a wake-up was lost");
    assert!(counts.waits() > 0, "nobody ever slept");
    assert!(counts.rings() > 0);
    let announced = ch.reader_sleep() + ch.writer_sleep();
    assert!(
        counts.rings() as u64 <= announced,
        "one ring per announced sleep at most"
    );
}

#[test]
fn a_reader_asleep_before_the_first_message_is_woken_by_it() {
    let ch = TestChannel::with_ring(64);
    let (bell_tx, bell_rx, counts) = ThreadBell::pair();
    let mut rx = ch.receiver().with_doorbell(bell_rx).with_spin_limit(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut buf = [0u8; 8];
            assert_eq!(rx.recv(&mut buf), Ok(5));
            assert_eq!(&buf[..5], b"hello");
        });
        // Wait until the reader has announced its sleep, then open the writer.
        while ch.reader_sleep() == 0 {
            std::thread::yield_now();
        }
        let mut tx = ch.sender().with_doorbell(bell_tx);
        tx.send(b"hello").unwrap();
    });
    assert_eq!(counts.lost(), 0);
    assert_eq!(counts.rings(), 1);
}
