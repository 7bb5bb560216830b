//! chan-local: the two reference rows beside the inter-sandbox round trip that
//! `quest-build bench` reports (`partition-manifests/channels-local.toml`), measured on
//! two vCPUs of ONE sandbox on the same two cores as pingpong:
//! 1. the **floor**: an atomic ping-pong that copies the same 64-byte payload each way
//!    (a flag per direction, on its own cache line, next to a payload line), what a
//!    program that shares memory between two cores can at best do;
//! 2. the **intra-sandbox channel**: the same `quest-channel` rings as pingpong's, built
//!    with `Sender::from_memory`/`Receiver::from_memory` over memory of this sandbox,
//!    timed exactly as ping times its round trips (64 B, 1 KiB, 4 KiB).
//!
//! vCPU 0 times, vCPU 1 echoes; vCPU 0 prints `bench floor 64 ...` and `bench rtt SIZE ...`
//! lines (ping's format) when both are done. `ROUNDS` (env) sets the timed round trips.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec;
use chan_proto::ping::bench::{rtt_line, time_round_trips};
use chan_proto::pingpong::{RTT_SIZES, WARMUP};
use chan_proto::MAX_LEN;
use core::sync::atomic::{AtomicU64, Ordering};
use quest_channel::{ChannelMemory, Receiver, Sender};
use quest_rt::{println, Ctx};

quest_rt::entry!(main);

/// One cache line of words.
#[repr(C, align(64))]
struct Line([AtomicU64; 8]);

impl Line {
    const fn new() -> Self {
        Self([const { AtomicU64::new(0) }; 8])
    }
}

/// One direction of the floor: the round number once the payload is in place, and the
/// payload, each on its own line.
struct Slot {
    flag: Line,
    data: Line,
}

static TO_ECHO: Slot = Slot {
    flag: Line::new(),
    data: Line::new(),
};
static TO_TIMER: Slot = Slot {
    flag: Line::new(),
    data: Line::new(),
};

/// Words of a channel's data area: 64 KiB, as pingpong's channels.
const DATA_WORDS: usize = 64 << 10 >> 3;
/// Words of a channel's acknowledgement area, as the monitor maps it.
const ACK_WORDS: usize = quest_rt::quest_abi::layout::CHANNEL_ACK_SIZE as usize >> 3;

/// A page-aligned run of words.
#[repr(C, align(4096))]
struct Area<const N: usize>([AtomicU64; N]);

impl<const N: usize> Area<N> {
    const fn new() -> Self {
        Self([const { AtomicU64::new(0) }; N])
    }
}

/// One channel's memory, in this sandbox's RAM.
struct Channel {
    data: Area<DATA_WORDS>,
    ack: Area<ACK_WORDS>,
}

impl Channel {
    const fn new() -> Self {
        Self {
            data: Area::new(),
            ack: Area::new(),
        }
    }

    fn memory(&'static self) -> ChannelMemory {
        ChannelMemory {
            data: self.data.0.as_ptr() as *mut u8,
            data_len: DATA_WORDS * 8,
            ack: self.ack.0.as_ptr() as *mut u8,
            ack_len: ACK_WORDS * 8,
        }
    }

    /// This channel's sender.
    ///
    /// # Safety
    /// Called once per channel (one sender).
    unsafe fn sender(&'static self) -> Sender {
        // SAFETY: the memory is a static, valid and page-aligned forever, accessed only
        // through atomics; the caller makes this the channel's only sender.
        unsafe { Sender::from_memory(self.memory()) }.expect("a 64 KiB channel is valid")
    }

    /// This channel's receiver.
    ///
    /// # Safety
    /// Called once per channel (one receiver).
    unsafe fn receiver(&'static self) -> Receiver {
        // SAFETY: as in `sender`, with one receiver per channel.
        unsafe { Receiver::from_memory(self.memory()) }.expect("a 64 KiB channel is valid")
    }
}

static TIMER_TO_ECHO: Channel = Channel::new();
static ECHO_TO_TIMER: Channel = Channel::new();

/// Copies `msg` (at most 64 bytes) into `slot`'s payload and raises its flag to `round`.
fn put(slot: &Slot, round: u64, msg: &[u8]) {
    for (w, c) in slot.data.0.iter().zip(msg.chunks(8)) {
        let mut word = [0u8; 8];
        word[..c.len()].copy_from_slice(c);
        w.store(u64::from_le_bytes(word), Ordering::Relaxed);
    }
    slot.flag.0[0].store(round, Ordering::Release);
}

/// Waits for `slot`'s flag to reach `round`, then copies its payload into `out`.
fn take(slot: &Slot, round: u64, out: &mut [u8]) {
    while slot.flag.0[0].load(Ordering::Acquire) != round {
        core::hint::spin_loop();
    }
    for (w, c) in slot.data.0.iter().zip(out.chunks_mut(8)) {
        let n = c.len();
        c.copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes()[..n]);
    }
}

fn main(ctx: &Ctx) -> i32 {
    let rounds = chan_proto::number(ctx.args().var("ROUNDS"), 2000);
    if ctx.num_vcpus() != 2 {
        println!("chan-local: needs exactly 2 vCPUs, has {}", ctx.num_vcpus());
        return 2;
    }
    let result = if ctx.vcpu() == 0 {
        timer(rounds)
    } else {
        echo(rounds)
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            println!("chan-local: vcpu {} FAILED: {e}", ctx.vcpu());
            1
        }
    }
}

/// vCPU 0: times the floor and the channel round trips, then prints them.
fn timer(rounds: u64) -> Result<(), String> {
    let mut round = 0u64;
    let floor = time_round_trips(&[64], rounds, |msg, reply| {
        round += 1;
        put(&TO_ECHO, round, msg);
        take(&TO_TIMER, round, &mut reply[..msg.len()]);
        Ok(msg.len())
    })?;
    // SAFETY: the only sender of this channel and the only receiver of the other.
    let (mut tx, mut rx) = unsafe { (TIMER_TO_ECHO.sender(), ECHO_TO_TIMER.receiver()) };
    let rtts = time_round_trips(&RTT_SIZES, rounds, |msg, reply| {
        let size = msg.len();
        tx.send(msg).map_err(|e| format!("rtt {size}: {e}"))?;
        rx.recv(reply).map_err(|e| format!("rtt {size}: {e}"))
    })?;
    for (size, s) in floor {
        println!("{}", rtt_line("floor", size, rounds, &s));
    }
    for (size, s) in rtts {
        println!("{}", rtt_line("rtt", size, rounds, &s));
    }
    Ok(())
}

/// vCPU 1: echoes the floor's payloads, then the channel's messages.
fn echo(rounds: u64) -> Result<(), String> {
    let mut buf = vec![0u8; MAX_LEN];
    for round in 1..=WARMUP + rounds {
        take(&TO_ECHO, round, &mut buf[..64]);
        put(&TO_TIMER, round, &buf[..64]);
    }
    // SAFETY: the only receiver of this channel and the only sender of the other.
    let (mut rx, mut tx) = unsafe { (TIMER_TO_ECHO.receiver(), ECHO_TO_TIMER.sender()) };
    for _ in 0..(WARMUP + rounds) * RTT_SIZES.len() as u64 {
        let n = rx.recv(&mut buf).map_err(|e| format!("echo: {e}"))?;
        tx.send(&buf[..n]).map_err(|e| format!("echo: {e}"))?;
    }
    Ok(())
}
