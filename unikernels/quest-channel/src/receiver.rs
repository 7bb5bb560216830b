//! The reading end of a channel.

use crate::doorbell::{Doorbell, Spin};
use crate::endpoint::{endpoint_methods, Endpoint};
use crate::error::{LayoutError, RecvError};
use crate::shared::{ChannelMemory, Shared};
use crate::wire::{record_len, record_size, RECORD_HEADER_SIZE, WORD};
use core::sync::atomic::Ordering;

/// The reading end of a channel: the only consumer of its ring.
///
/// Never trusts the writer: every shared value (the write index, a record header) is read
/// once into a local and checked there; the write index must lie between the last one seen
/// and one ring ahead of the read index, a header must carry the record tag and a length
/// that fits in what was published. Anything else marks the channel corrupt, for good.
/// Payload bytes are copied out word by word with atomic loads, so a writer that scribbles
/// over them concurrently can garble a message but never cause undefined behaviour.
#[derive(Debug)]
pub struct Receiver<D: Doorbell = Spin> {
    ep: Endpoint<D>,
    /// Our index; the acknowledgement area holds a copy for the writer.
    read: u64,
    /// The writer's index as last read and checked (`read <= write_seen`).
    write_seen: u64,
}

impl Receiver<Spin> {
    /// A receiver over memory the caller provides.
    ///
    /// # Safety
    /// `memory` meets the crate's [memory contract](crate#memory-contract) for a receiver.
    pub unsafe fn from_memory(memory: ChannelMemory) -> Result<Self, LayoutError> {
        // SAFETY: forwarded from our caller.
        let shared = unsafe { Shared::new(memory) }?;
        // Our own index (only we write the acknowledgement area).
        let read = shared.read_index().load(Ordering::Relaxed);
        Ok(Self {
            read,
            write_seen: read,
            ep: Endpoint::new(shared, read % WORD as u64 != 0, Shared::reader_sleep),
        })
    }
}

endpoint_methods! { Receiver, crate::Role::Reader, "reads", recv, [read, write_seen] }

impl<D: Doorbell> Receiver<D> {
    fn corrupt(&mut self) -> RecvError {
        self.ep.poisoned = true;
        RecvError::Corrupt
    }

    /// Receives the next message into `buf` if there is one; returns its length.
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, RecvError> {
        if self.ep.poisoned {
            return Err(RecvError::Corrupt);
        }
        if self.read == self.write_seen {
            // Only look at the writer's line when everything seen so far is consumed.
            let write = self.ep.shared.write_index().load(Ordering::Acquire);
            // read <= write_seen <= write <= read + ring, in wrapping arithmetic.
            if write % WORD as u64 != 0
                || write.wrapping_sub(self.read) > self.ep.shared.ring_bytes()
            {
                return Err(self.corrupt());
            }
            self.write_seen = write;
            if write == self.read {
                return Ok(None);
            }
        }
        let available = self.write_seen.wrapping_sub(self.read);
        let start = self.ep.shared.word_of(self.read);
        let header = self.ep.shared.load_ring(start);
        let Some(len) = record_len(header) else {
            return Err(self.corrupt());
        };
        let len = len as usize;
        let record = match record_size(len) {
            Some(r) if len <= self.max_message_len() && r as u64 <= available => r as u64,
            _ => return Err(self.corrupt()),
        };
        let Some(dst) = buf.get_mut(..len) else {
            return Err(RecvError::BufferTooSmall { needed: len });
        };
        self.ep
            .shared
            .copy_out(start + RECORD_HEADER_SIZE / WORD, dst);
        self.read = self.read.wrapping_add(record);
        // Frees the record: the writer's Acquire load of our index orders our loads above
        // before its stores that reuse the space.
        self.ep
            .shared
            .read_index()
            .store(self.read, Ordering::Release);
        if D::SLEEPS {
            self.ep.wake_peer(Shared::writer_sleep);
        }
        Ok(Some(len))
    }

    /// Receives the next message into `buf`, waiting (spinning with `pause`, then sleeping
    /// if there is a doorbell) while the ring is empty; returns its length.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        let mut polls = 0u32;
        loop {
            if let Some(len) = self.try_recv(buf)? {
                return Ok(len);
            }
            // Sleeps unless the writer published meanwhile.
            self.ep.pause(
                &mut polls,
                Shared::reader_sleep,
                Shared::write_index,
                self.write_seen,
            );
        }
    }
}
