//! Per-channel latency statistics: what a channel's reader records about every message
//! it receives, in its own acknowledgement area, and what the monitor reads back and
//! reports when the run ends (`quest-build run --check-bounds` compares it with the
//! channel's bound).
//!
//! Every message carries its writer's TSC at the moment it was written into the ring; the
//! reader converts it into its own clock (the calibrated offset between the two cores) and
//! records the cycles from there to the return of `recv`. The block lives at
//! [`STATS_OFFSET`] in the acknowledgement area (only the reader writes it; the writer and
//! the monitor only read), as little-endian `u64` words:
//!
//! ```text
//! +0   STATS_MAGIC            written once, when the reader opens the channel
//! +8   messages               messages received
//! +16  worst                  largest latency, cycles
//! +24  total                  sum of latencies (wrapping), cycles
//! +32  early                  messages stamped later than received (clock skew, or a
//!                             writer that lies); counted with latency 0
//! +40  buckets[BUCKETS]       buckets[i]: latencies with i significant bits
//!                             (0, 1, 2-3, 4-7, ... 2^62-2^63-1, then >= 2^63)
//! ```
//!
//! Nothing here is trusted by the monitor: a reader can write what it likes into its own
//! area, which only misreports its own channel. [`Latency::read`] checks the magic and that
//! the buckets add up to `messages`.

/// Byte offset of the statistics block in the acknowledgement area (its own cache lines,
/// after the read index and the reader's sleep counter).
pub const STATS_OFFSET: usize = 256;
/// `"QLAT"` and version 1.
pub const STATS_MAGIC: u64 = u32::from_le_bytes(*b"QLAT") as u64 | 1 << 32;
/// Histogram buckets (one per bit length of a `u64`, plus zero).
pub const BUCKETS: usize = 65;
/// Word offsets in the block.
pub const MAGIC_WORD: usize = 0;
/// Messages received.
pub const MESSAGES_WORD: usize = 1;
/// Worst latency.
pub const WORST_WORD: usize = 2;
/// Sum of latencies.
pub const TOTAL_WORD: usize = 3;
/// Messages stamped in the future.
pub const EARLY_WORD: usize = 4;
/// First bucket.
pub const BUCKET_WORD: usize = 5;
/// Bytes of the block.
pub const STATS_SIZE: usize = (BUCKET_WORD + BUCKETS) * 8;

const _: () = assert!(STATS_OFFSET + STATS_SIZE <= crate::layout::CHANNEL_ACK_SIZE as usize);

/// The bucket a latency falls in: its number of significant bits.
pub const fn bucket(cycles: u64) -> usize {
    (u64::BITS - cycles.leading_zeros()) as usize
}

/// The smallest latency bucket `i` holds (0 for bucket 0).
pub const fn bucket_floor(i: usize) -> u64 {
    if i == 0 {
        0
    } else {
        1 << (i - 1)
    }
}

/// A reader's statistics, as read back from its acknowledgement area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Latency {
    /// Messages received.
    pub messages: u64,
    /// Largest latency, cycles.
    pub worst: u64,
    /// Sum of latencies, cycles (wrapping).
    pub total: u64,
    /// Messages stamped later than received.
    pub early: u64,
    /// Latencies by significant bits.
    pub buckets: [u64; BUCKETS],
}

/// Why a statistics block is not usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LatencyError {
    /// The reader never opened the channel (or wrote over the magic).
    NotRecorded,
    /// The buckets do not add up to the message count, or the worst is in no bucket.
    Inconsistent,
}

impl core::fmt::Display for LatencyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::NotRecorded => "no latency recorded",
            Self::Inconsistent => "inconsistent latency statistics",
        })
    }
}

impl Latency {
    /// Reads and checks a block through `word(i)`, the `i`th word of the block.
    pub fn read(word: impl Fn(usize) -> u64) -> Result<Self, LatencyError> {
        if word(MAGIC_WORD) != STATS_MAGIC {
            return Err(LatencyError::NotRecorded);
        }
        let mut buckets = [0u64; BUCKETS];
        for (i, b) in buckets.iter_mut().enumerate() {
            *b = word(BUCKET_WORD + i);
        }
        let s = Self {
            messages: word(MESSAGES_WORD),
            worst: word(WORST_WORD),
            total: word(TOTAL_WORD),
            early: word(EARLY_WORD),
            buckets,
        };
        let sum = buckets.iter().try_fold(0u64, |a, &b| a.checked_add(b));
        let worst_counted = s.messages == 0 || buckets[bucket(s.worst)] > 0;
        let above_worst = buckets[bucket(s.worst) + 1..].iter().any(|&b| b > 0);
        if sum != Some(s.messages) || !worst_counted || above_worst {
            return Err(LatencyError::Inconsistent);
        }
        Ok(s)
    }

    /// Records one latency into a block through `load`/`store` of its words (the
    /// reader's side; the block is its own, so plain read-modify-write is enough).
    pub fn record(cycles: u64, load: impl Fn(usize) -> u64, store: impl Fn(usize, u64)) {
        store(MESSAGES_WORD, load(MESSAGES_WORD).wrapping_add(1));
        if cycles > load(WORST_WORD) {
            store(WORST_WORD, cycles);
        }
        store(TOTAL_WORD, load(TOTAL_WORD).wrapping_add(cycles));
        let b = BUCKET_WORD + bucket(cycles);
        store(b, load(b).wrapping_add(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::RefCell;

    #[test]
    fn buckets_by_significant_bits() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1), 1);
        assert_eq!(bucket(3), 2);
        assert_eq!(bucket(4), 3);
        assert_eq!(bucket(u64::MAX), 64);
        for i in 1..BUCKETS {
            assert_eq!(bucket(bucket_floor(i)), i);
        }
    }

    #[test]
    fn recorded_blocks_read_back_and_lies_are_refused() {
        let words = RefCell::new([0u64; STATS_SIZE / 8]);
        let load = |i: usize| words.borrow()[i];
        let store = |i: usize, v: u64| words.borrow_mut()[i] = v;
        assert_eq!(Latency::read(load), Err(LatencyError::NotRecorded));
        store(MAGIC_WORD, STATS_MAGIC);
        assert_eq!(Latency::read(load).map(|l| l.messages), Ok(0));
        for c in [5u64, 900, 17, 900, 0] {
            Latency::record(c, load, store);
        }
        let l = Latency::read(load).expect("consistent");
        assert_eq!((l.messages, l.worst, l.total), (5, 900, 1822));
        assert_eq!(l.buckets[bucket(900)], 2);
        // A worst no bucket holds, or buckets that do not add up, are refused.
        store(WORST_WORD, 5000);
        assert_eq!(Latency::read(load), Err(LatencyError::Inconsistent));
        store(WORST_WORD, 900);
        store(MESSAGES_WORD, 4);
        assert_eq!(Latency::read(load), Err(LatencyError::Inconsistent));
    }
}
