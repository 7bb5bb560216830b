//! Boot test of channels with a Hermit endpoint: `pingpong-hermit` (ping-std, a std
//! program in a Hermit unikernel, against the bare pong): 100 000 verified messages both
//! ways with backpressure, the benchmark, no VM exit per message, and a 40 MiB heap hog
//! that Hermit places outside the channel window its boot page tables map (checked in
//! `common::checks`, shared with the SVM boot tests).
//!
//! Like `boot.rs`, it skips (loudly) only when Bochs is missing and `QUEST_REQUIRE_BOOT`
//! is unset. (Helpers in `tests/common`, shared with
//! `boot_channels.rs`.)

#[macro_use]
mod common;

#[test]
fn a_hermit_ping_and_a_bare_pong_verify_every_message_while_hermit_fills_its_heap() {
    let (_, out) = boot_example!("pingpong-hermit");
    common::checks::pingpong_hermit(&out);
}
