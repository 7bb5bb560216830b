//! Boot tests of channels: `pingpong` (100 000 verified messages both ways, backpressure,
//! the benchmark, zero VM exits per message), `channels-hostile` (a hostile writer and a
//! reader that writes are contained, the rest finish), `channels-doorbell` (endpoints
//! that sleep in `WAIT` and are rung) and `channels-local` (the floor and channel round
//! trips inside one sandbox, `quest-build bench`'s reference rows), each built and booted
//! in Bochs, console asserted (`common::checks`, shared with the SVM boot tests).
//!
//! Like `boot.rs`, they skip (loudly) only when Bochs is missing and `QUEST_REQUIRE_BOOT`
//! is unset. (Helpers in `tests/common`, shared with
//! `boot_hermit_channels.rs`.)

#[macro_use]
mod common;

boot_checks! {
    require_bochs, common::build_and_boot;
    pingpong_verifies_every_message_both_ways_with_zero_exits_per_message: "pingpong" => pingpong;
    a_hostile_writer_and_a_writing_reader_are_contained_and_the_rest_finish: "channels-hostile" => channels_hostile;
    sleeping_endpoints_wake_on_the_doorbell_at_one_exit_per_hypercall: "channels-doorbell" => channels_doorbell;
    channels_inside_one_sandbox_run_at_zero_exits_per_message: "channels-local" => channels_local;
}
