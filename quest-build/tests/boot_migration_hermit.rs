//! Boot test of a Hermit sandbox's migration (`partition-manifests/migration-hermit.toml`):
//! `migrate-std`, a std program on two vCPUs, sleeps, computes and writes to a channel
//! while a controller migrates it 10 times between two placements that differ in cores
//! and host memory. Asserted: the monitor's records (10 moves back and forth, each within
//! `max_downtime`), that the moves happened while the program's threads ran, the program's
//! own checks (sleeps never early and stretched by no more than the worst downtime plus
//! scheduling latency, `Instant` monotonic, verified compute jobs on both vCPUs), every
//! message verified by the bare sink, and no fault anywhere.
//!
//! Like `boot.rs`, it skips (loudly) only when Bochs is missing and `QUEST_REQUIRE_BOOT`
//! is unset.

#[macro_use]
mod common;
use common::{assert_passed, check_back_and_forth, line, number_after};

/// Scheduling latency allowed on top of a migration's downtime, in microseconds: a
/// timer that expired during the move fires on arrival, then Hermit switches to the
/// sleeping thread (the manifest's MAX_JUMP_MS allows the same margin over max_downtime).
const LATENCY_US: u64 = 50_000;

/// Index of the first console line containing `wanted`.
fn position(console: &str, wanted: &str) -> usize {
    console
        .lines()
        .position(|l| l.contains(wanted))
        .unwrap_or_else(|| panic!("no console line contains {wanted:?}"))
}

#[test]
fn a_hermit_sandbox_sleeps_computes_and_streams_correctly_across_ten_migrations() {
    let (_, out) = boot_example!("migration-hermit");
    let c = &out.console;
    assert_passed(&out);

    // Back and forth: cores [1, 2] <-> [3, 4] (vCPU i to the i-th), RAM home <-> standby
    // region, all 32 MiB copied while stopped, each within max_downtime = "1s".
    let log = check_back_and_forth(c, "worker", 10, (&[1, 2], &[3, 4]), 8192, 1000);
    let (tsc_khz, worst) = (log.tsc_khz, log.worst);

    // Every move happened while the program's threads ran: after it said ready, before
    // its result.
    let ready = position(c, "[worker] migrate-std: threads running");
    let result = position(c, "[worker] migrate-std: all checks passed");
    let migrated: Vec<usize> = c
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with("quest: migrated 'worker'"))
        .map(|(i, _)| i)
        .collect();
    assert!(
        migrated.iter().all(|&i| ready < i && i < result),
        "{migrated:?}"
    );
    // And the compute thread answered jobs in between (woken across cores each time).
    let (first, last) = (migrated[0], migrated[migrated.len() - 1]);
    let answered = c
        .lines()
        .enumerate()
        .filter(|(i, l)| first < *i && *i < last && l.contains("[worker] migrate-std: job "))
        .count();
    assert!(
        answered > 0,
        "no compute job answered during the migrations"
    );

    // The program's own checks, and its clock against the monitor's downtimes: a sleep
    // (or a compute thread's gap between two `Instant` samples) stretched by a move by at
    // most that move's downtime, plus scheduling latency.
    let jobs = line(c, " compute jobs verified (compute thread on vCPU ");
    assert!(jobs.starts_with("[worker] migrate-std: "), "{jobs}");
    assert!(number_after(jobs, "migrate-std: ") >= 20, "{jobs}");
    // Both vCPUs worked: the compute thread on the second, main on the first.
    assert!(
        jobs.contains("(compute thread on vCPU [1], main on vCPU 0)"),
        "{jobs}"
    );
    let sleeps = line(c, " sleeps of 10ms none early (largest overshoot ");
    assert!(sleeps.starts_with("[worker] migrate-std: "), "{sleeps}");
    assert!(number_after(sleeps, "migrate-std: ") > 0, "{sleeps}");
    assert!(
        sleeps.ends_with("), 100 messages sent, Instant monotonic"),
        "{sleeps}"
    );
    let worst_us = worst * 1000 / tsc_khz;
    let overshoot = number_after(sleeps, "largest overshoot ");
    let gap = number_after(jobs, "largest compute gap ");
    for (what, jump) in [("sleep overshoot", overshoot), ("compute gap", gap)] {
        assert!(
            jump <= worst_us + LATENCY_US,
            "{what} {jump} us, worst downtime {worst_us} us"
        );
    }

    // The bare peers: every message verified in order across the moves; the controller
    // moved it 10 times and may not move the others.
    line(c, "[sink] sink: 100 messages verified in order");
    let controller = line(c, "[controller] controller: 10 migrations of the mover");
    assert!(controller.contains("refusals as expected"), "{controller}");
    for sandbox in ["controller", "worker", "sink"] {
        line(c, &format!("quest:   '{sandbox}': exited 0, faults 0"));
    }
}
