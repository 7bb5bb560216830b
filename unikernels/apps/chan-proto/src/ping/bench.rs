//! Phase 3: round-trip latency per message size and one-way stream throughput, in TSC
//! cycles.

use super::{rdtsc, Counts, Runtime};
use crate::pingpong::{RTT_SIZES, STREAM_LEN, WARMUP};
use crate::stats::{summarize, Summary};
use crate::{fill, MAX_LEN};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use quest_channel::{Receiver, Sender};

/// Contents of the benchmark's messages (pong does not check them; ping checks echoes).
const SEED: u64 = 0x6265_6e63;

/// Runs the round trips and the stream, then prints the `bench` lines.
pub fn run(
    rt: &mut impl Runtime,
    tx: &mut Sender,
    rx: &mut Receiver,
    rounds: u64,
    stream: u64,
    counts: &mut Counts,
) -> Result<(), String> {
    let mut out = vec![0u8; MAX_LEN];
    let mut inp = vec![0u8; MAX_LEN];
    let results = time_round_trips(&RTT_SIZES, rounds, |msg, reply| {
        let size = msg.len();
        tx.send(msg).map_err(|e| format!("rtt {size}: {e}"))?;
        rx.recv(reply).map_err(|e| format!("rtt {size}: {e}"))
    })?;
    counts.sent += (WARMUP + rounds) * RTT_SIZES.len() as u64;
    counts.received += (WARMUP + rounds) * RTT_SIZES.len() as u64;

    fill(SEED, 0, &mut out);
    rt.stream_started();
    let start = rdtsc();
    for i in 0..stream {
        tx.send(&out[..STREAM_LEN])
            .map_err(|e| format!("stream message {i}: {e}"))?;
    }
    let n = rx.recv(&mut inp).map_err(|e| format!("stream ack: {e}"))?;
    let cycles = rdtsc().wrapping_sub(start).max(1);
    let bytes = stream * STREAM_LEN as u64;
    let rate = rt.stream_rate(bytes, cycles);
    counts.sent += stream;
    counts.received += 1;
    let acked = inp
        .get(..8)
        .filter(|_| n == 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes);
    if acked != Some(stream) {
        return Err(format!("stream ack says {acked:?}, sent {stream}"));
    }

    for (size, s) in results {
        rt.println(format_args!("{}", rtt_line("rtt", size, rounds, &s)));
    }
    rt.println(format_args!(
        "bench stream {STREAM_LEN} messages={stream} bytes={bytes} cycles={cycles} bytes_per_kcycle={} mb_per_s={} tsc_khz={}",
        bytes as u128 * 1000 / cycles as u128,
        rate.mb_per_s,
        rate.tsc_khz,
    ));
    Ok(())
}

/// Times `rounds` round trips (after [`WARMUP`] untimed ones) of each of `sizes`, with
/// [`SEED`]'s contents: `round(msg, reply)` sends `msg`, waits for its echo in `reply`
/// and returns the echo's length. Every echo is checked, outside the timed part.
pub fn time_round_trips(
    sizes: &[usize],
    rounds: u64,
    mut round: impl FnMut(&[u8], &mut [u8]) -> Result<usize, String>,
) -> Result<Vec<(usize, Summary)>, String> {
    let mut out = vec![0u8; MAX_LEN];
    let mut inp = vec![0u8; MAX_LEN];
    let mut results = Vec::new();
    for &size in sizes {
        let size = size.min(MAX_LEN);
        fill(SEED, size as u64, &mut out[..size]);
        let mut samples = Vec::with_capacity(rounds as usize);
        for i in 0..WARMUP + rounds {
            let start = rdtsc();
            let n = round(&out[..size], &mut inp)?;
            let took = rdtsc().wrapping_sub(start);
            if n != size || inp[..n] != out[..size] {
                return Err(format!(
                    "rtt {size}: round {i} came back as {n} other bytes"
                ));
            }
            if i >= WARMUP {
                samples.push(took);
            }
        }
        if let Some(s) = summarize(&mut samples) {
            results.push((size, s));
        }
    }
    Ok(results)
}

/// The `bench KIND SIZE rounds=.. min=.. median=.. p99=.. max=..` line `quest-build bench`
/// parses.
pub fn rtt_line(kind: &str, size: usize, rounds: u64, s: &Summary) -> String {
    format!(
        "bench {kind} {size} rounds={rounds} min={} median={} p99={} max={}",
        s.min, s.median, s.p99, s.max
    )
}
