//! Pong: the passive end of `partition-manifests/pingpong.toml` (see ping's docs for the
//! script both follow).
//!
//! It verifies every message of the first `MESSAGES` (complete, in order, checksum) and
//! echoes it back; then it echoes the benchmark's round trips unchecked (ping checks the
//! echoes) and receives the one-way stream, acknowledging it with one 8-byte message that
//! holds the count.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec;
use chan_proto::ping::Params;
use chan_proto::pingpong::{burst_len, PAUSE_CYCLES, RTT_SIZES, SEED, STREAM_LEN, WARMUP};
use chan_proto::{verify, verify_len, MAX_LEN};
use quest_channel::{Receiver, SendError, Sender};
use quest_rt::time::rdtsc;
use quest_rt::{println, Ctx};

quest_rt::entry!(main, vcpu0_only);

#[derive(Debug, Default)]
struct Counts {
    sent: u64,
    received: u64,
    /// Times the echo ring was full.
    full: u64,
}

fn main(ctx: &Ctx) -> i32 {
    let env = ctx.args();
    let Params {
        messages,
        rounds,
        stream,
    } = Params::from_env(|name| env.var(name));
    let (mut rx, mut tx) = match (Receiver::open("ping-to-pong"), Sender::open("pong-to-ping")) {
        (Ok(rx), Ok(tx)) => (rx, tx),
        (Err(e), _) | (_, Err(e)) => {
            println!("pong: cannot open the channels: {e}");
            return 2;
        }
    };
    let mut counts = Counts::default();
    match run(&mut rx, &mut tx, messages, rounds, stream, &mut counts) {
        Ok(()) => {
            println!(
                "pong: done: messages sent {} received {} total {}",
                counts.sent,
                counts.received,
                counts.sent + counts.received
            );
            0
        }
        Err(e) => {
            println!("pong: FAILED: {e}");
            1
        }
    }
}

/// Sends `msg`, counting the times the ring was full.
fn echo(tx: &mut Sender, msg: &[u8], counts: &mut Counts) -> Result<(), SendError> {
    loop {
        match tx.try_send(msg) {
            Ok(()) => {
                counts.sent += 1;
                return Ok(());
            }
            Err(SendError::Full) => {
                counts.full += 1;
                core::hint::spin_loop();
            }
            Err(e) => return Err(e),
        }
    }
}

fn run(
    rx: &mut Receiver,
    tx: &mut Sender,
    messages: u64,
    rounds: u64,
    stream: u64,
    counts: &mut Counts,
) -> Result<(), String> {
    let mut buf = vec![0u8; MAX_LEN];
    let burst = burst_len(rx.max_message_len()).min(messages);

    // Phase 1: let ping's burst fill the ring, then take it; ping is not reading echoes
    // yet, so ours fills too.
    let start = rdtsc();
    while rdtsc().wrapping_sub(start) < PAUSE_CYCLES {
        core::hint::spin_loop();
    }
    for seq in 0..burst {
        let n = rx
            .recv(&mut buf)
            .map_err(|e| format!("message {seq}: {e}"))?;
        counts.received += 1;
        verify_len(SEED, seq, MAX_LEN, &buf[..n]).map_err(|e| format!("message {seq}: {e}"))?;
        echo(tx, &buf[..n], counts).map_err(|e| format!("echo {seq}: {e}"))?;
    }
    if counts.full == 0 {
        return Err(format!(
            "echoing the burst of {burst} never found the ring full (no backpressure)"
        ));
    }
    let burst_full = counts.full;

    // Phase 2: mixed sizes, each verified and echoed.
    let mut bytes = 0u64;
    for seq in burst..messages {
        let n = rx
            .recv(&mut buf)
            .map_err(|e| format!("message {seq}: {e}"))?;
        counts.received += 1;
        verify(SEED, seq, &buf[..n]).map_err(|e| format!("message {seq}: {e}"))?;
        bytes += n as u64;
        echo(tx, &buf[..n], counts).map_err(|e| format!("echo {seq}: {e}"))?;
    }
    println!(
        "pong: verified {messages} messages in order ({burst} x {MAX_LEN} B burst, {} mixed-size, {bytes} B); echo ring full {burst_full} times in the burst, {} after",
        messages - burst,
        counts.full - burst_full
    );

    // Phase 3: the benchmark. Round trips: echo as they come (ping checks them).
    for _ in 0..(WARMUP + rounds) * RTT_SIZES.len() as u64 {
        let n = rx.recv(&mut buf).map_err(|e| format!("round trip: {e}"))?;
        counts.received += 1;
        echo(tx, &buf[..n], counts).map_err(|e| format!("round trip echo: {e}"))?;
    }
    for i in 0..stream {
        let n = rx
            .recv(&mut buf)
            .map_err(|e| format!("stream message {i}: {e}"))?;
        counts.received += 1;
        if n != STREAM_LEN {
            return Err(format!("stream message {i} has {n} bytes"));
        }
    }
    echo(tx, &stream.to_le_bytes(), counts).map_err(|e| format!("stream ack: {e}"))?;
    Ok(())
}
