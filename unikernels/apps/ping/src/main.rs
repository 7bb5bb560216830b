//! Ping: the active end of `partition-manifests/pingpong.toml`.
//!
//! Over `ping-to-pong` it sends numbered, checksummed messages that `pong` verifies and
//! echoes back over `pong-to-ping`, where ping verifies them again:
//! 1. a burst of 4 KiB messages larger than the ring while pong waits (the ring fills and
//!    `try_send` reports full), then a pause before reading the echoes (pong's ring fills);
//! 2. the rest of `MESSAGES` with mixed sizes (1 B to 4 KiB), sending and receiving
//!    interleaved;
//! 3. the benchmark: `ROUNDS` timed round trips each of 64 B, 1 KiB and 4 KiB, and a
//!    one-way stream of `STREAM` 4 KiB messages that pong acknowledges once.
//!
//! Nothing in the measured loops prints (a console write is a VM exit); results are
//! printed afterwards as `bench ...` lines that `quest-build bench` parses.
#![no_std]
#![no_main]

extern crate alloc;

mod bench;
mod verify;

use quest_channel::{Receiver, Sender};
use quest_rt::{println, Ctx};

quest_rt::entry!(main);

/// Counts of what went through the channels, for the final line.
#[derive(Debug, Default)]
pub struct Counts {
    /// Messages sent on `ping-to-pong`.
    pub sent: u64,
    /// Messages received on `pong-to-ping`.
    pub received: u64,
}

fn main(ctx: &Ctx) -> i32 {
    if ctx.vcpu() != 0 {
        return 0;
    }
    let env = ctx.args();
    let messages = chan_proto::number(env.var("MESSAGES"), 100_000);
    let rounds = chan_proto::number(env.var("ROUNDS"), 2000);
    let stream = chan_proto::number(env.var("STREAM"), 2000);

    let mut tx = match Sender::open("ping-to-pong") {
        Ok(tx) => tx,
        Err(e) => {
            println!("ping: cannot open ping-to-pong: {e}");
            return 2;
        }
    };
    let mut rx = match Receiver::open("pong-to-ping") {
        Ok(rx) => rx,
        Err(e) => {
            println!("ping: cannot open pong-to-ping: {e}");
            return 2;
        }
    };
    println!(
        "ping: channels open (largest message {} B); {messages} messages, {rounds} round trips per size, {stream} stream messages",
        tx.max_message_len()
    );
    let mut counts = Counts::default();
    if let Err(e) = verify::run(&mut tx, &mut rx, messages, &mut counts) {
        println!("ping: FAILED: {e}");
        return 1;
    }
    if let Err(e) = bench::run(&mut tx, &mut rx, rounds, stream, &mut counts) {
        println!("ping: FAILED in the benchmark: {e}");
        return 1;
    }
    println!(
        "ping: done: messages sent {} received {} total {}",
        counts.sent,
        counts.received,
        counts.sent + counts.received
    );
    0
}
