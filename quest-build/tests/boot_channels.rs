//! Boot tests of channels: `pingpong` (100 000 verified messages both ways, backpressure,
//! the benchmark, zero VM exits per message), `channels-hostile` (a hostile writer and a
//! reader that writes are contained, the rest finish) and `channels-doorbell` (endpoints
//! that sleep in `WAIT` and are rung), each built and booted in Bochs, console asserted.
//!
//! Like `boot.rs`, they skip (loudly) only when Bochs is missing and `QUEST_REQUIRE_BOOT`
//! is unset. (Helpers in `tests/common`, shared with
//! `boot_hermit_channels.rs`.)

use quest_build::cli::bench_channels::{console_lines, summary_exits, unexplained_exits};

#[macro_use]
mod common;
use common::{
    assert_passed, check_calibration, check_ping_benchmark, check_pingpong_traffic, line,
    number_after,
};

#[test]
fn pingpong_verifies_every_message_both_ways_with_zero_exits_per_message() {
    let (_, out) = boot_example!("pingpong");
    let c = &out.console;
    assert_passed(&out);

    // Calibrated before the sandboxes ran: both channels share one core pair (measured
    // once), seen from opposite ends, so their offsets are opposite.
    let offsets = check_calibration(c, &[("ping-to-pong", 0, 1), ("pong-to-ping", 1, 0)], 1);
    assert_eq!(offsets[0], -offsets[1], "{offsets:?}");

    // Backpressure both ways, every message verified and counted on both sides.
    check_pingpong_traffic(c, "ping");

    // The benchmark lines, consistent with themselves.
    check_ping_benchmark(c);

    // No VM exit beyond the console lines and the exit call: zero exits per message on
    // the spinning path.
    for sandbox in ["ping", "pong"] {
        let exits = summary_exits(c, sandbox).expect("summary exit counts");
        assert_eq!(
            unexplained_exits(c, sandbox),
            Some(0),
            "{sandbox}: {} exits for {} console lines: {:?}",
            exits.total,
            console_lines(c, sandbox),
            exits.by_reason
        );
        line(c, &format!("quest:   '{sandbox}': exited 0, faults 0"));
    }
}

#[test]
fn a_hostile_writer_and_a_writing_reader_are_contained_and_the_rest_finish() {
    let (_, out) = boot_example!("channels-hostile");
    common::checks::channels_hostile(&out);
}

#[test]
fn sleeping_endpoints_wake_on_the_doorbell_at_one_exit_per_hypercall() {
    let (_, out) = boot_example!("channels-doorbell");
    let c = &out.console;
    assert_passed(&out);
    let wakes = line(c, "[sleeper] sleeper: 20 wake-ups verified after ");
    assert!(number_after(wakes, "after ") >= 20, "{wakes}");
    line(
        c,
        "[sleeper] sleeper: 1000 racing messages verified in order",
    );
    let burst = line(c, "[ringer] ringer: burst of ");
    assert!(number_after(burst, "full ring ") > 0, "{burst}");
    let rang = line(c, "[sleeper] sleeper: burst of ");
    assert!(number_after(rang, "sleeping writer ") > 0, "{rang}");

    for sandbox in ["ringer", "sleeper"] {
        // What the app counted equals what the monitor counted ...
        let done = line(c, &format!("[{sandbox}] {sandbox}: done: "));
        let (waits, rings) = (
            number_after(done, "done: "),
            number_after(done, "WAIT and "),
        );
        let summary = line(c, &format!("quest:   '{sandbox}': exited 0"));
        assert_eq!(number_after(summary, "doorbells "), rings, "{summary}");
        assert_eq!(number_after(summary, "waits "), waits, "{summary}");
        // ... and each WAIT or DOORBELL costs exactly one VM exit (its VMCALL), no more.
        assert_eq!(
            unexplained_exits(c, sandbox),
            Some(waits + rings),
            "{summary}"
        );
    }
}
