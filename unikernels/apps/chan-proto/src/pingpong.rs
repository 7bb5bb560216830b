//! The script `ping` and `pong` both follow (`partition-manifests/pingpong.toml`).

use crate::MAX_LEN;

/// The verified stream (both ways: pong echoes ping's bytes).
pub const SEED: u64 = 0x7069_6e67;
/// TSC cycles pong waits before its first read (so ping's burst finds the ring full) and
/// ping waits after its burst before reading echoes (so pong's ring fills).
pub const PAUSE_CYCLES: u64 = 5_000_000;
/// Round-trip message sizes of the benchmark.
pub const RTT_SIZES: [usize; 3] = [64, 1024, 4096];
/// Untimed round trips before each size's timed ones (caches, branch predictors).
pub const WARMUP: u64 = 50;
/// Size of each message of the one-way stream.
pub const STREAM_LEN: usize = MAX_LEN;

/// How many 4 KiB messages the backpressure burst has, for a ring whose largest message
/// is `max_message_len`: one and a half rings' worth, so it cannot fit, yet small enough
/// that both rings together hold it (pong can always echo while ping sends).
pub fn burst_len(max_message_len: usize) -> u64 {
    let per_ring = (max_message_len as u64 + 8) / (MAX_LEN as u64 + 8);
    per_ring + per_ring / 2 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burst_overflows_one_ring_but_not_two() {
        // A 64 KiB channel: 64 KiB - 128 B ring header.
        let max = 65536 - 128 - 8;
        let per_ring = 15;
        let burst = burst_len(max);
        assert!(burst > per_ring && burst <= 2 * per_ring, "{burst}");
    }
}
