//! Phases 1 and 2: every message verified, in order, both ways, with backpressure.

use super::{rdtsc, Counts, Runtime};
use crate::pingpong::{burst_len, PAUSE_CYCLES, SEED};
use crate::{fill, make, verify, verify_len, MAX_LEN};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use quest_channel::{Receiver, SendError, Sender};

fn spin_cycles(cycles: u64) {
    let start = rdtsc();
    while rdtsc().wrapping_sub(start) < cycles {
        core::hint::spin_loop();
    }
}

/// Runs phases 1 and 2 over `messages` messages in all.
pub fn run(
    rt: &mut impl Runtime,
    tx: &mut Sender,
    rx: &mut Receiver,
    messages: u64,
    counts: &mut Counts,
) -> Result<(), String> {
    let name = rt.name();
    let mut out = vec![0u8; MAX_LEN];
    let mut inp = vec![0u8; MAX_LEN];
    let burst = burst_len(tx.max_message_len()).min(messages);

    // Phase 1: a burst bigger than the ring, while pong is not reading yet.
    let mut full_in_burst = 0u64;
    for seq in 0..burst {
        fill(SEED, seq, &mut out[..MAX_LEN]);
        loop {
            match tx.try_send(&out[..MAX_LEN]) {
                Ok(()) => break,
                Err(SendError::Full) => {
                    full_in_burst += 1;
                    core::hint::spin_loop();
                }
                Err(e) => return Err(format!("burst message {seq}: {e}")),
            }
        }
        counts.sent += 1;
    }
    // Let pong fill its ring with echoes before we drain it.
    spin_cycles(PAUSE_CYCLES);
    for seq in 0..burst {
        let n = rx.recv(&mut inp).map_err(|e| format!("echo {seq}: {e}"))?;
        verify_len(SEED, seq, MAX_LEN, &inp[..n]).map_err(|e| format!("echo {seq}: {e}"))?;
        counts.received += 1;
    }
    if full_in_burst == 0 {
        return Err(format!(
            "the burst of {burst} x 4 KiB never found the ring full (no backpressure)"
        ));
    }
    rt.println(format_args!(
        "{name}: burst of {burst} x {MAX_LEN} B: ring full {full_in_burst} times, all echoes verified"
    ));

    // Phase 2: mixed sizes, sending and receiving interleaved (ping never blocks, so
    // pong's blocking echo always drains).
    let (mut next_send, mut next_recv) = (burst, burst);
    let mut built: Option<usize> = None;
    let (mut full, mut bytes) = (0u64, 0u64);
    while next_recv < messages {
        if next_send < messages {
            let len = *built.get_or_insert_with(|| make(SEED, next_send, &mut out));
            match tx.try_send(&out[..len]) {
                Ok(()) => {
                    next_send += 1;
                    counts.sent += 1;
                    bytes += len as u64;
                    built = None;
                }
                Err(SendError::Full) => full += 1,
                Err(e) => return Err(format!("message {next_send}: {e}")),
            }
        }
        match rx.try_recv(&mut inp) {
            Ok(Some(n)) => {
                verify(SEED, next_recv, &inp[..n]).map_err(|e| format!("echo {next_recv}: {e}"))?;
                next_recv += 1;
                counts.received += 1;
                rt.echo_verified(next_recv)?;
            }
            Ok(None) => core::hint::spin_loop(),
            Err(e) => return Err(format!("echo {next_recv}: {e}")),
        }
    }
    rt.mixed_done()?;
    rt.println(format_args!(
        "{name}: verified {messages} echoes in order ({} mixed-size, {bytes} B each way; ring full {full} times)",
        messages - burst
    ));
    Ok(())
}
