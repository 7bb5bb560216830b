//! The writing end of a channel.

use crate::doorbell::{Doorbell, Spin};
use crate::endpoint::{endpoint_methods, Endpoint};
use crate::error::SendError;
use crate::shared::Shared;
use crate::wire::{record_header, record_size, WORD};
use core::sync::atomic::Ordering;

/// The writing end of a channel: the only producer of its ring.
///
/// Never trusts the reader: its index must lie between the last one seen and the write
/// index; anything else marks the channel corrupt, for good.
#[derive(Debug)]
pub struct Sender<D: Doorbell = Spin> {
    ep: Endpoint<D>,
    /// Our index; the data area holds a copy for the reader.
    write: u64,
    /// The reader's index as last read and checked.
    read_seen: u64,
    /// The ring word `write` falls on (kept as we go: no division per message).
    pos: usize,
}

impl Sender<Spin> {
    /// The sender over `shared` (for `from_memory`).
    fn from_shared(shared: Shared) -> Self {
        // Our own index (only we write the data area); the reader's is checked against it.
        let write = shared.write_index().load(Ordering::Relaxed);
        let read = shared.read_index().load(Ordering::Acquire);
        let poisoned =
            write % WORD as u64 != 0 || !Self::read_index_plausible(read, read, write, &shared);
        Self {
            write,
            read_seen: read,
            pos: shared.word_of(write),
            ep: Endpoint::new(shared, poisoned, Shared::writer_sleep),
        }
    }

    /// Nothing more to set up once opened from the directory.
    #[cfg(any(target_os = "none", target_os = "hermit", doc))]
    fn opened(&mut self) {}
}

endpoint_methods! { Sender, crate::Role::Writer, "writes", send, [write, read_seen, pos] }

impl<D: Doorbell> Sender<D> {
    /// `read` is a plausible reader index: a word multiple between `seen` (the last one
    /// accepted) and `write`. Wrapping arithmetic, so no input can overflow.
    fn read_index_plausible(read: u64, seen: u64, write: u64, shared: &Shared) -> bool {
        read % WORD as u64 == 0
            && read.wrapping_sub(seen) <= write.wrapping_sub(seen)
            && write.wrapping_sub(read) <= shared.ring_bytes()
    }

    /// Whether the reader has opened the channel (its receiver started the latency block
    /// in the acknowledgement area): a writer whose messages' latency should count only
    /// once the reader is there waits for this before its first send.
    pub fn reader_opened(&self) -> bool {
        self.ep
            .shared
            .stats_word(quest_abi::latency::MAGIC_WORD)
            .load(Ordering::Acquire)
            == quest_abi::latency::STATS_MAGIC
    }

    /// Bytes sent but not yet taken by the reader (reads, and checks, the reader's index).
    pub fn unread(&mut self) -> Result<u64, SendError> {
        if self.ep.poisoned {
            return Err(SendError::Corrupt);
        }
        let read = self.ep.shared.read_index().load(Ordering::Acquire);
        if !Self::read_index_plausible(read, self.read_seen, self.write, &self.ep.shared) {
            self.ep.poisoned = true;
            return Err(SendError::Corrupt);
        }
        self.read_seen = read;
        Ok(self.write.wrapping_sub(read))
    }

    /// Sends `msg` if the ring has room for it now.
    #[inline]
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        if self.ep.poisoned {
            return Err(SendError::Corrupt);
        }
        let max = self.ep.shared.max_message();
        if msg.len() > max {
            return Err(SendError::TooLarge {
                len: msg.len(),
                max,
            });
        }
        // Cannot overflow: msg.len() <= max < ring size.
        let record = record_size(msg.len()).unwrap_or(usize::MAX);
        let ring = self.ep.shared.ring_bytes();
        if ring - self.write.wrapping_sub(self.read_seen) < record as u64 {
            self.refresh_space(record as u64)?;
        }
        // The length fits in 32 bits: max_message_len caps it. The stamp is taken once
        // the ring has room: a wait for room is the full-ring wait, not the message's.
        let words = record / WORD;
        self.ep.shared.put_record(
            self.pos,
            words,
            record_header(msg.len() as u32),
            crate::clock::now(),
            msg,
        );
        self.pos = self.ep.shared.advance(self.pos, words);
        self.write = self.write.wrapping_add(record as u64);
        // Publishes the record: the reader's Acquire load of the index sees every store
        // above.
        self.ep
            .shared
            .write_index()
            .store(self.write, Ordering::Release);
        if D::SLEEPS {
            self.ep.wake_peer(Shared::reader_sleep);
        }
        Ok(())
    }

    /// The space we last knew of is too small for a `record`-byte record: only now look
    /// at the reader's line (a sender with room never touches it), check its index, and
    /// report `Full` if there is still no room.
    #[cold]
    fn refresh_space(&mut self, record: u64) -> Result<(), SendError> {
        let read = self.ep.shared.read_index().load(Ordering::Acquire);
        if !Self::read_index_plausible(read, self.read_seen, self.write, &self.ep.shared) {
            self.ep.poisoned = true;
            return Err(SendError::Corrupt);
        }
        self.read_seen = read;
        if self.ep.shared.ring_bytes() - self.write.wrapping_sub(read) < record {
            return Err(SendError::Full);
        }
        Ok(())
    }

    /// Sends `msg`, waiting (spinning, then sleeping if there is a doorbell) while the ring
    /// is full. Fails at once if the message can never fit or the channel is corrupt.
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        let mut polls = 0u32;
        loop {
            match self.try_send(msg) {
                Err(SendError::Full) => {}
                done => return done,
            }
            // Sleeps unless the reader moved meanwhile.
            self.ep.pause(
                &mut polls,
                Shared::writer_sleep,
                Shared::read_index,
                self.read_seen,
            );
        }
    }
}
