//! The bound on one message's latency, term by term: one pure function of the channel's
//! declared model and the platform's measured costs ([`bound`]). `quest-build bounds`,
//! `quest-build run --check-bounds` and the tests all call it; partition-manifests/README.md
//! states the same formula with its assumptions.
//!
//! Everything is in TSC cycles of the reader's clock and rounds up, so each term is an upper
//! bound of what it stands for.

use quest_channel::wire::{record_size, CACHE_LINE, RECORD_HEADER_SIZE};

/// Platform costs, in TSC cycles, each the worst (largest) value measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Costs {
    /// One cache line moving from one core to the other (half a measured round trip).
    pub line_transfer: u64,
    /// Per message, what `send` costs beyond copying bytes (checks, header, index store).
    pub send_fixed: u64,
    /// `send`'s copy cost per KiB of record (cold).
    pub send_per_kib: u64,
    /// Per message, what `recv` costs beyond copying bytes.
    pub recv_fixed: u64,
    /// `recv`'s copy cost per KiB of record (cold).
    pub recv_per_kib: u64,
    /// A VM exit and the entry back (the writer's doorbell hypercall).
    pub vm_exit_entry: u64,
    /// An IPI from sending to the target core's handler (the doorbell's IPI is inside
    /// `wake`; this is for reference).
    pub ipi: u64,
    /// A core sleeping in WAIT running again after the doorbell: the IPI, the wake-up
    /// and one line transfer, as measured.
    pub wake: u64,
}

/// How the reader notices a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detection {
    /// A dedicated vCPU polls the ring.
    Spin,
    /// The reader looks every `period` cycles, at most `jitter` cycles late.
    Poll {
        /// Cycles between two looks.
        period: u64,
        /// How late a look may be.
        jitter: u64,
    },
    /// The reader sleeps in WAIT; the writer rings its doorbell.
    Doorbell,
}

/// What the channel is and what its writer promises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Channel {
    /// Ring bytes (the data area minus its header).
    pub ring: u64,
    /// The largest message, in bytes (at most what the ring holds).
    pub max_message: u64,
    /// How the reader notices a message.
    pub detection: Detection,
    /// The least cycles between two sends, if promised.
    pub min_interval: Option<u64>,
    /// The reader's own work per message (between one `recv` and its next), cycles.
    pub reader_work: u64,
    /// The most messages sent without waiting for the reader, if promised.
    pub burst: Option<u64>,
}

/// What limits how many messages can be ahead of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueueLimit {
    /// The writer's promise (burst or rate).
    Promise,
    /// The ring: the promise allows more than the ring holds.
    Ring,
    /// The ring: the writer promises nothing.
    NoPromise,
    /// The ring: the reader's work per message is more than the writer's least interval,
    /// so under that promise the queue can grow until the ring is full.
    ReaderTooSlow,
}

/// The bound, term by term (cycles).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Bound {
    /// Bytes one largest message takes in the ring (header and padding included).
    pub record: u64,
    /// Largest messages the ring holds at once.
    pub capacity: u64,
    /// The writer's `send` of the message.
    pub writer_copy: u64,
    /// The record's cache lines moving to the reader's core.
    pub transfer: u64,
    /// The time until the reader looks (its mode), including the index line's transfer.
    pub detection: u64,
    /// Messages the reader may find ahead of this one.
    pub ahead: u64,
    /// The reader's work on them.
    pub queueing: u64,
    /// What limits the queue.
    pub queue_limit: QueueLimit,
    /// The reader's `recv` of the message.
    pub reader_copy: u64,
    /// From the start of `send` to the return of `recv`.
    pub total: u64,
    /// The longest a `send` on a full ring can wait for room.
    pub full_ring_wait: u64,
    /// The least any message can take (a message alone, found at once): no observation
    /// can be below it on a correct platform profile.
    pub floor: u64,
}

fn div_ceil(a: u64, b: u64) -> u64 {
    if b == 0 {
        return a.min(1) * u64::MAX;
    }
    a.div_ceil(b)
}

/// Cache lines a record of `bytes` can touch (it may start anywhere on a word, so one
/// line more than it fills).
fn lines(bytes: u64) -> u64 {
    div_ceil(bytes, CACHE_LINE as u64).saturating_add(1)
}

/// Cost of copying `bytes` at `per_kib` cycles per KiB, rounded up.
fn copy(bytes: u64, per_kib: u64) -> u64 {
    div_ceil(bytes.saturating_mul(per_kib), 1024)
}

/// The reader's work on one record of `bytes`: its `recv`, its lines' transfer and its
/// own work on the message.
fn service(bytes: u64, k: &Costs, work: u64) -> u64 {
    k.recv_fixed
        .saturating_add(copy(bytes, k.recv_per_kib))
        .saturating_add(lines(bytes).saturating_mul(k.line_transfer))
        .saturating_add(work)
}

/// The bound for one message on channel `c` with costs `k`.
///
/// `total = writer_copy + transfer + detection + queueing + reader_copy`, where
/// - `writer_copy = send_fixed + record x send_per_kib`;
/// - `transfer = lines(record) x line_transfer`;
/// - `detection`: spin `line_transfer` (the write index); poll `period + jitter +
///   line_transfer`; doorbell `vm_exit_entry + wake + line_transfer` (`wake` includes
///   the IPI);
/// - `queueing = min(ahead x service(record), ring_work)`: `ahead` is `burst - 1` with a
///   burst, the fixed point `ceil(total / min_interval)` with a rate (response-time
///   analysis: only messages sent within the last `total` cycles can still be ahead), the
///   smaller of both, and otherwise unbounded; `ring_work` is the reader's work on a ring
///   full of the smallest records (`ring / 16` records: header and stamp), true whatever the writer
///   does; `service(b) = recv_fixed + b x recv_per_kib + lines(b) x line_transfer +
///   reader_work`;
/// - `reader_copy = recv_fixed + record x recv_per_kib`.
pub fn bound(c: &Channel, k: &Costs) -> Bound {
    let record = record_size(usize::try_from(c.max_message).unwrap_or(usize::MAX))
        .map_or(u64::MAX, |r| r as u64);
    let capacity = c.ring / record.max(1);
    let writer_copy = k.send_fixed.saturating_add(copy(record, k.send_per_kib));
    let transfer = lines(record).saturating_mul(k.line_transfer);
    let detection = match c.detection {
        Detection::Spin => k.line_transfer,
        Detection::Poll { period, jitter } => period.saturating_add(jitter),
        Detection::Doorbell => k.vm_exit_entry.saturating_add(k.wake),
    }
    .saturating_add(match c.detection {
        Detection::Spin => 0,
        _ => k.line_transfer,
    });
    let reader_copy = k.recv_fixed.saturating_add(copy(record, k.recv_per_kib));
    let base = writer_copy
        .saturating_add(transfer)
        .saturating_add(detection)
        .saturating_add(reader_copy);

    // The reader's work on whatever else the ring can hold: records of at least a header
    // and a stamp each in at most the ring's bytes (counting the whole ring rather than what this
    // message leaves keeps the bound monotone in the message size).
    let rest = c.ring;
    let smallest = RECORD_HEADER_SIZE as u64;
    let per_record = k
        .recv_fixed
        .saturating_add(k.line_transfer)
        .saturating_add(c.reader_work);
    let ring_work = (rest / smallest)
        .saturating_mul(per_record)
        .saturating_add(copy(rest, k.recv_per_kib))
        .saturating_add(div_ceil(rest, CACHE_LINE as u64).saturating_mul(k.line_transfer));
    let ring_ahead = rest / smallest;
    let each = service(record, k, c.reader_work);
    let burst_ahead = c.burst.map(|b| b.saturating_sub(1));
    let rate_ahead = c.min_interval.map(|interval| {
        // The least fixed point of ahead = ceil((base + ahead x each) / interval), the
        // limit of iterating from 0: the least `a` with a x (interval - each) >= base,
        // i.e. ceil(base / (interval - each)) when each < interval; otherwise the queue
        // has no bound but the ring.
        match interval.checked_sub(each) {
            Some(slack) if slack > 0 => div_ceil(base, slack),
            _ => u64::MAX,
        }
    });
    let declared = match (burst_ahead, rate_ahead) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let (ahead, queueing, queue_limit) = match declared {
        Some(a) if a < ring_ahead && a.saturating_mul(each) < ring_work => {
            (a, a.saturating_mul(each), QueueLimit::Promise)
        }
        None => (ring_ahead, ring_work, QueueLimit::NoPromise),
        _ if c.burst.is_none() && rate_ahead == Some(u64::MAX) => {
            (ring_ahead, ring_work, QueueLimit::ReaderTooSlow)
        }
        _ => (ring_ahead, ring_work, QueueLimit::Ring),
    };
    let total = base.saturating_add(queueing);

    // A full ring: the reader notices, then frees the oldest records until this one fits
    // (up to `record` bytes of the smallest records), and the writer sees the read index
    // move (a sleeping writer is woken through its doorbell).
    let freeing = (record / smallest)
        .saturating_mul(per_record)
        .saturating_add(copy(record, k.recv_per_kib))
        .saturating_add(lines(record).saturating_mul(k.line_transfer));
    let writer_wakes = match c.detection {
        Detection::Doorbell => k.vm_exit_entry.saturating_add(k.wake),
        _ => 0,
    };
    let full_ring_wait = detection
        .saturating_add(freeing)
        .saturating_add(k.line_transfer)
        .saturating_add(writer_wakes);
    let floor = k
        .send_fixed
        .saturating_add(k.line_transfer)
        .saturating_add(k.recv_fixed);
    Bound {
        record,
        capacity,
        writer_copy,
        transfer,
        detection,
        ahead,
        queueing,
        queue_limit,
        reader_copy,
        total,
        full_ring_wait,
        floor,
    }
}

/// Cycles in `ns` nanoseconds at `tsc_khz`, rounded up.
pub fn cycles_of_ns(ns: u64, tsc_khz: u64) -> u64 {
    div_ceil(ns.saturating_mul(tsc_khz), 1_000_000)
}

/// Microseconds (fractional) of `cycles` at `tsc_khz`.
pub fn micros(cycles: u64, tsc_khz: u64) -> f64 {
    if tsc_khz == 0 {
        return f64::INFINITY;
    }
    cycles as f64 * 1000.0 / tsc_khz as f64
}

#[cfg(test)]
#[path = "formula_tests.rs"]
mod tests;
