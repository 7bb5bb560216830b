//! A writer thread and a reader thread, many messages of random sizes with sequence
//! numbers and checksums, random yields: everything arrives, once, in order, intact.

use super::{pattern, scale, Rng, TestChannel};
use crate::{Doorbell, SendError};

/// "Sleeps" by yielding the thread: the tests run more threads than this machine may have
/// free cores, and a pure spinner would wait for its peer's whole time slice.
struct YieldBell;

impl Doorbell for YieldBell {
    fn ring(&self, _directory_index: usize) {}
    fn wait(&self) {
        std::thread::yield_now();
    }
}

/// FNV-1a: the checksum carried in each message's last 8 bytes.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Length of message `seq`: mostly small, now and then anything up to `max` (at least 16
/// for the sequence number and checksum). Both threads compute it, so a truncated or
/// merged message is caught.
fn length(seq: u64, max: usize) -> usize {
    let r = Rng::new(seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5555).next();
    let span = if r % 8 == 0 {
        max - 16
    } else {
        48.min(max - 16)
    };
    16 + ((r >> 8) % (span as u64 + 1)) as usize
}

fn build(seq: u64, len: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend((8..len - 8).map(|j| pattern(seq, j)));
    let sum = checksum(out);
    out.extend_from_slice(&sum.to_le_bytes());
}

/// Runs `count` messages through a ring of `ring` bytes. `blocking` uses send/recv
/// (spinning a little, then yielding), otherwise try_send/try_recv with yields when full
/// or empty.
fn run(ring: usize, count: u64, seed: u64, blocking: bool) {
    let ch = TestChannel::with_ring(ring);
    let mut tx = ch.sender().with_doorbell(YieldBell).with_spin_limit(64);
    let mut rx = ch.receiver().with_doorbell(YieldBell).with_spin_limit(64);
    let max = tx.max_message_len();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut rng = Rng::new(seed);
            let mut msg = Vec::with_capacity(max);
            for seq in 0..count {
                build(seq, length(seq, max), &mut msg);
                if blocking {
                    tx.send(&msg).unwrap();
                } else {
                    loop {
                        match tx.try_send(&msg) {
                            Ok(()) => break,
                            Err(SendError::Full) => std::thread::yield_now(),
                            Err(e) => panic!("send {seq}: {e}"),
                        }
                    }
                }
                if rng.next() % 32 == 0 {
                    std::thread::yield_now();
                }
            }
        });
        s.spawn(|| {
            let mut rng = Rng::new(seed ^ 0xdead_beef);
            let mut buf = vec![0u8; max];
            for seq in 0..count {
                let len = if blocking {
                    rx.recv(&mut buf).unwrap()
                } else {
                    loop {
                        match rx.try_recv(&mut buf).unwrap() {
                            Some(len) => break len,
                            None => std::thread::yield_now(),
                        }
                    }
                };
                assert_eq!(len, length(seq, max), "message {seq}: length");
                let got_seq = u64::from_le_bytes(buf[..8].try_into().unwrap());
                assert_eq!(got_seq, seq, "lost or duplicated message");
                let sum = u64::from_le_bytes(buf[len - 8..len].try_into().unwrap());
                assert_eq!(sum, checksum(&buf[..len - 8]), "message {seq}: checksum");
                if rng.next() % 32 == 0 {
                    std::thread::yield_now();
                }
            }
        });
    });
    let mut buf = vec![0u8; max];
    assert_eq!(rx.try_recv(&mut buf), Ok(None), "nothing left over");
    assert_eq!(ch.write_index(), ch.read_index());
}

#[test]
fn a_page_sized_ring_under_two_threads() {
    run(4096 - 128, scale(1_000_000, 300) as u64, 1, true);
}

#[test]
fn a_tiny_ring_under_constant_backpressure() {
    run(64, scale(500_000, 300) as u64, 2, true);
}

#[test]
fn polling_endpoints_with_yields() {
    run(1024, scale(500_000, 300) as u64, 3, false);
}

#[test]
fn pure_spinners_get_there_too() {
    // The default endpoints never yield: keep the count low for busy machines.
    let ch = TestChannel::with_ring(256);
    let (mut tx, mut rx) = ch.pair();
    let count = scale(20_000, 100) as u64;
    std::thread::scope(|s| {
        s.spawn(|| {
            for seq in 0..count {
                tx.send(&seq.to_le_bytes()).unwrap();
            }
        });
        s.spawn(|| {
            let mut buf = [0u8; 8];
            for seq in 0..count {
                assert_eq!(rx.recv(&mut buf), Ok(8));
                assert_eq!(u64::from_le_bytes(buf), seq);
            }
        });
    });
}

#[test]
fn an_odd_sized_ring_wraps_at_odd_places() {
    // Not a power of two: indices map to the ring by remainder.
    run(8 * 37, scale(300_000, 300) as u64, 4, true);
}
