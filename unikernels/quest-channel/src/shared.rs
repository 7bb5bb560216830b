//! The one place that touches channel memory: a checked view of a data area and an
//! acknowledgement area, accessed only through `AtomicU64`.
//!
//! The peer runs on another core, possibly in another VM, possibly hostile, so no Rust
//! reference to plain bytes of shared memory is ever formed. Every access is an atomic
//! 64-bit load or store of an aligned word: that is never a data race whatever the peer
//! does (a torn or stale value is just a wrong value, which the endpoints validate), and a
//! plain `mov` on x86-64, so it costs nothing over an ordinary copy per word.

use crate::error::LayoutError;
use crate::wire::{
    ring_size, ACK_AREA_MIN, MIN_RING_SIZE, READER_SLEEP_OFFSET, READ_INDEX_OFFSET,
    RING_HEADER_SIZE, WORD, WRITER_SLEEP_OFFSET, WRITE_INDEX_OFFSET,
};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

/// Where a channel's two areas are, as this endpoint sees them.
///
/// Built by [`crate::Directory`] lookups, or by hand for memory the caller manages (tests,
/// other runtimes); turning it into an endpoint is `unsafe` because nothing here can check
/// that the pointers name real, live memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelMemory {
    /// Start of the data area (8-byte aligned; page-aligned in a sandbox).
    pub data: *mut u8,
    /// Size of the data area in bytes.
    pub data_len: usize,
    /// Start of the acknowledgement area (8-byte aligned).
    pub ack: *mut u8,
    /// Size of the acknowledgement area in bytes.
    pub ack_len: usize,
}

/// A checked view of one channel's memory. Invariants (established by [`Shared::new`]):
/// `data` and `ack` point to live, 8-byte aligned memory of at least
/// `RING_HEADER_SIZE + ring_words * WORD` and `ACK_AREA_MIN` bytes, which does not
/// overlap and stays valid for as long as this value exists; `ring_words >= 2`.
#[derive(Debug)]
pub(crate) struct Shared {
    data: NonNull<AtomicU64>,
    ack: NonNull<AtomicU64>,
    ring_words: usize,
}

// SAFETY: `Shared` is a pair of pointers to memory that outlives it (constructor contract)
// and is only ever accessed through atomic operations, which are sound from any thread.
unsafe impl Send for Shared {}

impl Shared {
    /// Checks `mem` and builds the view.
    ///
    /// # Safety
    /// `mem.data` must be valid for `mem.data_len` bytes and `mem.ack` for `mem.ack_len`
    /// bytes for as long as the returned value (and any endpoint built from it) exists, and
    /// that memory must only ever be accessed with aligned atomic operations (by anyone:
    /// this endpoint, its peer, the tests). The area this endpoint writes (data for a
    /// sender, ack for a receiver) must be writable; the other one need only be readable.
    pub(crate) unsafe fn new(mem: ChannelMemory) -> Result<Self, LayoutError> {
        let data = NonNull::new(mem.data).ok_or(LayoutError::Null)?;
        let ack = NonNull::new(mem.ack).ok_or(LayoutError::Null)?;
        if (data.as_ptr() as usize) % WORD != 0 || (ack.as_ptr() as usize) % WORD != 0 {
            return Err(LayoutError::Misaligned);
        }
        let ring = ring_size(mem.data_len);
        if ring < MIN_RING_SIZE {
            return Err(LayoutError::DataTooSmall { len: mem.data_len });
        }
        if mem.ack_len < ACK_AREA_MIN {
            return Err(LayoutError::AckTooSmall { len: mem.ack_len });
        }
        let data_start = data.as_ptr() as usize;
        let ack_start = ack.as_ptr() as usize;
        let data_end = data_start
            .checked_add(mem.data_len)
            .ok_or(LayoutError::Overlap)?;
        let ack_end = ack_start
            .checked_add(mem.ack_len)
            .ok_or(LayoutError::Overlap)?;
        if data_start < ack_end && ack_start < data_end {
            return Err(LayoutError::Overlap);
        }
        Ok(Self {
            data: data.cast(),
            ack: ack.cast(),
            ring_words: ring / WORD,
        })
    }

    /// Words in the ring.
    pub(crate) fn ring_words(&self) -> usize {
        self.ring_words
    }

    /// Bytes in the ring.
    pub(crate) fn ring_bytes(&self) -> u64 {
        (self.ring_words * WORD) as u64
    }

    /// The word at byte `offset` of the data area.
    fn data_word(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset % WORD == 0 && offset < RING_HEADER_SIZE);
        // SAFETY: only called with the header offsets from `wire`, which are word-aligned
        // and below RING_HEADER_SIZE, inside the data area (invariant); the memory lives as
        // long as `self` and is only accessed atomically, so a shared `&AtomicU64` is fine.
        unsafe { &*self.data.as_ptr().add(offset / WORD) }
    }

    /// The word at byte `offset` of the acknowledgement area.
    fn ack_word(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset % WORD == 0 && offset < ACK_AREA_MIN);
        // SAFETY: only called with the ack offsets from `wire`, word-aligned and below
        // ACK_AREA_MIN <= the ack area's length (invariant); accessed only atomically.
        unsafe { &*self.ack.as_ptr().add(offset / WORD) }
    }

    /// The writer's index (data area).
    pub(crate) fn write_index(&self) -> &AtomicU64 {
        self.data_word(WRITE_INDEX_OFFSET)
    }

    /// The writer's sleep counter (data area).
    pub(crate) fn writer_sleep(&self) -> &AtomicU64 {
        self.data_word(WRITER_SLEEP_OFFSET)
    }

    /// The reader's index (acknowledgement area).
    pub(crate) fn read_index(&self) -> &AtomicU64 {
        self.ack_word(READ_INDEX_OFFSET)
    }

    /// Word `i` of the reader's latency statistics (acknowledgement area).
    pub(crate) fn stats_word(&self, i: usize) -> &AtomicU64 {
        self.ack_word(crate::wire::STATS_OFFSET + i * WORD)
    }

    /// The reader's sleep counter (acknowledgement area).
    pub(crate) fn reader_sleep(&self) -> &AtomicU64 {
        self.ack_word(READER_SLEEP_OFFSET)
    }

    /// Ring word `i`.
    ///
    /// # Safety
    /// `i < self.ring_words`.
    unsafe fn ring_word(&self, i: usize) -> &AtomicU64 {
        debug_assert!(i < self.ring_words);
        // SAFETY: the ring starts RING_HEADER_SIZE (a word multiple) bytes into the data
        // area and has `ring_words` words inside it (invariant); the caller keeps
        // `i < ring_words`.
        unsafe { &*self.data.as_ptr().add(RING_HEADER_SIZE / WORD + i) }
    }

    /// The ring word a byte index (as the indices count) falls on.
    pub(crate) fn word_of(&self, index: u64) -> usize {
        // The remainder is < ring_words, which is a usize, so the cast is lossless.
        ((index / WORD as u64) % self.ring_words as u64) as usize
    }

    /// `i` reduced into the ring (no division on the usual, already reduced path).
    fn reduce(&self, i: usize) -> usize {
        if i < self.ring_words {
            i
        } else {
            i % self.ring_words
        }
    }

    /// Loads ring word `i % ring_words` (Relaxed: ordered by the Acquire load of the
    /// peer's index that made it visible).
    pub(crate) fn load_ring(&self, i: usize) -> u64 {
        let i = self.reduce(i);
        // SAFETY: i < ring_words after the remainder.
        unsafe { self.ring_word(i) }.load(Ordering::Relaxed)
    }

    /// Stores ring word `i % ring_words` (Relaxed: published by the Release store of the
    /// writer's index).
    pub(crate) fn store_ring(&self, i: usize, value: u64) {
        let i = self.reduce(i);
        // SAFETY: i < ring_words after the remainder.
        unsafe { self.ring_word(i) }.store(value, Ordering::Relaxed)
    }

    /// Copies `dst.len()` bytes out of the ring, starting at word `start` and wrapping at
    /// the end of the ring: one atomic load per word, never outside the ring.
    pub(crate) fn copy_out(&self, start: usize, dst: &mut [u8]) {
        let mut i = self.reduce(start);
        let mut chunks = dst.chunks_exact_mut(WORD);
        for chunk in &mut chunks {
            // SAFETY: i < ring_words: it starts reduced and wraps to 0 when it reaches it.
            let word = unsafe { self.ring_word(i) }.load(Ordering::Relaxed);
            chunk.copy_from_slice(&word.to_le_bytes());
            i += 1;
            if i == self.ring_words {
                i = 0;
            }
        }
        let tail = chunks.into_remainder();
        if !tail.is_empty() {
            // SAFETY: as above.
            let word = unsafe { self.ring_word(i) }.load(Ordering::Relaxed);
            tail.copy_from_slice(&word.to_le_bytes()[..tail.len()]);
        }
    }

    /// Copies `src` into the ring, starting at word `start` and wrapping at the end of the
    /// ring; the last word is zero-padded. One atomic store per word.
    pub(crate) fn copy_in(&self, start: usize, src: &[u8]) {
        let mut i = self.reduce(start);
        let mut chunks = src.chunks_exact(WORD);
        for chunk in &mut chunks {
            let mut word = [0u8; WORD];
            word.copy_from_slice(chunk);
            // SAFETY: i < ring_words: it starts reduced and wraps to 0 when it reaches it.
            unsafe { self.ring_word(i) }.store(u64::from_le_bytes(word), Ordering::Relaxed);
            i += 1;
            if i == self.ring_words {
                i = 0;
            }
        }
        let tail = chunks.remainder();
        if !tail.is_empty() {
            let mut word = [0u8; WORD];
            word[..tail.len()].copy_from_slice(tail);
            // SAFETY: as above.
            unsafe { self.ring_word(i) }.store(u64::from_le_bytes(word), Ordering::Relaxed);
        }
    }
}
