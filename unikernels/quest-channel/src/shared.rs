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
    /// `wire::max_message_len` of this ring (computed once: it is on every send's path).
    max_message: usize,
}

/// Words of the reader's latency statistics block.
pub(crate) const STATS_WORDS: usize = quest_abi::latency::STATS_SIZE / WORD;

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
            max_message: crate::wire::max_message_len(RING_HEADER_SIZE + ring),
        })
    }

    /// Largest message the ring carries.
    #[inline]
    pub(crate) fn max_message(&self) -> usize {
        self.max_message
    }

    /// Bytes in the ring.
    #[inline]
    pub(crate) fn ring_bytes(&self) -> u64 {
        (self.ring_words * WORD) as u64
    }

    /// The word at byte `offset` of the data area.
    #[inline]
    fn data_word(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset % WORD == 0 && offset < RING_HEADER_SIZE);
        // SAFETY: only called with the header offsets from `wire`, which are word-aligned
        // and below RING_HEADER_SIZE, inside the data area (invariant); the memory lives as
        // long as `self` and is only accessed atomically, so a shared `&AtomicU64` is fine.
        unsafe { &*self.data.as_ptr().add(offset / WORD) }
    }

    /// The word at byte `offset` of the acknowledgement area.
    #[inline]
    fn ack_word(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset % WORD == 0 && offset < ACK_AREA_MIN);
        // SAFETY: only called with the ack offsets from `wire`, word-aligned and below
        // ACK_AREA_MIN <= the ack area's length (invariant); accessed only atomically.
        unsafe { &*self.ack.as_ptr().add(offset / WORD) }
    }

    /// The writer's index (data area).
    #[inline]
    pub(crate) fn write_index(&self) -> &AtomicU64 {
        self.data_word(WRITE_INDEX_OFFSET)
    }

    /// The writer's sleep counter (data area).
    #[inline]
    pub(crate) fn writer_sleep(&self) -> &AtomicU64 {
        self.data_word(WRITER_SLEEP_OFFSET)
    }

    /// The reader's index (acknowledgement area).
    #[inline]
    pub(crate) fn read_index(&self) -> &AtomicU64 {
        self.ack_word(READ_INDEX_OFFSET)
    }

    /// Word `i` of the reader's latency statistics (acknowledgement area).
    pub(crate) fn stats_word(&self, i: usize) -> &AtomicU64 {
        self.ack_word(crate::wire::STATS_OFFSET + i * WORD)
    }

    /// The reader's whole latency statistics block (acknowledgement area).
    #[inline]
    pub(crate) fn stats(&self) -> &[AtomicU64; STATS_WORDS] {
        const _: () = assert!(crate::wire::STATS_OFFSET % WORD == 0);
        // SAFETY: the block is STATS_SIZE bytes at the word-aligned STATS_OFFSET, and
        // STATS_OFFSET + STATS_SIZE = ACK_AREA_MIN <= the ack area's length (invariant);
        // the memory lives as long as `self` and is only accessed atomically.
        unsafe {
            &*self
                .ack
                .as_ptr()
                .add(crate::wire::STATS_OFFSET / WORD)
                .cast::<[AtomicU64; STATS_WORDS]>()
        }
    }

    /// The ring, as its words.
    #[inline]
    fn ring(&self) -> &[AtomicU64] {
        // SAFETY: the ring is `ring_words` words starting RING_HEADER_SIZE (a word
        // multiple) bytes into the data area, inside it (invariant); the memory lives as
        // long as `self` and is only accessed atomically, so shared `&AtomicU64`s are fine.
        unsafe {
            core::slice::from_raw_parts(
                self.data.as_ptr().add(RING_HEADER_SIZE / WORD),
                self.ring_words,
            )
        }
    }

    /// The ring word that follows word `pos` (`pos < ring_words`), wrapping to 0.
    #[inline]
    pub(crate) fn advance(&self, pos: usize, words: usize) -> usize {
        // pos < ring_words and words <= ring_words, so one subtraction reduces the sum.
        let next = pos + words;
        if next >= self.ring_words {
            next - self.ring_words
        } else {
            next
        }
    }

    /// A record of `words` words at ring word `pos` that reaches past the end of the
    /// ring, as its two parts: from `pos` to the end, then from the start (clamped to the
    /// ring whatever the arguments).
    #[cold]
    fn wrapped(&self, pos: usize, words: usize) -> (&[AtomicU64], &[AtomicU64]) {
        let (ring, pos) = (self.ring(), pos.min(self.ring_words));
        let tail = &ring[pos..];
        let head = &ring[..words.saturating_sub(tail.len()).min(ring.len())];
        (tail, head)
    }

    /// Stores one record of `words` words at ring word `pos`: `header`, `stamp`, then
    /// `payload` zero-padded to whole words (`words` = 2 + payload words). Straight
    /// stores when the record does not reach the end of the ring, else word by word with
    /// the wrap. Never outside the ring whatever the arguments.
    #[inline]
    pub(crate) fn put_record(
        &self,
        pos: usize,
        words: usize,
        header: u64,
        stamp: u64,
        payload: &[u8],
    ) {
        let end = pos.saturating_add(words);
        if let Some([h, s, body @ ..]) = self.ring().get(pos..end) {
            h.store(header, Ordering::Relaxed);
            s.store(stamp, Ordering::Relaxed);
            store_words(body, payload);
        } else {
            // The record wraps: the end of the ring from `pos`, then its start.
            match self.wrapped(pos, words) {
                ([h], [s, body @ ..]) => {
                    h.store(header, Ordering::Relaxed);
                    s.store(stamp, Ordering::Relaxed);
                    store_words(body, payload);
                }
                ([h, s, body @ ..], head) => {
                    h.store(header, Ordering::Relaxed);
                    s.store(stamp, Ordering::Relaxed);
                    let (first, rest) = payload.split_at((body.len() * WORD).min(payload.len()));
                    store_words(body, first);
                    store_words(head, rest);
                }
                _ => {}
            }
        }
    }

    /// Loads the stamp and payload of the `words`-word record at ring word `pos` into
    /// `payload` (see [`Shared::put_record`]); returns the stamp.
    #[inline]
    pub(crate) fn get_record(&self, pos: usize, words: usize, payload: &mut [u8]) -> u64 {
        let end = pos.saturating_add(words);
        if let Some([_, s, body @ ..]) = self.ring().get(pos..end) {
            let stamp = s.load(Ordering::Relaxed);
            load_words(body, payload);
            stamp
        } else {
            match self.wrapped(pos, words) {
                ([_], [s, body @ ..]) => {
                    load_words(body, payload);
                    s.load(Ordering::Relaxed)
                }
                ([_, s, body @ ..], head) => {
                    let split = (body.len() * WORD).min(payload.len());
                    let (first, rest) = payload.split_at_mut(split);
                    load_words(body, first);
                    load_words(head, rest);
                    s.load(Ordering::Relaxed)
                }
                _ => 0,
            }
        }
    }

    /// The reader's sleep counter (acknowledgement area).
    #[inline]
    pub(crate) fn reader_sleep(&self) -> &AtomicU64 {
        self.ack_word(READER_SLEEP_OFFSET)
    }

    /// Ring word `i`.
    ///
    /// # Safety
    /// `i < self.ring_words`.
    #[inline]
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
    #[inline]
    fn reduce(&self, i: usize) -> usize {
        if i < self.ring_words {
            i
        } else {
            i % self.ring_words
        }
    }

    /// Loads ring word `i % ring_words` (Relaxed: ordered by the Acquire load of the
    /// peer's index that made it visible).
    #[inline]
    pub(crate) fn load_ring(&self, i: usize) -> u64 {
        let i = self.reduce(i);
        // SAFETY: i < ring_words after the remainder.
        unsafe { self.ring_word(i) }.load(Ordering::Relaxed)
    }
}

/// Stores `src` into `dst`, one word per 8 bytes, the last one zero-padded (`dst` has
/// room for them all: fewer words are left unwritten past its end, never beyond).
#[inline]
fn store_words(dst: &[AtomicU64], src: &[u8]) {
    let full = src.len() / WORD;
    let (body, tail) = src.split_at(full * WORD);
    for (d, c) in dst.iter().zip(body.chunks_exact(WORD)) {
        let mut word = [0u8; WORD];
        word.copy_from_slice(c);
        d.store(u64::from_le_bytes(word), Ordering::Relaxed);
    }
    if !tail.is_empty() {
        if let Some(d) = dst.get(full) {
            let mut word = [0u8; WORD];
            word[..tail.len()].copy_from_slice(tail);
            d.store(u64::from_le_bytes(word), Ordering::Relaxed);
        }
    }
}

/// Loads `dst.len()` bytes out of `src`, one atomic load per word.
#[inline]
fn load_words(src: &[AtomicU64], dst: &mut [u8]) {
    let full = dst.len() / WORD;
    let (body, tail) = dst.split_at_mut(full * WORD);
    for (s, c) in src.iter().zip(body.chunks_exact_mut(WORD)) {
        c.copy_from_slice(&s.load(Ordering::Relaxed).to_le_bytes());
    }
    if !tail.is_empty() {
        if let Some(s) = src.get(full) {
            let n = tail.len();
            tail.copy_from_slice(&s.load(Ordering::Relaxed).to_le_bytes()[..n]);
        }
    }
}
