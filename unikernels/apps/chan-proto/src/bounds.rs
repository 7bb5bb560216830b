//! The traffic of `partition-manifests/bounds.toml`, shared by the bare (`bounds-probe`)
//! and the Hermit (`bounds-std`) endpoints: writers that keep the promise their channel
//! declares (a burst size, a least interval, long pauses) and readers that behave as their
//! channel's `reader_mode` says (spinning, polling every period, sleeping on a doorbell).
//!
//! Messages are 64 B to 4 KiB, numbered and checksummed ([`crate::verify_len`]); every
//! eighth burst is all 4 KiB so that the queue a bound allows for is really reached. The
//! channel library measures each message's latency itself (in the reader's ack area); the
//! monitor reports it and `quest-build run --check-bounds` compares it with the bound.

use crate::{fill, mix, verify_len, MAX_LEN};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use quest_channel::{Doorbell, Receiver, Sender};

/// Shortest message.
pub const MIN_LEN: usize = 64;

/// Reads the time-stamp counter (the clock each endpoint has on its own core).
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the counter; the monitor does not trap it (CR4.TSD is 0).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Spins until the TSC reaches `deadline`.
pub fn wait_until(deadline: u64) {
    while rdtsc() < deadline {
        core::hint::spin_loop();
    }
}

/// Length of message `seq` of stream `seed`: uniform in 64 B..=4 KiB, or 4 KiB when `max`.
pub fn length(seed: u64, seq: u64, max: bool) -> usize {
    if max {
        return MAX_LEN;
    }
    MIN_LEN + (mix(seed ^ seq.wrapping_mul(0x9e37_79b9)) % (MAX_LEN - MIN_LEN + 1) as u64) as usize
}

/// How a writer spaces its messages (each the promise its channel declares).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writer {
    /// `burst` messages back to back, then wait until the reader has taken all of them.
    Burst(u64),
    /// Sends at least this many cycles apart.
    Steady(u64),
    /// A pause of this many cycles before each message (the reader falls asleep).
    Rare(u64),
}

/// How a reader looks for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reader {
    /// `recv` in a loop (spinning, or sleeping if the receiver has a doorbell).
    Blocking,
    /// Every `period` cycles, drain the ring; with `overrun_every = n > 0`, every n-th look
    /// comes three periods late (a reader that breaks its declared period).
    Poll {
        /// Cycles between two looks.
        period: u64,
        /// Break the period every this many looks (0: never).
        overrun_every: u64,
    },
}

/// Sends `count` messages of stream `seed` the way `how` says; what it did, in words.
pub fn write<D: Doorbell>(
    tx: &mut Sender<D>,
    seed: u64,
    count: u64,
    how: Writer,
) -> Result<String, String> {
    let mut buf = vec![0u8; MAX_LEN];
    let mut last = 0u64;
    // The reader honours its mode only once it runs: a Hermit reader starts later than a
    // bare writer, and a message waiting for that would measure the boot, not the channel.
    while !tx.reader_opened() {
        core::hint::spin_loop();
    }
    for seq in 0..count {
        let max = match how {
            Writer::Burst(b) => (seq / b.max(1)) % 8 == 7,
            _ => false,
        };
        match how {
            Writer::Burst(b) if seq % b.max(1) == 0 => {
                // The burst before this one must be taken before a new one starts.
                while tx.unread().map_err(|e| format!("message {seq}: {e}"))? != 0 {
                    core::hint::spin_loop();
                }
            }
            Writer::Steady(interval) if seq > 0 => wait_until(last.saturating_add(interval)),
            Writer::Rare(pause) => wait_until(rdtsc().saturating_add(pause)),
            _ => {}
        }
        let len = length(seed, seq, max);
        fill(seed, seq, &mut buf[..len]);
        last = rdtsc();
        tx.send(&buf[..len])
            .map_err(|e| format!("message {seq}: {e}"))?;
    }
    Ok(format!("{count} messages sent ({how:?})"))
}

/// Receives and verifies `count` messages of stream `seed`; what it did, in words.
pub fn read<D: Doorbell>(
    rx: &mut Receiver<D>,
    seed: u64,
    count: u64,
    how: Reader,
) -> Result<String, String> {
    let mut buf = vec![0u8; MAX_LEN];
    // The length travels with the message; its sequence number and checksum are checked.
    let check = |seq: u64, n: usize, buf: &[u8]| {
        verify_len(seed, seq, n, &buf[..n]).map_err(|e| format!("message {seq}: {e}"))
    };
    let mut seq = 0u64;
    match how {
        Reader::Blocking => {
            while seq < count {
                let n = rx
                    .recv(&mut buf)
                    .map_err(|e| format!("message {seq}: {e}"))?;
                check(seq, n, &buf)?;
                seq += 1;
            }
            Ok(format!("{count} messages verified"))
        }
        Reader::Poll {
            period,
            overrun_every,
        } => {
            let mut looks = 0u64;
            let mut next = rdtsc();
            while seq < count {
                looks += 1;
                if looks.checked_rem(overrun_every) == Some(0) {
                    next = next.saturating_add(3 * period);
                }
                wait_until(next);
                while seq < count {
                    match rx.try_recv(&mut buf) {
                        Ok(Some(n)) => {
                            check(seq, n, &buf)?;
                            seq += 1;
                        }
                        Ok(None) => break,
                        Err(e) => return Err(format!("message {seq}: {e}")),
                    }
                }
                next = next.saturating_add(period);
            }
            Ok(format!("{count} messages verified in {looks} looks"))
        }
    }
}
