//! Sleeping channel endpoints (`partition-manifests/channels-doorbell.toml`): both ends
//! use the monitor's doorbell (`WAIT` / `DOORBELL` hypercalls) instead of spinning
//! forever. The argument picks the end: `ringer` writes `to-sleeper`, `sleeper` reads it.
//!
//! 1. Wake-ups: the ringer sends `WAKES` messages, pausing long before each, so the
//!    sleeper gives up spinning and sleeps in `WAIT` every time; each message carries its
//!    send TSC, and the sleeper reports the wake-up latency (send to receive, in cycles).
//! 2. Races: `RACES` mixed-size messages with pauses drawn around the spin limit, so
//!    sleeps and rings interleave every which way; all must arrive, verified, in order.
//! 3. A sleeping writer: the sleeper pauses while the ringer sends a burst larger than
//!    the ring, so the ringer sleeps on a full ring until the sleeper's reads ring it.
//!
//! Each end counts its own `WAIT` and `DOORBELL` calls; the monitor's summary counts them
//! too (and every VM exit).
#![no_std]
#![no_main]

extern crate alloc;

mod counting;

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use chan_proto::pingpong::burst_len;
use chan_proto::stats::summarize;
use chan_proto::{fill, make, mix, verify, verify_len, MAX_LEN};
use core::sync::atomic::Ordering;
use counting::{CountingDoorbell, RINGS, WAITS};
use quest_channel::{Receiver, Sender};
use quest_rt::time::rdtsc;
use quest_rt::{println, Ctx};

quest_rt::entry!(main, vcpu0_only);

/// The channel the ringer writes and the sleeper reads.
const CHANNEL: &str = "to-sleeper";
/// Polls before an endpoint sleeps (a few thousand cycles of spinning).
const SPIN_LIMIT: u32 = 200;
/// The ringer's pause before each wake-up message: far longer than the spin limit.
const WAKE_PAUSE: u64 = 1_000_000;
/// The sleeper's pause before phase 3, so the ringer's burst fills the ring.
const BURST_PAUSE: u64 = 5_000_000;
/// Stream seeds of phases 2 and 3.
const RACE_SEED: u64 = 0x7261_6365;
const BURST_SEED: u64 = 0x6275_7273;

fn pause(cycles: u64) {
    let start = rdtsc();
    while rdtsc().wrapping_sub(start) < cycles {
        core::hint::spin_loop();
    }
}

/// Phase 2's pause before message `seq`: 0 to about 4x the spinning time.
fn race_pause(seq: u64) -> u64 {
    mix(seq ^ RACE_SEED) % 40_000
}

fn main(ctx: &Ctx) -> i32 {
    let env = ctx.args();
    let wakes = chan_proto::number(env.var("WAKES"), 20);
    let races = chan_proto::number(env.var("RACES"), 1000);
    let role = env.args().next().unwrap_or("");
    let doorbell = CountingDoorbell(quest_rt::doorbell::VmcallDoorbell);
    let result = match role {
        "ringer" => ringer(doorbell, wakes, races),
        "sleeper" => sleeper(doorbell, wakes, races),
        other => Err(format!("unknown role {other:?} (ringer or sleeper)")),
    };
    match result {
        Ok(()) => {
            println!(
                "{role}: done: {} WAIT and {} DOORBELL hypercalls",
                WAITS.load(Ordering::Relaxed),
                RINGS.load(Ordering::Relaxed)
            );
            0
        }
        Err(e) => {
            println!("{role}: FAILED: {e}");
            1
        }
    }
}

/// Why `to-sleeper` could not be opened, as the result line says it.
fn cannot_open(e: quest_channel::OpenError) -> String {
    format!("cannot open {CHANNEL}: {e}")
}

fn ringer(doorbell: CountingDoorbell, wakes: u64, races: u64) -> Result<(), String> {
    let tx = Sender::open(CHANNEL).map_err(cannot_open)?;
    let mut tx = tx.with_doorbell(doorbell).with_spin_limit(SPIN_LIMIT);
    // The pauses count from the sleeper's first look: a sleeper that starts later than the
    // ringer (QEMU's emulation entered it 7 M cycles after the ringer) would otherwise
    // find the first message waiting and never sleep for it.
    while !tx.reader_opened() {
        core::hint::spin_loop();
    }
    for seq in 0..wakes {
        pause(WAKE_PAUSE);
        let mut msg = [0u8; 16];
        msg[..8].copy_from_slice(&seq.to_le_bytes());
        msg[8..].copy_from_slice(&rdtsc().to_le_bytes());
        tx.send(&msg).map_err(|e| format!("wake-up {seq}: {e}"))?;
    }
    let rings = RINGS.load(Ordering::Relaxed);
    println!("ringer: sent {wakes} wake-up messages, rang {rings} times");
    let mut buf = vec![0u8; MAX_LEN];
    for seq in 0..races {
        pause(race_pause(seq));
        let len = make(RACE_SEED, seq, &mut buf);
        tx.send(&buf[..len])
            .map_err(|e| format!("race {seq}: {e}"))?;
    }
    let waits = WAITS.load(Ordering::Relaxed);
    let burst = burst_len(tx.max_message_len());
    for seq in 0..burst {
        fill(BURST_SEED, seq, &mut buf);
        tx.send(&buf).map_err(|e| format!("burst {seq}: {e}"))?;
    }
    let slept = WAITS.load(Ordering::Relaxed) - waits;
    println!("ringer: burst of {burst} x {MAX_LEN} B sent; slept on the full ring {slept} times");
    if slept == 0 {
        return Err("the burst never made the writer sleep".into());
    }
    Ok(())
}

fn sleeper(doorbell: CountingDoorbell, wakes: u64, races: u64) -> Result<(), String> {
    let rx = Receiver::open(CHANNEL).map_err(cannot_open)?;
    let mut rx = rx.with_doorbell(doorbell).with_spin_limit(SPIN_LIMIT);
    let mut buf = vec![0u8; MAX_LEN];
    let mut latency = Vec::with_capacity(wakes as usize);
    for seq in 0..wakes {
        let n = rx
            .recv(&mut buf)
            .map_err(|e| format!("wake-up {seq}: {e}"))?;
        let now = rdtsc();
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&buf[at..at + 8]);
            u64::from_le_bytes(w)
        };
        if n != 16 || word(0) != seq {
            return Err(format!("wake-up {seq}: got {n} bytes, seq {}", word(0)));
        }
        latency.push(now.wrapping_sub(word(8)));
    }
    let waits = WAITS.load(Ordering::Relaxed);
    if let Some(s) = summarize(&mut latency) {
        println!(
            "sleeper: {wakes} wake-ups verified after {waits} WAITs; send-to-receive cycles min={} median={} max={}",
            s.min, s.median, s.max
        );
    }
    if waits < wakes {
        return Err(format!("only {waits} WAITs for {wakes} paused messages"));
    }
    for seq in 0..races {
        let n = rx.recv(&mut buf).map_err(|e| format!("race {seq}: {e}"))?;
        verify(RACE_SEED, seq, &buf[..n]).map_err(|e| format!("race {seq}: {e}"))?;
    }
    println!(
        "sleeper: {races} racing messages verified in order ({} WAITs so far)",
        WAITS.load(Ordering::Relaxed)
    );
    pause(BURST_PAUSE);
    let rings = RINGS.load(Ordering::Relaxed);
    let burst = burst_len(rx.max_message_len());
    for seq in 0..burst {
        let n = rx.recv(&mut buf).map_err(|e| format!("burst {seq}: {e}"))?;
        verify_len(BURST_SEED, seq, MAX_LEN, &buf[..n]).map_err(|e| format!("burst {seq}: {e}"))?;
    }
    println!(
        "sleeper: burst of {burst} verified; rang the sleeping writer {} times",
        RINGS.load(Ordering::Relaxed) - rings
    );
    Ok(())
}
