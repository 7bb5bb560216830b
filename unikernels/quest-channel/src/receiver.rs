//! The reading end of a channel.

use crate::doorbell::{Doorbell, Spin};
use crate::endpoint::{endpoint_methods, Endpoint};
use crate::error::RecvError;
use crate::shared::Shared;
use crate::wire::{record_len, record_size, WORD};
use core::sync::atomic::Ordering;
use quest_abi::latency::{self, Latency};

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
    /// Our TSC minus the writer's (the calibrated offset between the two cores).
    tsc_offset: i64,
    /// The ring word `read` falls on (kept as we go: no division per message).
    pos: usize,
}

impl Receiver<Spin> {
    /// The receiver over `shared` (for `from_memory`).
    fn from_shared(shared: Shared) -> Self {
        // Our own index (only we write the acknowledgement area).
        let read = shared.read_index().load(Ordering::Relaxed);
        // The statistics block is ours: start it unless an earlier receiver did.
        let magic = shared.stats_word(latency::MAGIC_WORD);
        if magic.load(Ordering::Relaxed) != latency::STATS_MAGIC {
            for i in 1..latency::STATS_SIZE / WORD {
                shared.stats_word(i).store(0, Ordering::Relaxed);
            }
            // Release: a writer that sees the magic (`Sender::reader_opened`) sees zeros.
            magic.store(latency::STATS_MAGIC, Ordering::Release);
        }
        Self {
            read,
            write_seen: read,
            tsc_offset: 0,
            pos: shared.word_of(read),
            ep: Endpoint::new(shared, read % WORD as u64 != 0, Shared::reader_sleep),
        }
    }

    /// Once opened from the directory: converts the writer's stamps with the TSC offset
    /// the monitor measured between the two ends' cores (the calibration page), if the
    /// page is there and names this channel; else the clocks are taken as equal.
    #[cfg(any(target_os = "none", target_os = "hermit", doc))]
    fn opened(&mut self) {
        use quest_abi::calibration::CalibrationView;
        use quest_abi::layout::{CALIBRATION_GPA, CALIBRATION_SIZE};
        let page = core::ptr::with_exposed_provenance::<u8>(CALIBRATION_GPA as usize);
        // SAFETY: in a Quest sandbox the monitor maps CALIBRATION_SIZE bytes read-only at
        // CALIBRATION_GPA, identity-mapped, for the sandbox's whole life, filled before any
        // vCPU ran and never written afterwards, so an immutable 'static slice is sound.
        let bytes = unsafe { core::slice::from_raw_parts(page, CALIBRATION_SIZE as usize) };
        if let Some(c) = CalibrationView::new(bytes)
            .ok()
            .and_then(|v| v.channel(self.ep.opened.channel))
        {
            self.tsc_offset = c.tsc_offset;
        }
    }
}

endpoint_methods! { Receiver, crate::Role::Reader, "reads", recv, [read, write_seen, tsc_offset, pos] }

impl<D: Doorbell> Receiver<D> {
    /// The same receiver, converting the writer's stamps with `offset` (our TSC minus the
    /// writer's; [`Receiver::open`] takes it from the monitor's calibration).
    pub fn with_tsc_offset(mut self, offset: i64) -> Self {
        self.tsc_offset = offset;
        self
    }

    /// The latency statistics recorded so far (also what the monitor reports at the end).
    pub fn latency(&self) -> Latency {
        let shared = &self.ep.shared;
        // Our own block, started in `from_memory`: it can only fail if memory was
        // overwritten behind our back, and then "nothing recorded" is the honest answer.
        Latency::read(|i| shared.stats_word(i).load(Ordering::Relaxed)).unwrap_or(Latency {
            messages: 0,
            worst: 0,
            total: 0,
            early: 0,
            buckets: [0; latency::BUCKETS],
        })
    }

    /// Records one message's latency: from the writer's `stamp` (converted to our clock)
    /// to now.
    #[inline]
    fn record(&self, stamp: u64) {
        let sent = stamp.wrapping_add(self.tsc_offset as u64);
        let now = crate::clock::now();
        let stats = self.ep.shared.stats();
        let cycles = match now.checked_sub(sent) {
            // More than 2^63 cycles means a stamp from the future that wrapped.
            Some(c) if c < 1 << 63 => c,
            _ => {
                let early = &stats[latency::EARLY_WORD];
                early.store(
                    early.load(Ordering::Relaxed).wrapping_add(1),
                    Ordering::Relaxed,
                );
                0
            }
        };
        Latency::record(
            cycles,
            |i| stats[i].load(Ordering::Relaxed),
            |i, v| stats[i].store(v, Ordering::Relaxed),
        );
    }

    #[cold]
    fn corrupt(&mut self) -> RecvError {
        self.ep.poisoned = true;
        RecvError::Corrupt
    }

    /// Receives the next message into `buf` if there is one; returns its length.
    #[inline]
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
        self.take(buf).map(Some)
    }

    /// Takes the record at our index, which the writer has published (`read <
    /// write_seen`); returns its length.
    #[inline]
    fn take(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        let available = self.write_seen.wrapping_sub(self.read);
        let header = self.ep.shared.load_ring(self.pos);
        let Some(len) = record_len(header) else {
            return Err(self.corrupt());
        };
        let len = len as usize;
        let record = match record_size(len) {
            Some(r) if len <= self.ep.shared.max_message() && r as u64 <= available => r,
            _ => return Err(self.corrupt()),
        };
        let Some(dst) = buf.get_mut(..len) else {
            return Err(RecvError::BufferTooSmall { needed: len });
        };
        let words = record / WORD;
        let stamp = self.ep.shared.get_record(self.pos, words, dst);
        self.pos = self.ep.shared.advance(self.pos, words);
        self.read = self.read.wrapping_add(record as u64);
        // Frees the record: the writer's Acquire load of our index orders our loads above
        // before its stores that reuse the space.
        self.ep
            .shared
            .read_index()
            .store(self.read, Ordering::Release);
        if D::SLEEPS {
            self.ep.wake_peer(Shared::writer_sleep);
        }
        self.record(stamp);
        Ok(len)
    }

    /// Receives the next message into `buf`, waiting (spinning with `pause`, then sleeping
    /// if there is a doorbell) while the ring is empty; returns its length.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        let mut polls = 0u32;
        loop {
            if let Some(len) = self.try_recv(buf)? {
                return Ok(len);
            }
            // Wait until the writer's index moves (a hint only: `try_recv` reads it again
            // and checks it). Sleeps unless the writer published meanwhile.
            loop {
                self.ep.pause(
                    &mut polls,
                    Shared::reader_sleep,
                    Shared::write_index,
                    self.write_seen,
                );
                if self.ep.shared.write_index().load(Ordering::Relaxed) != self.write_seen {
                    break;
                }
            }
        }
    }
}
