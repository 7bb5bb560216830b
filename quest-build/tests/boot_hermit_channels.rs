//! Boot test of channels with a Hermit endpoint: `pingpong-hermit` (ping-std, a std
//! program in a Hermit unikernel, against the bare pong): 100 000 verified messages both
//! ways with backpressure, the benchmark, no VM exit per message, and a 40 MiB heap hog
//! that Hermit places outside the channel window its boot page tables map.
//!
//! Like `boot.rs`, it skips (loudly) only when Bochs is missing and `QUEST_REQUIRE_BOOT`
//! is unset. (Helpers in `tests/common`, shared with
//! `boot_channels.rs`.)

use quest_abi::layout::{CHANNEL_WINDOW_GPA, CHANNEL_WINDOW_SIZE};
use quest_build::cli::bench_channels::{summary_exits, unexplained_exits};
use quest_build::runtime::hermit::page_tables::HERMIT_VIRTUAL_START;

#[macro_use]
mod common;
use common::{assert_passed, check_ping_benchmark, check_pingpong_traffic, line, number_after};

/// The `0x...` hexadecimal number right after `key` in `text`.
fn hex_after(text: &str, key: &str) -> u64 {
    let rest = text
        .split_once(key)
        .and_then(|(_, r)| r.strip_prefix("0x"))
        .unwrap_or_else(|| panic!("no 0x number after {key:?} in {text:?}"));
    let digits: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
    u64::from_str_radix(&digits, 16).unwrap_or_else(|e| panic!("{digits:?}: {e}"))
}

#[test]
fn a_hermit_ping_and_a_bare_pong_verify_every_message_while_hermit_fills_its_heap() {
    let (_, out) = boot_example!("pingpong-hermit");
    let c = &out.console;
    assert_passed(&out);

    // The std program found both channels in its directory through the boot page tables.
    let largest = quest_channel::wire::max_message_len(64 << 10);
    line(
        c,
        &format!("[ping] ping-std: channels open (largest message {largest} B); 100000 messages"),
    );

    // Backpressure both ways, every message verified and counted on both sides.
    check_pingpong_traffic(c, "ping-std");

    // The heap hog: 40 MiB written while messages flowed, intact at the end, all of it
    // where Hermit 0.11 allocates (its own virtual range), nowhere near the window.
    let hog = line(c, "[ping] ping-std: heap hog: 40 MiB in 40 chunks at ");
    assert!(hog.contains("every word intact"), "{hog}");
    let (lo, hi) = (hex_after(hog, " chunks at "), hex_after(hog, ".."));
    assert!(hi - lo >= 40 << 20, "{hog}");
    assert!(hi <= CHANNEL_WINDOW_GPA || lo >= CHANNEL_WINDOW_GPA + CHANNEL_WINDOW_SIZE);
    assert!(lo >= HERMIT_VIRTUAL_START, "{hog}");

    // The benchmark lines, consistent with themselves.
    let s = check_ping_benchmark(c);
    // Derived from `Instant`: within 10 % of the frequency the monitor measured.
    let measured = number_after(line(c, "quest: TSC "), "quest: TSC ");
    assert!(
        s.tsc_khz.abs_diff(measured) * 10 <= measured,
        "{s:?} vs {measured} kHz"
    );

    // No VM exit per message: bare pong exits only for its console lines and its exit;
    // Hermit's exits are its boot (CPUID, XSETBV, one MSR) and its console, a fixed few
    // dozen against 200 000 messages, and none of them an EPT violation.
    assert_eq!(unexplained_exits(c, "pong"), Some(0));
    let exits = summary_exits(c, "ping").expect("summary exit counts");
    assert!(exits.total < 100, "{exits:?}");
    assert!(
        exits.by_reason.keys().all(|r| !r.contains("ept")),
        "{exits:?}"
    );
    for sandbox in ["ping", "pong"] {
        line(c, &format!("quest:   '{sandbox}': exited 0, faults 0"));
    }
}
