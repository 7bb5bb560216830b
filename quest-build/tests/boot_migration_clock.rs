//! Boot test of `downtime_clock` (`partition-manifests/migration-clock.toml`): two bare
//! sandboxes read their TSC without pause while a controller migrates each 5 times
//! (cores and RAM); then the controller sends each its own TSC. `elapses` (the default)
//! must have seen every pause as a step of at least the downtime the monitor reported,
//! and end level with the controller's clock; `hidden` must have seen no step as long as
//! a pause, and end behind the controller by what the pauses hid (at most their sum).
//!
//! Like `boot.rs`, it skips (loudly) only when Bochs is missing and `QUEST_REQUIRE_BOOT`
//! is unset.

#[macro_use]
mod common;
use common::{assert_passed, check_back_and_forth, line, number_after};

/// The clock's report: its largest step between two TSC reads, and how far it is behind
/// the controller's clock (negative: ahead, by the message's transfer time).
fn report(console: &str, sandbox: &str) -> (u64, i64) {
    let l = line(console, &format!("[{sandbox}] clock: largest step "));
    let behind = l
        .split_once("behind the controller by ")
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no lag in {l:?}"));
    (number_after(l, "largest step "), behind)
}

#[test]
fn the_downtime_clock_shows_or_hides_a_migrations_pause() {
    let (_, out) = boot_example!("migration-clock");
    let c = &out.console;
    assert_passed(&out);

    // `elapses`: every pause shows, as a step no shorter than the reported downtime (the
    // stop measured from the request to the release, which the vCPU's pause contains),
    // and not much longer; its clock ends level with the controller's.
    let elapses = check_back_and_forth(c, "elapses", 5, (&[1], &[2]), 1024, 1000);
    let (step, behind) = report(c, "elapses");
    let longest = elapses.worst;
    assert!(
        step >= longest && step <= 2 * longest,
        "elapses: largest step {step}, longest downtime {longest}"
    );
    let shortest = elapses.moves.iter().map(|m| m.downtime).min().unwrap_or(0);
    assert!(
        behind.unsigned_abs() < shortest / 4,
        "elapses: {behind} cycles off the controller's clock"
    );

    // `hidden`: no pause shows; its clock falls behind by the hidden part of each pause
    // (from the vCPU's exit to the release: most of the downtime, never more).
    let hidden = check_back_and_forth(c, "hidden", 5, (&[3], &[4]), 1024, 1000);
    let (step, behind) = report(c, "hidden");
    let shortest = hidden.moves.iter().map(|m| m.downtime).min().unwrap_or(0);
    let total: u64 = hidden.moves.iter().map(|m| m.downtime).sum();
    assert!(
        step < shortest / 4,
        "hidden: a step of {step} cycles, a pause is at least {shortest}"
    );
    assert!(
        behind > 0 && (behind as u64) >= total / 2 && (behind as u64) <= total,
        "hidden: {behind} cycles behind, the pauses took {total}"
    );
}
