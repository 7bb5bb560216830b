//! The shared ping against an in-memory pong on another thread.

use super::*;
use crate::pingpong::{RTT_SIZES, STREAM_LEN, WARMUP};
use crate::MAX_LEN;
use quest_channel::ChannelMemory;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// Channel memory on the heap (64 KiB data area, as in the manifests), used only
/// atomically.
struct Channel {
    data: Box<[AtomicU64]>,
    ack: Box<[AtomicU64]>,
}

impl Channel {
    fn new() -> Self {
        let words = |n: usize| (0..n / 8).map(|_| AtomicU64::new(0)).collect();
        Self {
            data: words(65536),
            ack: words(4096),
        }
    }

    fn memory(&self) -> ChannelMemory {
        ChannelMemory {
            data: self.data.as_ptr() as *mut u8,
            data_len: self.data.len() * 8,
            ack: self.ack.as_ptr() as *mut u8,
            ack_len: self.ack.len() * 8,
        }
    }

    fn sender(&self) -> Sender {
        // SAFETY: the memory lives as long as the test's channels, which outlive the
        // endpoints (the pong thread is joined first); it is accessed only atomically;
        // one sender per channel.
        unsafe { Sender::from_memory(self.memory()) }.unwrap()
    }

    fn receiver(&self) -> Receiver {
        // SAFETY: as in `sender`, with one receiver per channel.
        unsafe { Receiver::from_memory(self.memory()) }.unwrap()
    }
}

/// Collects the printed lines; rates as the bare runtime computes them at 1 GHz.
#[derive(Default)]
struct Recorder {
    lines: Vec<String>,
}

impl Runtime for Recorder {
    fn name(&self) -> &'static str {
        "ping"
    }

    fn println(&mut self, line: fmt::Arguments<'_>) {
        self.lines.push(line.to_string());
    }

    fn stream_rate(&mut self, bytes: u64, cycles: u64) -> StreamRate {
        StreamRate {
            tsc_khz: 1_000_000,
            mb_per_s: bytes as u128 * 1_000_000 / cycles as u128 / 1000,
        }
    }
}

/// Pong's script, simplified: wait for the burst to fill the ring, echo every verified
/// phase's message and every round trip (flipping a byte of message `corrupt`, if any),
/// then take the stream and acknowledge it.
fn pong(mut rx: Receiver, mut tx: Sender, p: Params, corrupt: Option<u64>) {
    std::thread::sleep(Duration::from_millis(20));
    let mut buf = vec![0u8; MAX_LEN];
    let echoes = p.messages + (WARMUP + p.rounds) * RTT_SIZES.len() as u64;
    for seq in 0..echoes {
        let Ok(n) = rx.recv(&mut buf) else { return };
        if Some(seq) == corrupt {
            buf[n - 1] ^= 1;
        }
        if tx.send(&buf[..n]).is_err() || Some(seq) == corrupt {
            return;
        }
    }
    for _ in 0..p.stream {
        assert_eq!(rx.recv(&mut buf), Ok(STREAM_LEN));
    }
    tx.send(&p.stream.to_le_bytes()).unwrap();
}

fn run_against_pong(p: Params, corrupt: Option<u64>) -> (i32, Vec<String>) {
    let (to_pong, to_ping) = (Channel::new(), Channel::new());
    let mut rt = Recorder::default();
    let status = std::thread::scope(|s| {
        let (rx, tx) = (to_pong.receiver(), to_ping.sender());
        s.spawn(move || pong(rx, tx, p, corrupt));
        run(&mut rt, &mut to_pong.sender(), &mut to_ping.receiver(), p)
    });
    (status, rt.lines)
}

#[test]
fn every_phase_runs_and_prints_the_lines_the_tests_parse() {
    let p = Params {
        messages: 300,
        rounds: 10,
        stream: 20,
    };
    let (status, lines) = run_against_pong(p, None);
    assert_eq!(status, 0, "{lines:#?}");
    assert_eq!(lines.len(), 8, "{lines:#?}");
    let largest = quest_channel::wire::max_message_len(64 << 10);
    assert_eq!(
        lines[0],
        format!("ping: channels open (largest message {largest} B); 300 messages, 10 round trips per size, 20 stream messages")
    );
    let burst = crate::pingpong::burst_len(largest);
    let prefix = format!("ping: burst of {burst} x 4096 B: ring full ");
    assert!(lines[1].starts_with(&prefix), "{}", lines[1]);
    assert!(lines[1].ends_with(" times, all echoes verified"));
    let prefix = format!(
        "ping: verified 300 echoes in order ({} mixed-size, ",
        300 - burst
    );
    assert!(lines[2].starts_with(&prefix), "{}", lines[2]);
    for (line, size) in lines[3..6].iter().zip(RTT_SIZES) {
        assert!(
            line.starts_with(&format!("bench rtt {size} rounds=10 min=")),
            "{line}"
        );
    }
    assert!(lines[6].starts_with("bench stream 4096 messages=20 bytes=81920 cycles="));
    assert!(lines[6].ends_with(" tsc_khz=1000000"));
    let sent = 300 + 3 * (WARMUP + 10) + 20;
    let received = 300 + 3 * (WARMUP + 10) + 1;
    assert_eq!(
        lines[7],
        format!(
            "ping: done: messages sent {sent} received {received} total {}",
            sent + received
        )
    );
}

#[test]
fn a_corrupted_echo_fails_the_run() {
    let p = Params {
        messages: 100,
        rounds: 1,
        stream: 1,
    };
    let (status, lines) = run_against_pong(p, Some(50));
    assert_eq!(status, 1);
    assert_eq!(
        lines.last().unwrap(),
        "ping: FAILED: echo 50: checksum mismatch"
    );
}

#[test]
fn params_come_from_the_environment_with_defaults() {
    let env = |name: &str| match name {
        "MESSAGES" => Some("7"),
        "ROUNDS" => Some("not a number"),
        _ => None,
    };
    let p = Params::from_env(env);
    assert_eq!(
        p,
        Params {
            messages: 7,
            rounds: 2000,
            stream: 2000
        }
    );
}
