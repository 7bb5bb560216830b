//! An ordinary std program (nothing Hermit-specific): threads on every core the sandbox
//! has, `args`/`env`, `std::time::Instant`, the wall clock and a `Vec`/`HashMap` workload,
//! each with a checked result. It runs unchanged on a Linux host (`cargo run -- a b`) and
//! as a Quest Hermit sandbox. Exit status 0 means every check passed.

use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// What one worker thread reports back.
struct WorkerReport {
    /// Worker number.
    id: usize,
    /// APIC ID of the core the worker started on.
    first_core: u32,
    /// APIC ID of the core the worker finished on.
    last_core: u32,
    /// Sum of the primes in its range.
    prime_sum: u64,
}

fn main() {
    // First thing: the TSC, so that the time from the sandbox's launch to `main` can be
    // measured against the monitor's launch TSC (`quest-build bench`).
    let main_tsc = tsc();
    let started = Instant::now();
    let mut failures = Vec::new();
    println!("hello-std: main started at TSC {main_tsc}");

    let args: Vec<String> = std::env::args().skip(1).collect();
    println!("hello-std: hello from std on core {}", current_core());
    println!("hello-std: {} argument(s): {:?}", args.len(), args);
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    vars.sort();
    for (k, v) in &vars {
        println!("hello-std: env {k}={v}");
    }
    if let Ok(greeting) = std::env::var("GREETING") {
        println!("hello-std: greeting: {greeting}");
    }

    check_wall_clock(&mut failures);
    check_threads(&mut failures);
    check_collections(&args, &mut failures);

    let elapsed = started.elapsed();
    if elapsed.as_nanos() == 0 {
        failures.push("Instant::elapsed() did not advance".to_string());
    }
    println!("hello-std: took {} us", elapsed.as_micros());

    if failures.is_empty() {
        println!("hello-std: all checks passed");
    } else {
        for f in &failures {
            println!("hello-std: FAILED: {f}");
        }
        std::process::exit(1);
    }
}

/// The wall clock (`SystemTime`) must be a plausible present: in a Quest sandbox it is the
/// boot time the monitor read from the RTC plus the TSC since, so 1970 means nobody set it.
fn check_wall_clock(failures: &mut Vec<String>) {
    /// 2024-01-01T00:00:00Z.
    const PLAUSIBLE_SINCE: u64 = 1_704_067_200;
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => {
            println!("hello-std: wall clock {} s since the epoch", d.as_secs());
            if d.as_secs() < PLAUSIBLE_SINCE {
                failures.push(format!("wall clock {} s is before 2024", d.as_secs()));
            }
        }
        Err(_) => failures.push("wall clock before the epoch".to_string()),
    }
}

/// Spawns one worker per available core; they meet at a barrier (so they really run at
/// the same time), each sums the primes in its own range, and the sums are checked
/// against a single-threaded computation.
fn check_threads(failures: &mut Vec<String>) {
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let workers = cores.clamp(2, 16);
    println!("hello-std: {cores} core(s) available, spawning {workers} threads");
    let barrier = Arc::new(Barrier::new(workers));
    let chunk = 2_000u64;
    let handles: Vec<_> = (0..workers)
        .map(|id| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let first_core = current_core();
                barrier.wait();
                let lo = id as u64 * chunk;
                let prime_sum = (lo..lo + chunk).filter(|&n| is_prime(n)).sum();
                WorkerReport {
                    id,
                    first_core,
                    last_core: current_core(),
                    prime_sum,
                }
            })
        })
        .collect();

    let mut seen_cores = Vec::new();
    let mut total = 0u64;
    for handle in handles {
        match handle.join() {
            Ok(r) => {
                println!(
                    "hello-std: thread {} ran on core {} (finished on core {}), prime sum {}",
                    r.id, r.first_core, r.last_core, r.prime_sum
                );
                if !seen_cores.contains(&r.first_core) {
                    seen_cores.push(r.first_core);
                }
                total += r.prime_sum;
            }
            Err(_) => failures.push("a worker thread panicked".to_string()),
        }
    }
    let expected: u64 = (0..workers as u64 * chunk).filter(|&n| is_prime(n)).sum();
    if total != expected {
        failures.push(format!(
            "thread prime sums add to {total}, expected {expected}"
        ));
    }
    seen_cores.sort_unstable();
    println!(
        "hello-std: {workers} threads joined, on {} distinct core(s) {:?}, total {total}",
        seen_cores.len(),
        seen_cores
    );
}

/// Counts words with a `HashMap` over text held in a `Vec`, and checks the counts against
/// what the construction guarantees.
fn check_collections(args: &[String], failures: &mut Vec<String>) {
    let started = Instant::now();
    let words = ["alpha", "beta", "gamma", "delta", "epsilon"];
    let rounds = 1_000usize;
    let mut text: Vec<&str> = Vec::with_capacity(rounds * 15);
    // Word i appears (i + 1) times per round.
    for _ in 0..rounds {
        for (i, w) in words.iter().enumerate() {
            text.extend(std::iter::repeat_n(*w, i + 1));
        }
    }
    text.extend(args.iter().map(String::as_str));
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for w in &text {
        *counts.entry(w).or_default() += 1;
    }
    for (i, w) in words.iter().enumerate() {
        let extra = args.iter().filter(|a| a.as_str() == *w).count();
        let expected = rounds * (i + 1) + extra;
        if counts.get(w) != Some(&expected) {
            failures.push(format!(
                "count of {w} is {:?}, expected {expected}",
                counts.get(w)
            ));
        }
    }
    let mut sorted: Vec<(&str, usize)> = counts.into_iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let elapsed = started.elapsed();
    println!(
        "hello-std: counted {} words, {} distinct, most frequent {:?}, in {} us",
        text.len(),
        sorted.len(),
        sorted.first(),
        elapsed.as_micros()
    );
}

/// Trial division; slow on purpose, so that the workers overlap.
fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
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

/// The time-stamp counter.
#[cfg(target_arch = "x86_64")]
fn tsc() -> u64 {
    #[allow(unused_unsafe)]
    // SAFETY: RDTSC exists on every x86_64 processor and only reads the counter.
    unsafe {
        std::arch::x86_64::_rdtsc()
    }
}

/// No time-stamp counter elsewhere; report 0.
#[cfg(not(target_arch = "x86_64"))]
fn tsc() -> u64 {
    0
}

/// Other architectures have no portable way to ask; report 0.
#[cfg(not(target_arch = "x86_64"))]
fn current_core() -> u32 {
    0
}
