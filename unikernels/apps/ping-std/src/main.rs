//! Ping as an ordinary std program: the Hermit end of `partition-manifests/pingpong-hermit.toml`,
//! talking to the bare `pong` over the same protocol as the bare `ping` (the shared
//! `chan_proto::ping`): a backpressure burst, `MESSAGES` verified mixed-size messages
//! echoed back and verified again, then the round-trip and stream benchmark.
//!
//! While the mixed-size messages flow it also fills most of its heap (`HOG_MIB` MiB in
//! 1 MiB `Vec`s, every word written with a pattern and checked at the end, see [`hog`]):
//! Hermit maps that memory at addresses it picks itself, and the channel window mapped
//! at boot must survive it untouched. Any overlap shows up as a chunk inside the window, a
//! corrupted message or a corrupted chunk.
//!
//! A std program is not told the TSC frequency: the stream line's `tsc_khz` is derived
//! from `Instant` (which Hermit itself derives from the TSC at the frequency the monitor
//! reports) over the stream.
//!
//! It needs a Quest Hermit sandbox (the channel directory exists only there); built for
//! any other OS (the host lints it) it says so and exits with status 2.

mod hog;

use chan_proto::ping::{Params, Runtime, StreamRate};
use std::fmt;
use std::time::Instant;

/// Mixed-size messages between two hog chunks.
const MESSAGES_PER_CHUNK: u64 = 64;

/// The std runtime: stdout, `Instant` for the stream's rate, and the heap hog.
#[derive(Debug)]
struct Std {
    hog: hog::Hog,
    hog_mib: u64,
    stream_start: Option<Instant>,
}

impl Runtime for Std {
    fn name(&self) -> &'static str {
        "ping-std"
    }

    fn println(&mut self, line: fmt::Arguments<'_>) {
        println!("{line}");
    }

    fn open_note(&self) -> String {
        format!(", {} MiB heap hog", self.hog_mib)
    }

    /// A hog chunk every `MESSAGES_PER_CHUNK` echoes until the hog is full.
    // `is_multiple_of` is newer than the nightly Hermit is built with.
    #[allow(clippy::manual_is_multiple_of)]
    fn echo_verified(&mut self, verified: u64) -> Result<(), String> {
        if verified % MESSAGES_PER_CHUNK == 0 && !self.hog.is_full() {
            self.hog.grow()?;
        }
        Ok(())
    }

    /// Fewer messages than chunks: the rest of the hog now.
    fn mixed_done(&mut self) -> Result<(), String> {
        while !self.hog.is_full() {
            self.hog.grow()?;
        }
        Ok(())
    }

    fn stream_started(&mut self) {
        self.stream_start = Some(Instant::now());
    }

    fn stream_rate(&mut self, bytes: u64, cycles: u64) -> StreamRate {
        let nanos = self
            .stream_start
            .map_or(0, |start| start.elapsed().as_nanos())
            .max(1);
        StreamRate {
            tsc_khz: cycles as u128 * 1_000_000 / nanos,
            mb_per_s: bytes as u128 * 1000 / nanos,
        }
    }

    /// The hog's memory was still held while the benchmark ran; every word must be intact.
    fn finish(&mut self) -> Result<(), String> {
        self.hog.check().map_err(|e| format!("heap hog: {e}"))
    }
}

fn main() {
    let var = |name: &str| std::env::var(name).ok();
    let params = Params::from_env(var);
    let hog_mib = chan_proto::number(var("HOG_MIB").as_deref(), 0);
    let mut rt = Std {
        hog: hog::Hog::new(hog_mib),
        hog_mib,
        stream_start: None,
    };
    std::process::exit(run(&mut rt, params));
}

/// Opens both channels and runs every phase; the exit status.
#[cfg(target_os = "hermit")]
fn run(rt: &mut Std, params: Params) -> i32 {
    chan_proto::ping::main(rt, params)
}

/// No channel directory outside a Quest Hermit sandbox.
#[cfg(not(target_os = "hermit"))]
fn run(rt: &mut Std, params: Params) -> i32 {
    println!(
        "ping-std: needs a Quest Hermit sandbox with channels ({params:?}, {} MiB heap hog)",
        rt.hog_mib
    );
    2
}
