//! Host benchmark of the ring (not a test): round trips between two threads over two
//! channels, and a one-way stream. The real numbers come from a booted image; this one
//! shows the library's own cost on whatever cores the host gives the two threads.
//!
//! `cargo run --release -p quest-channel --example host_bench [ROUND_TRIPS]`

use quest_channel::wire::{RING_HEADER_SIZE, WORD};
use quest_channel::{ChannelMemory, Receiver, Sender};
use std::sync::atomic::AtomicU64;
use std::time::Instant;

/// Data area of each channel (as a manifest would give it: 16 KiB).
const DATA_LEN: usize = 16 * 1024;
const ACK_LEN: usize = 4096;

/// Channel memory, 128-byte aligned (as page-aligned guest memory would be).
#[repr(C, align(128))]
struct Area([AtomicU64; 16]);

fn area(bytes: usize) -> Box<[Area]> {
    (0..bytes.div_ceil(128))
        .map(|_| Area(std::array::from_fn(|_| AtomicU64::new(0))))
        .collect()
}

struct Channel {
    data: Box<[Area]>,
    ack: Box<[Area]>,
}

impl Channel {
    fn new() -> Self {
        Self {
            data: area(DATA_LEN),
            ack: area(ACK_LEN),
        }
    }

    fn ends(&self) -> (Sender, Receiver) {
        let memory = ChannelMemory {
            data: self.data.as_ptr() as *mut u8,
            data_len: DATA_LEN,
            ack: self.ack.as_ptr() as *mut u8,
            ack_len: ACK_LEN,
        };
        // SAFETY: the memory lives until `main` returns, after both threads are joined; it
        // is only accessed through the endpoints (atomics); one sender and one receiver.
        unsafe {
            (
                Sender::from_memory(memory).unwrap(),
                Receiver::from_memory(memory).unwrap(),
            )
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn now() -> u64 {
    // SAFETY: RDTSC has no preconditions in user mode on x86-64 hosts.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
fn now() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let ping = Channel::new();
    let pong = Channel::new();
    println!(
        "ring {} bytes per channel; times in {}",
        (DATA_LEN - RING_HEADER_SIZE) / WORD * WORD,
        if cfg!(target_arch = "x86_64") {
            "TSC cycles"
        } else {
            "ns"
        }
    );
    println!("size      min   median      p99      max   (round trip, {rounds} rounds)");
    for size in [64usize, 1024, 4096] {
        let (mut ping_tx, mut ping_rx) = ping.ends();
        let (mut pong_tx, mut pong_rx) = pong.ends();
        let mut samples = Vec::with_capacity(rounds);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut buf = vec![0u8; size];
                for _ in 0..rounds {
                    let n = ping_rx.recv(&mut buf).unwrap();
                    pong_tx.send(&buf[..n]).unwrap();
                }
            });
            let msg = vec![0x42u8; size];
            let mut buf = vec![0u8; size];
            for _ in 0..rounds {
                let t0 = now();
                ping_tx.send(&msg).unwrap();
                pong_rx.recv(&mut buf).unwrap();
                samples.push(now() - t0);
            }
        });
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
        println!(
            "{size:>5} {:>8} {:>8} {:>8} {:>8}",
            at(0.0),
            at(0.5),
            at(0.99),
            at(1.0)
        );
    }
    for size in [64usize, 1024, 4096] {
        let (mut tx, mut rx) = ping.ends();
        let count = rounds * 4;
        let start = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut buf = vec![0u8; size];
                for _ in 0..count {
                    rx.recv(&mut buf).unwrap();
                }
            });
            let msg = vec![0x42u8; size];
            for _ in 0..count {
                tx.send(&msg).unwrap();
            }
        });
        let secs = start.elapsed().as_secs_f64();
        println!(
            "one-way {size:>5} B: {:>10.0} msg/s, {:>8.1} MB/s",
            count as f64 / secs,
            (count * size) as f64 / secs / 1e6
        );
    }
}
