//! Host tests over ordinary memory: edges, wrap-around, many threads, hostile peers.

mod doorbell;
mod edges;
mod hostile;
mod stress;

use crate::wire::{RING_HEADER_SIZE, WORD};
use crate::{ChannelMemory, Receiver, Sender};
use std::sync::atomic::{AtomicU64, Ordering};

/// Acknowledgement area size used by the tests (as in a sandbox).
pub const ACK_LEN: usize = 4096;

/// `native` normally, `miri` under Miri (which runs a thousand times slower).
pub const fn scale(native: usize, miri: usize) -> usize {
    if cfg!(miri) {
        miri
    } else {
        native
    }
}

/// Channel memory on the heap, accessed only atomically (as the crate requires).
pub struct TestChannel {
    data: Box<[AtomicU64]>,
    ack: Box<[AtomicU64]>,
}

impl TestChannel {
    /// A zeroed channel whose ring holds `ring_bytes` bytes (a word multiple).
    pub fn with_ring(ring_bytes: usize) -> Self {
        assert_eq!(ring_bytes % WORD, 0);
        Self::with_data_len(RING_HEADER_SIZE + ring_bytes)
    }

    /// A zeroed channel with a `data_len`-byte data area.
    pub fn with_data_len(data_len: usize) -> Self {
        let words = |n: usize| (0..n.div_ceil(WORD)).map(|_| AtomicU64::new(0)).collect();
        Self {
            data: words(data_len),
            ack: words(ACK_LEN),
        }
    }

    pub fn memory(&self) -> ChannelMemory {
        ChannelMemory {
            data: self.data.as_ptr() as *mut u8,
            data_len: self.data.len() * WORD,
            ack: self.ack.as_ptr() as *mut u8,
            ack_len: self.ack.len() * WORD,
        }
    }

    /// A sender and a receiver over this memory. They must not outlive `self` (the tests
    /// drop them, or join the threads using them, before the channel).
    pub fn pair(&self) -> (Sender, Receiver) {
        (self.sender(), self.receiver())
    }

    pub fn sender(&self) -> Sender {
        // SAFETY: the memory is ours, live while `self` is (callers keep endpoints within
        // that), aligned, accessed only atomically; each test uses one sender per channel.
        unsafe { Sender::from_memory(self.memory()) }.unwrap()
    }

    pub fn receiver(&self) -> Receiver {
        // SAFETY: as in `sender`, with one receiver per channel.
        unsafe { Receiver::from_memory(self.memory()) }.unwrap()
    }

    /// A hostile writer's scribbles.
    pub fn set_write_index(&self, v: u64) {
        self.data[0].store(v, Ordering::Release);
    }
    pub fn write_index(&self) -> u64 {
        self.data[0].load(Ordering::Acquire)
    }
    pub fn set_ring_word(&self, i: usize, v: u64) {
        self.data[RING_HEADER_SIZE / WORD + i].store(v, Ordering::Release);
    }
    /// A hostile reader's scribble.
    pub fn set_read_index(&self, v: u64) {
        self.ack[0].store(v, Ordering::Release);
    }
    pub fn read_index(&self) -> u64 {
        self.ack[0].load(Ordering::Acquire)
    }
    pub fn reader_sleep(&self) -> u64 {
        self.ack[crate::wire::READER_SLEEP_OFFSET / WORD].load(Ordering::Acquire)
    }
    pub fn writer_sleep(&self) -> u64 {
        self.data[crate::wire::WRITER_SLEEP_OFFSET / WORD].load(Ordering::Acquire)
    }
}

/// A small deterministic generator (xorshift64*), so failures replay.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Deterministic payload byte `j` of message `seq`.
pub fn pattern(seq: u64, j: usize) -> u8 {
    (seq.wrapping_mul(0x9e37_79b9).wrapping_add(j as u64 * 131) >> 3) as u8
}
