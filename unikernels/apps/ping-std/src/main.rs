//! Ping as an ordinary std program: the Hermit end of `partition-manifests/pingpong-hermit.toml`,
//! talking to the bare `pong` over the same protocol as the bare `ping` (see
//! `unikernels/apps/ping`): a backpressure burst, `MESSAGES` verified mixed-size messages
//! echoed back and verified again, then the round-trip and stream benchmark.
//!
//! While the mixed-size messages flow it also fills most of its heap (`HOG_MIB` MiB in
//! 1 MiB `Vec`s, every word written with a pattern and checked at the end, see [`hog`]):
//! Hermit maps that memory at addresses it picks itself, and the channel window mapped
//! at boot must survive it untouched. Any overlap shows up as a chunk inside the window, a
//! corrupted message or a corrupted chunk.
//!
//! It needs a Quest Hermit sandbox (the channel directory exists only there); built for
//! any other OS (the host lints it) it says so and exits with status 2.

mod bench;
mod hog;
mod verify;

/// Counts of what went through the channels, for the final line.
#[derive(Debug, Default)]
pub struct Counts {
    /// Messages sent on `ping-to-pong`.
    pub sent: u64,
    /// Messages received on `pong-to-ping`.
    pub received: u64,
}

/// The run's parameters, from the environment.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Messages each way in the verified phases.
    pub messages: u64,
    /// Timed round trips per message size.
    pub rounds: u64,
    /// 4 KiB messages in the one-way stream.
    pub stream: u64,
    /// MiB of heap to allocate and touch during the mixed-size phase.
    pub hog_mib: u64,
}

impl Params {
    fn from_env() -> Self {
        let var = |name: &str, default: u64| {
            chan_proto::number(std::env::var(name).ok().as_deref(), default)
        };
        Self {
            messages: var("MESSAGES", 100_000),
            rounds: var("ROUNDS", 2000),
            stream: var("STREAM", 2000),
            hog_mib: var("HOG_MIB", 0),
        }
    }
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    #[allow(unused_unsafe)]
    // SAFETY: RDTSC exists on every x86_64 processor and only reads the counter.
    unsafe {
        std::arch::x86_64::_rdtsc()
    }
}

fn main() {
    let params = Params::from_env();
    std::process::exit(run(params));
}

/// Opens both channels and runs every phase; the exit status.
#[cfg(target_os = "hermit")]
fn run(params: Params) -> i32 {
    use quest_channel::{Receiver, Sender};
    let mut tx = match Sender::open("ping-to-pong") {
        Ok(tx) => tx,
        Err(e) => {
            println!("ping-std: cannot open ping-to-pong: {e}");
            return 2;
        }
    };
    let mut rx = match Receiver::open("pong-to-ping") {
        Ok(rx) => rx,
        Err(e) => {
            println!("ping-std: cannot open pong-to-ping: {e}");
            return 2;
        }
    };
    run_on(&mut tx, &mut rx, params)
}

/// No channel directory outside a Quest Hermit sandbox.
#[cfg(not(target_os = "hermit"))]
fn run(params: Params) -> i32 {
    println!("ping-std: needs a Quest Hermit sandbox with channels ({params:?})");
    2
}

/// Every phase over open channels; the exit status.
#[cfg_attr(not(target_os = "hermit"), allow(dead_code))]
fn run_on(tx: &mut quest_channel::Sender, rx: &mut quest_channel::Receiver, p: Params) -> i32 {
    println!(
        "ping-std: channels open (largest message {} B); {} messages, {} round trips per size, {} stream messages, {} MiB heap hog",
        tx.max_message_len(),
        p.messages,
        p.rounds,
        p.stream,
        p.hog_mib
    );
    let mut counts = Counts::default();
    let mut hog = hog::Hog::new(p.hog_mib);
    if let Err(e) = verify::run(tx, rx, p.messages, &mut hog, &mut counts) {
        println!("ping-std: FAILED: {e}");
        return 1;
    }
    // The hog's memory is still held: the benchmark runs beside it.
    if let Err(e) = bench::run(tx, rx, p.rounds, p.stream, &mut counts) {
        println!("ping-std: FAILED in the benchmark: {e}");
        return 1;
    }
    if let Err(e) = hog.check() {
        println!("ping-std: FAILED: heap hog: {e}");
        return 1;
    }
    println!(
        "ping-std: done: messages sent {} received {} total {}",
        counts.sent,
        counts.received,
        counts.sent + counts.received
    );
    0
}
