//! The test messages the channel applications exchange, and their statistics.
//!
//! Message `seq` is fully determined by `seq` and a stream `seed`: its length
//! ([`mixed_len`], 1 B to [`MAX_LEN`]) and its bytes ([`fill`]). A message of at least
//! [`HEADER_LEN`] bytes carries its sequence number (low 32 bits) and a checksum of the
//! rest; a shorter one is compared byte for byte with the expected contents. So a
//! receiver that knows which `seq` comes next detects loss, duplication, reordering,
//! truncation and corruption ([`verify`]).
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod bounds;
pub mod hostile;
pub mod ping;
pub mod pingpong;
pub mod stats;

use core::fmt;

/// Longest test message.
pub const MAX_LEN: usize = 4096;
/// Bytes of the sequence number and checksum at the start of a long enough message.
pub const HEADER_LEN: usize = 8;

/// SplitMix64: a well-mixed 64-bit value from any input (also the PRNG step).
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Length of message `seq`: mostly short, a quarter spread up to [`MAX_LEN`], so that
/// every size from 1 B to 4 KiB occurs and the average stays near 600 B.
pub fn mixed_len(seed: u64, seq: u64) -> usize {
    let r = mix(seed ^ seq.wrapping_mul(0x2545_f491_4f6c_dd1d));
    let pick = (r >> 32) as usize;
    match r & 3 {
        0 => 1 + pick % MAX_LEN,
        1 | 2 => 1 + pick % 256,
        _ => 1 + pick % 64,
    }
}

/// 32-bit checksum of `bytes` (FNV-style, over 8-byte words, position and length
/// sensitive).
pub fn checksum(bytes: &[u8]) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let w = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        h = (h ^ w).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(29);
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    h = (h ^ u64::from_le_bytes(tail)).wrapping_mul(0x0000_0100_0000_01b3);
    (h ^ (h >> 32)) as u32
}

/// Fills `buf` with the contents of message `seq` of the stream `seed`.
pub fn fill(seed: u64, seq: u64, buf: &mut [u8]) {
    let mut state = mix(seed.rotate_left(17) ^ seq);
    for chunk in buf.chunks_mut(8) {
        state = mix(state);
        let bytes = state.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
    if buf.len() >= HEADER_LEN {
        let sum = checksum(&buf[HEADER_LEN..]);
        buf[..4].copy_from_slice(&(seq as u32).to_le_bytes());
        buf[4..8].copy_from_slice(&sum.to_le_bytes());
    }
}

/// Writes message `seq` of stream `seed` with its mixed length into `buf` (at least
/// [`MAX_LEN`] bytes); returns the length.
pub fn make(seed: u64, seq: u64, buf: &mut [u8]) -> usize {
    let len = mixed_len(seed, seq).min(buf.len());
    fill(seed, seq, &mut buf[..len]);
    len
}

/// What was wrong with a received message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// It has the wrong length (truncated, or another message).
    Length {
        /// Expected length.
        want: usize,
        /// Received length.
        got: usize,
    },
    /// It carries another sequence number (lost, duplicated or reordered).
    Sequence {
        /// Expected (low 32 bits).
        want: u32,
        /// Received.
        got: u32,
    },
    /// Its checksum does not match its contents.
    Checksum,
    /// A short message's bytes differ from the expected ones.
    Contents,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Length { want, got } => write!(f, "length {got}, expected {want}"),
            Self::Sequence { want, got } => write!(f, "sequence number {got}, expected {want}"),
            Self::Checksum => f.write_str("checksum mismatch"),
            Self::Contents => f.write_str("contents differ"),
        }
    }
}

/// Checks that `msg` is message `seq` of stream `seed`, `want_len` bytes long.
pub fn verify_len(seed: u64, seq: u64, want_len: usize, msg: &[u8]) -> Result<(), Mismatch> {
    if msg.len() != want_len {
        return Err(Mismatch::Length {
            want: want_len,
            got: msg.len(),
        });
    }
    if msg.len() >= HEADER_LEN {
        let got = u32::from_le_bytes([msg[0], msg[1], msg[2], msg[3]]);
        if got != seq as u32 {
            return Err(Mismatch::Sequence {
                want: seq as u32,
                got,
            });
        }
        let sum = u32::from_le_bytes([msg[4], msg[5], msg[6], msg[7]]);
        if sum != checksum(&msg[HEADER_LEN..]) {
            return Err(Mismatch::Checksum);
        }
        Ok(())
    } else {
        let mut want = [0u8; HEADER_LEN];
        fill(seed, seq, &mut want[..msg.len()]);
        if want[..msg.len()] == *msg {
            Ok(())
        } else {
            Err(Mismatch::Contents)
        }
    }
}

/// Checks that `msg` is message `seq` of stream `seed` with its mixed length.
pub fn verify(seed: u64, seq: u64, msg: &[u8]) -> Result<(), Mismatch> {
    verify_len(seed, seq, mixed_len(seed, seq), msg)
}

/// Reads a decimal `u64` environment value, or `default` when it is absent or invalid.
pub fn number(value: Option<&str>, default: u64) -> u64 {
    value.and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_length_occurs_and_lengths_stay_in_range() {
        let mut seen = vec![false; MAX_LEN + 1];
        for seq in 0..200_000 {
            let len = mixed_len(7, seq);
            assert!((1..=MAX_LEN).contains(&len));
            seen[len] = true;
        }
        assert!(seen[1] && seen[MAX_LEN] && seen[HEADER_LEN]);
        let missing = seen[1..].iter().filter(|s| !**s).count();
        assert!(missing < 20, "{missing} lengths never drawn");
    }

    #[test]
    fn a_message_verifies_as_itself_only() {
        let mut buf = [0u8; MAX_LEN];
        for seq in 0..2000 {
            let len = make(3, seq, &mut buf);
            assert_eq!(verify(3, seq, &buf[..len]), Ok(()));
            // As the next message it is caught (length, sequence number or contents).
            assert!(verify(3, seq + 1, &buf[..len]).is_err() || len < HEADER_LEN);
        }
    }

    #[test]
    fn corruption_is_caught() {
        let mut buf = [0u8; MAX_LEN];
        let seq = (0..).find(|&s| mixed_len(1, s) > 100).unwrap();
        let len = make(1, seq, &mut buf);
        for i in 0..len {
            let mut bad = buf;
            bad[i] ^= 0x10;
            let err = verify(1, seq, &bad[..len]).unwrap_err();
            if i < 4 {
                assert!(matches!(err, Mismatch::Sequence { .. }));
            } else {
                assert_eq!(err, Mismatch::Checksum, "byte {i}");
            }
        }
        assert!(matches!(
            verify(1, seq, &buf[..len - 1]),
            Err(Mismatch::Length { .. })
        ));
    }

    #[test]
    fn short_messages_compare_contents() {
        let mut buf = [0u8; 7];
        fill(5, 9, &mut buf);
        assert_eq!(verify_len(5, 9, 7, &buf), Ok(()));
        buf[6] ^= 1;
        assert_eq!(verify_len(5, 9, 7, &buf), Err(Mismatch::Contents));
    }

    #[test]
    fn checksum_depends_on_position_and_length() {
        assert_ne!(checksum(&[1, 2, 3]), checksum(&[2, 1, 3]));
        assert_ne!(checksum(&[0; 8]), checksum(&[0; 9]));
        assert_ne!(checksum(&[0; 16]), checksum(&[0; 17]));
    }
}
