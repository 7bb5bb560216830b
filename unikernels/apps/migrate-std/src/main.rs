//! A std program that keeps sleeping, computing and talking over a channel while the
//! monitor migrates its sandbox (`partition-manifests/migration-hermit.toml`): every
//! check below must hold across each move of its two vCPUs to other cores and its RAM
//! to another host region.
//!
//! - A sleeper thread sleeps `SLEEP_MS` at a time (`thread::sleep`; Hermit blocks on its
//!   timer from 10 ms, and busy-waits shorter sleeps) and checks with
//!   `Instant` that no sleep ended early, that `Instant` never went backwards, and that no
//!   sleep overshot by more than `MAX_JUMP_MS` (the sandbox's `max_downtime` plus the
//!   scheduling latency the manifest allows: a migration during a sleep may stretch it by
//!   its downtime, and only by that).
//! - A compute thread takes jobs from the main thread over a `std::sync::mpsc` channel
//!   (so each job wakes it across cores, while main polls for the answer) and answers
//!   with checks known by construction: a seeded shuffle of `0..JOB_LEN` sorted back must
//!   be the identity, its sum `n(n-1)/2` in integers and (square roots of squares, SSE)
//!   in `f64`, exactly. While computing it samples `Instant`; no gap between two samples
//!   may exceed `MAX_JUMP_MS`, and none may go backwards.
//! - The main thread is a channel endpoint: it writes `MESSAGES` numbered, checksummed
//!   messages (`chan_proto::make`, the migrator's stream seed) on `stream` for the bare
//!   `sink`, which verifies every one; it tells the controller on `ready` once its
//!   threads run, and stops when the controller says on `done` that it has migrated it.
//!
//! The last line is `migrate-std: ... all checks passed`, or one `migrate-std: FAILED: `
//! line per failed check and exit status 1. Outside a Quest Hermit sandbox (a host build)
//! there are no channels: it runs the threads for `MIN_JOBS` jobs and reports the same.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

/// The stream's seed (the migrator's `SEED`: its sink verifies our messages with it).
const SEED: u64 = 0x6d69_6772;
/// Elements a compute job shuffles and sorts.
const JOB_LEN: u64 = 1024;
/// How often main looks for a compute job's answer (a blocking sleep: Hermit busy-waits
/// sleeps under 10 ms).
const POLL: Duration = Duration::from_millis(10);
/// `Instant` samples in a compute job: one per this many elements.
const SAMPLE_EVERY: usize = 64;

/// The knobs, from the environment.
#[derive(Clone, Copy, Debug)]
struct Params {
    /// Length of one sleep.
    sleep: Duration,
    /// Messages to send on `stream` (the sink expects exactly this many).
    messages: u64,
    /// Messages sent per compute job.
    burst: u64,
    /// Longest allowed sleep overshoot or gap between two `Instant` samples.
    max_jump: Duration,
    /// Compute jobs to complete at least.
    min_jobs: u64,
}

impl Params {
    fn from_env() -> Self {
        let var =
            |name: &str, default| chan_proto::number(std::env::var(name).ok().as_deref(), default);
        Self {
            sleep: Duration::from_millis(var("SLEEP_MS", 10).max(1)),
            messages: var("MESSAGES", 200),
            burst: var("BURST", 4).max(1),
            max_jump: Duration::from_millis(var("MAX_JUMP_MS", 1000)),
            min_jobs: var("MIN_JOBS", 10),
        }
    }
}

/// What the sleeper saw.
#[derive(Debug, Default)]
struct SleepReport {
    sleeps: u64,
    largest_overshoot: Duration,
    failures: Vec<String>,
}

/// Sleeps until `stop`, checking every sleep with `Instant`.
fn sleeper(stop: &AtomicBool, done: &AtomicU64, p: Params) -> SleepReport {
    let mut r = SleepReport::default();
    let mut last = Instant::now();
    while !stop.load(Ordering::Acquire) && r.failures.len() < 5 {
        let before = Instant::now();
        if before < last {
            r.failures.push(format!(
                "sleep {}: Instant went backwards between two sleeps",
                r.sleeps
            ));
        }
        thread::sleep(p.sleep);
        let after = Instant::now();
        match after.checked_duration_since(before) {
            None => r.failures.push(format!(
                "sleep {}: Instant went backwards across the sleep",
                r.sleeps
            )),
            Some(took) if took < p.sleep => r.failures.push(format!(
                "sleep {}: a sleep of {:?} ended after {took:?}",
                r.sleeps, p.sleep
            )),
            Some(took) => {
                let over = took - p.sleep;
                r.largest_overshoot = r.largest_overshoot.max(over);
                if over > p.max_jump {
                    r.failures.push(format!(
                        "sleep {}: a sleep of {:?} lasted {took:?}, more than {:?} too long",
                        r.sleeps, p.sleep, p.max_jump
                    ));
                }
            }
        }
        r.sleeps += 1;
        done.store(r.sleeps, Ordering::Relaxed);
        last = after;
    }
    r
}

/// One compute job's answer.
#[derive(Debug)]
struct JobResult {
    round: u64,
    /// Elements the shuffle moved (a shuffle that moved few would check little).
    moved: u64,
    /// The sorted shuffle is `0..JOB_LEN`.
    identity: bool,
    int_sum: u64,
    float_sum: f64,
    /// Largest gap between two `Instant` samples; `None` if one went backwards.
    largest_gap: Option<Duration>,
    /// The vCPU it ran on (its APIC ID), at the end.
    core: u32,
}

/// Job `round`: shuffle `0..JOB_LEN` (Fisher-Yates, seeded by `round`), sum it, sort it.
fn compute(round: u64) -> JobResult {
    let mut v: Vec<u64> = (0..JOB_LEN).collect();
    let mut state = chan_proto::mix(SEED ^ round);
    for i in (1..v.len()).rev() {
        state = chan_proto::mix(state);
        v.swap(i, (state % (i as u64 + 1)) as usize);
    }
    let moved = v
        .iter()
        .enumerate()
        .filter(|&(i, &x)| i as u64 != x)
        .count() as u64;
    let (mut float_sum, mut int_sum) = (0.0f64, 0u64);
    let mut last = Instant::now();
    let mut largest_gap = Some(Duration::ZERO);
    for (i, &x) in v.iter().enumerate() {
        // Exact: x * x < 2^53, and the square root of a perfect square is exact.
        float_sum += ((x * x) as f64).sqrt();
        int_sum += x;
        if i % SAMPLE_EVERY == 0 {
            let now = Instant::now();
            largest_gap = match (largest_gap, now.checked_duration_since(last)) {
                (Some(g), Some(d)) => Some(g.max(d)),
                _ => None,
            };
            last = now;
        }
    }
    v.sort_unstable();
    let identity = v.iter().enumerate().all(|(i, &x)| i as u64 == x);
    JobResult {
        round,
        moved,
        identity,
        int_sum,
        float_sum,
        largest_gap,
        core: current_core(),
    }
}

/// What is wrong with `r`, the answer to job `round`.
fn check_job(r: &JobResult, round: u64, max_jump: Duration) -> Option<String> {
    let n = JOB_LEN;
    let sum = n * (n - 1) / 2;
    let why = if r.round != round {
        format!("got the answer to job {} instead", r.round)
    } else if r.moved < n / 2 {
        format!("the shuffle moved only {} of {n} elements", r.moved)
    } else if !r.identity {
        "the sorted shuffle is not 0..n".to_string()
    } else if r.int_sum != sum {
        format!("integer sum {}, expected {sum}", r.int_sum)
    } else if r.float_sum != sum as f64 {
        format!("f64 sum {}, expected {sum}", r.float_sum)
    } else {
        match r.largest_gap {
            None => "Instant went backwards while computing".to_string(),
            Some(g) if g > max_jump => format!("Instant jumped by {g:?} while computing"),
            Some(_) => return None,
        }
    };
    Some(format!("compute job {round}: {why}"))
}

fn main() {
    let p = Params::from_env();
    let mut link = match Link::open() {
        Ok(l) => l,
        Err(e) => {
            println!("migrate-std: {e}");
            std::process::exit(2);
        }
    };
    std::process::exit(run(&mut link, p));
}

/// Runs the threads and the stream until the controller is done; the exit status.
fn run(link: &mut Link, p: Params) -> i32 {
    let stop = Arc::new(AtomicBool::new(false));
    let (job_tx, job_rx) = mpsc::channel::<u64>();
    let (result_tx, result_rx) = mpsc::channel::<JobResult>();
    // Hermit spawns round-robin from core 1: the compute thread gets the second vCPU, the
    // sleeper shares the first with main.
    let computer = thread::spawn(move || {
        for round in job_rx {
            if result_tx.send(compute(round)).is_err() {
                break;
            }
        }
    });
    let sleeps_done = Arc::new(AtomicU64::new(0));
    let sleeper = {
        let (stop, sleeps_done) = (Arc::clone(&stop), Arc::clone(&sleeps_done));
        thread::spawn(move || sleeper(&stop, &sleeps_done, p))
    };
    let mut failures = Vec::new();
    // Printed before the controller hears of it, so before the first migration.
    println!(
        "migrate-std: threads running (sleeps of {:?}, jobs of {JOB_LEN} elements, {} messages); ready",
        p.sleep, p.messages
    );
    if let Err(e) = link.ready() {
        failures.push(e);
    }
    let (mut round, mut seq, mut done) = (0u64, 0u64, false);
    let mut largest_gap = Duration::ZERO;
    let mut cores = Vec::new();
    while failures.is_empty() && !(done && seq >= p.messages && round >= p.min_jobs) {
        if job_tx.send(round).is_err() {
            failures.push(format!("compute job {round}: the compute thread is gone"));
            break;
        }
        for _ in 0..p.burst {
            if seq < p.messages {
                if let Err(e) = link.send(seq) {
                    failures.push(format!("message {seq}: {e}"));
                }
                seq += 1;
            }
        }
        // Polled, sleeping between polls: Hermit 0.11 can panic when a timed wait
        // (`recv_timeout`) times out while another core wakes it.
        let mut polls = 0u64;
        let answer = loop {
            match result_rx.try_recv() {
                Err(mpsc::TryRecvError::Empty) => {
                    polls += 1;
                    if polls == 100 {
                        polls = 0;
                        println!(
                            "migrate-std: still waiting for job {round} ({} sleeps so far)",
                            sleeps_done.load(Ordering::Relaxed)
                        );
                    }
                    thread::sleep(POLL);
                }
                other => break other.map_err(|_| ()),
            }
        };
        println!(
            "migrate-std: job {round} answered, {seq} messages sent, {} sleeps",
            sleeps_done.load(Ordering::Relaxed)
        );
        match answer {
            Ok(r) => {
                failures.extend(check_job(&r, round, p.max_jump));
                largest_gap = largest_gap.max(r.largest_gap.unwrap_or_default());
                if !cores.contains(&r.core) {
                    cores.push(r.core);
                }
            }
            Err(_) => failures.push(format!("compute job {round}: no answer")),
        }
        round += 1;
        match link.done() {
            Ok(d) => done |= d,
            Err(e) => failures.push(e),
        }
    }
    stop.store(true, Ordering::Release);
    drop(job_tx);
    if computer.join().is_err() {
        failures.push("the compute thread panicked".to_string());
    }
    let sleeps = match sleeper.join() {
        Ok(r) => {
            failures.extend(r.failures.iter().cloned());
            r
        }
        Err(_) => {
            failures.push("the sleeper panicked".to_string());
            SleepReport::default()
        }
    };
    if sleeps.sleeps == 0 {
        failures.push("the sleeper never slept".to_string());
    }
    let main_core = current_core();
    // Two lines: the monitor breaks console lines longer than its line buffer.
    println!(
        "migrate-std: {round} compute jobs verified (compute thread on vCPU {cores:?}, main on vCPU {main_core}), largest compute gap {} us",
        largest_gap.as_micros()
    );
    println!(
        "migrate-std: {} sleeps of {:?} none early (largest overshoot {} us), {seq} messages sent, Instant monotonic",
        sleeps.sleeps,
        p.sleep,
        sleeps.largest_overshoot.as_micros(),
    );
    if failures.is_empty() {
        println!("migrate-std: all checks passed");
        0
    } else {
        for f in &failures {
            println!("migrate-std: FAILED: {f}");
        }
        1
    }
}

/// The channels: `stream` to the sink, `ready` to and `done` from the controller.
#[cfg(target_os = "hermit")]
struct Link {
    stream: quest_channel::Sender,
    ready: quest_channel::Sender,
    done: quest_channel::Receiver,
    buf: Vec<u8>,
}

#[cfg(target_os = "hermit")]
impl Link {
    fn open() -> Result<Self, String> {
        use quest_channel::{Receiver, Sender};
        let open = |what: &str, e: &dyn std::fmt::Display| format!("cannot open {what}: {e}");
        Ok(Self {
            stream: Sender::open("stream").map_err(|e| open("stream", &e))?,
            ready: Sender::open("ready").map_err(|e| open("ready", &e))?,
            done: Receiver::open("done").map_err(|e| open("done", &e))?,
            buf: vec![0; chan_proto::MAX_LEN],
        })
    }

    fn ready(&mut self) -> Result<(), String> {
        self.ready.send(&[1]).map_err(|e| format!("ready: {e}"))
    }

    fn send(&mut self, seq: u64) -> Result<(), String> {
        let len = chan_proto::make(SEED, seq, &mut self.buf);
        self.stream
            .send(&self.buf[..len])
            .map_err(|e| e.to_string())
    }

    fn done(&mut self) -> Result<bool, String> {
        let mut byte = [0u8; 1];
        match self.done.try_recv(&mut byte) {
            Ok(got) => Ok(got.is_some()),
            Err(e) => Err(format!("done: {e}")),
        }
    }
}

/// No channels outside a Quest Hermit sandbox: messages go nowhere and the controller is
/// done at once, so a host run exercises the threads and checks alone.
#[cfg(not(target_os = "hermit"))]
struct Link;

#[cfg(not(target_os = "hermit"))]
impl Link {
    fn open() -> Result<Self, String> {
        println!("migrate-std: not in a Quest Hermit sandbox: no channels, threads only");
        Ok(Self)
    }

    fn ready(&mut self) -> Result<(), String> {
        Ok(())
    }

    fn send(&mut self, seq: u64) -> Result<(), String> {
        let mut buf = [0u8; chan_proto::MAX_LEN];
        let len = chan_proto::make(SEED, seq, &mut buf);
        chan_proto::verify(SEED, seq, &buf[..len]).map_err(|e| e.to_string())
    }

    fn done(&mut self) -> Result<bool, String> {
        Ok(true)
    }
}

/// The initial APIC ID of the core this runs on (CPUID leaf 1, EBX bits 31..24); in a
/// Quest sandbox that is the vCPU index.
#[cfg(target_arch = "x86_64")]
fn current_core() -> u32 {
    // `__cpuid` is an `unsafe fn` on older toolchains and safe on newer ones.
    #[allow(unused_unsafe)]
    // SAFETY: CPUID exists on every x86_64 processor and leaf 1 is always implemented; it
    // only reads processor identification registers.
    let leaf = unsafe { std::arch::x86_64::__cpuid(1) };
    leaf.ebx >> 24
}

/// Other architectures have no portable way to ask; report 0.
#[cfg(not(target_arch = "x86_64"))]
fn current_core() -> u32 {
    0
}
