//! The active end of the pingpong script (`partition-manifests/pingpong.toml` and
//! `pingpong-hermit.toml`), shared by the bare `ping` and the Hermit std `ping-std`.
//!
//! Over `ping-to-pong` it sends numbered, checksummed messages that `pong` verifies and
//! echoes back over `pong-to-ping`, where ping verifies them again:
//! 1. a burst of 4 KiB messages larger than the ring while pong waits (the ring fills and
//!    `try_send` reports full), then a pause before reading the echoes (pong's ring fills);
//! 2. the rest of `messages` with mixed sizes (1 B to 4 KiB), sending and receiving
//!    interleaved;
//! 3. the benchmark: `rounds` timed round trips each of 64 B, 1 KiB and 4 KiB, and a
//!    one-way stream of `stream` 4 KiB messages that pong acknowledges once.
//!
//! Nothing in the measured loops prints (a console write is a VM exit); results are
//! printed afterwards as `bench ...` lines that `quest-build bench` parses.
//!
//! What differs between the runtimes (the console, how the TSC frequency is known, the
//! std app's heap hog) is the [`Runtime`] each app supplies.

pub mod bench;
mod verify;

use alloc::string::String;
use core::fmt;
use quest_channel::{Receiver, Sender};

/// What a runtime supplies to the shared ping.
pub trait Runtime {
    /// The app's name, which starts every printed line.
    fn name(&self) -> &'static str;
    /// Prints one console line.
    fn println(&mut self, line: fmt::Arguments<'_>);
    /// Extra words for the "channels open" line (empty by default).
    fn open_note(&self) -> String {
        String::new()
    }
    /// Called after each echo of phase 2 is verified, with the count verified so far.
    fn echo_verified(&mut self, _verified: u64) -> Result<(), String> {
        Ok(())
    }
    /// Called once phase 2 is complete.
    fn mixed_done(&mut self) -> Result<(), String> {
        Ok(())
    }
    /// Called just before the timed stream starts.
    fn stream_started(&mut self) {}
    /// The TSC frequency and the stream's throughput, given that it moved `bytes` in
    /// `cycles` TSC cycles since [`Runtime::stream_started`].
    fn stream_rate(&mut self, bytes: u64, cycles: u64) -> StreamRate;
    /// A last check after the benchmark (an error fails the run).
    fn finish(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// The stream's rate as a runtime measures it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamRate {
    /// TSC frequency in kHz.
    pub tsc_khz: u128,
    /// Throughput in MB/s.
    pub mb_per_s: u128,
}

/// The run's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// Messages each way in the verified phases.
    pub messages: u64,
    /// Timed round trips per message size.
    pub rounds: u64,
    /// 4 KiB messages in the one-way stream.
    pub stream: u64,
}

impl Params {
    /// The parameters from the environment (`MESSAGES`, `ROUNDS`, `STREAM`), given how to
    /// read a variable; defaults where one is absent or invalid.
    pub fn from_env<S: AsRef<str>>(var: impl Fn(&str) -> Option<S>) -> Self {
        let number = |name, default| crate::number(var(name).as_ref().map(S::as_ref), default);
        Self {
            messages: number("MESSAGES", 100_000),
            rounds: number("ROUNDS", 2000),
            stream: number("STREAM", 2000),
        }
    }
}

/// Counts of what went through the channels, for the final line.
#[derive(Debug, Default)]
pub struct Counts {
    /// Messages sent on `ping-to-pong`.
    pub sent: u64,
    /// Messages received on `pong-to-ping`.
    pub received: u64,
}

/// TSC cycles since boot.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC exists on every x86_64 processor and only reads the counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Opens both channels and runs every phase; the exit status (2: a channel would not
/// open, 1: a phase failed, 0: all verified).
#[cfg(any(target_os = "none", target_os = "hermit"))]
pub fn main(rt: &mut impl Runtime, params: Params) -> i32 {
    let name = rt.name();
    let mut tx = match Sender::open("ping-to-pong") {
        Ok(tx) => tx,
        Err(e) => {
            rt.println(format_args!("{name}: cannot open ping-to-pong: {e}"));
            return 2;
        }
    };
    let mut rx = match Receiver::open("pong-to-ping") {
        Ok(rx) => rx,
        Err(e) => {
            rt.println(format_args!("{name}: cannot open pong-to-ping: {e}"));
            return 2;
        }
    };
    run(rt, &mut tx, &mut rx, params)
}

/// Every phase over open channels; the exit status (1: a phase failed, 0: all verified).
pub fn run(rt: &mut impl Runtime, tx: &mut Sender, rx: &mut Receiver, p: Params) -> i32 {
    let name = rt.name();
    let note = rt.open_note();
    rt.println(format_args!(
        "{name}: channels open (largest message {} B); {} messages, {} round trips per size, {} stream messages{note}",
        tx.max_message_len(),
        p.messages,
        p.rounds,
        p.stream,
    ));
    let mut counts = Counts::default();
    if let Err(e) = verify::run(rt, tx, rx, p.messages, &mut counts) {
        rt.println(format_args!("{name}: FAILED: {e}"));
        return 1;
    }
    if let Err(e) = bench::run(rt, tx, rx, p.rounds, p.stream, &mut counts) {
        rt.println(format_args!("{name}: FAILED in the benchmark: {e}"));
        return 1;
    }
    if let Err(e) = rt.finish() {
        rt.println(format_args!("{name}: FAILED: {e}"));
        return 1;
    }
    rt.println(format_args!(
        "{name}: done: messages sent {} received {} total {}",
        counts.sent,
        counts.received,
        counts.sent + counts.received
    ));
    0
}

#[cfg(test)]
mod tests;
