//! A hostile peer: every impossible index or header is reported as `Corrupt`, stays
//! reported, and never causes a panic or an access outside the channel; other channels
//! keep working.

use super::{scale, TestChannel};
use crate::wire::{record_header, record_size, WORD};
use crate::{RecvError, SendError};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: scale(256, 6) as u32,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Writes `lens` messages and reads `reads` of them on a fresh channel of `ring` bytes.
fn honest_history(ring: usize, lens: &[usize], reads: usize) -> TestChannel {
    let ch = TestChannel::with_ring(ring);
    let (mut tx, mut rx) = ch.pair();
    let mut buf = vec![0u8; ring];
    let mut sent = 0;
    for &len in lens {
        let len = len.min(tx.max_message_len());
        match tx.try_send(&vec![0x5a; len]) {
            Ok(()) => sent += 1,
            Err(SendError::Full) => {
                if sent > reads {
                    break;
                }
                // Make room so the history keeps moving round the ring.
                while rx.try_recv(&mut buf).unwrap().is_some() {}
                tx.try_send(&vec![0x5a; len]).unwrap();
                sent = 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    for _ in 0..reads.min(sent) {
        rx.try_recv(&mut buf).unwrap().unwrap();
    }
    ch
}

#[test]
fn reader_rejects_each_impossible_write_index() {
    let ring = 256u64;
    for bad in [4, ring + 8, u64::MAX - 7, 1 << 63] {
        let ch = TestChannel::with_ring(ring as usize);
        let mut rx = ch.receiver();
        ch.set_write_index(bad);
        assert_eq!(
            rx.try_recv(&mut [0; 64]),
            Err(RecvError::Corrupt),
            "index {bad}"
        );
    }
    // Behind the reader: after consuming 32 bytes, the writer claims 16.
    let ch = TestChannel::with_ring(256);
    let (mut tx, mut rx) = ch.pair();
    tx.try_send(&[1; 24]).unwrap();
    assert_eq!(rx.try_recv(&mut [0; 64]), Ok(Some(24)));
    ch.set_write_index(16);
    assert_eq!(rx.try_recv(&mut [0; 64]), Err(RecvError::Corrupt));
}

#[test]
fn reader_rejects_impossible_headers_and_stays_closed() {
    let cases: [(u64, u64); 4] = [
        (0, 8),                         // zeroed memory: wrong tag
        (record_header(9), 24),         // 9 bytes need 32, only 24 published
        (record_header(4096), 256),     // longer than the ring
        (record_header(u32::MAX), 256), // absurd length
    ];
    for (header, published) in cases {
        let ch = TestChannel::with_ring(256);
        let mut rx = ch.receiver();
        ch.set_ring_word(0, header);
        ch.set_write_index(published);
        let mut buf = [0u8; 4096];
        assert_eq!(
            rx.try_recv(&mut buf),
            Err(RecvError::Corrupt),
            "{header:#x}"
        );
        // Repairing the channel does not reopen it: the writer proved hostile.
        ch.set_ring_word(0, record_header(0));
        ch.set_write_index(16);
        assert_eq!(rx.try_recv(&mut buf), Err(RecvError::Corrupt));
        assert_eq!(rx.recv(&mut buf), Err(RecvError::Corrupt));
        assert!(rx.is_corrupt());
        assert_eq!(ch.read_index(), 0, "nothing was consumed");
    }
}

#[test]
fn writer_rejects_each_impossible_read_index() {
    // The writer looks at the reader's index only when it runs out of room.
    for bad in [4u64, 264, u64::MAX - 7] {
        let ch = TestChannel::with_ring(256);
        let mut tx = ch.sender();
        for _ in 0..8 {
            tx.try_send(&[3; 16]).unwrap();
        }
        ch.set_read_index(bad);
        assert_eq!(
            tx.try_send(&[3; 16]),
            Err(SendError::Corrupt),
            "index {bad}"
        );
        ch.set_read_index(32);
        assert_eq!(
            tx.try_send(&[3; 16]),
            Err(SendError::Corrupt),
            "stays closed"
        );
        assert_eq!(tx.send(&[3; 16]), Err(SendError::Corrupt));
        assert!(tx.is_corrupt());
        assert_eq!(ch.write_index(), 256, "nothing more was written");
    }
    // Backwards: the reader had freed 64 bytes, then claims only 32.
    let ch = TestChannel::with_ring(256);
    let mut tx = ch.sender();
    for _ in 0..8 {
        tx.try_send(&[3; 16]).unwrap();
    }
    ch.set_read_index(64);
    tx.try_send(&[3; 16]).unwrap();
    tx.try_send(&[3; 16]).unwrap();
    ch.set_read_index(32);
    assert_eq!(tx.try_send(&[3; 16]), Err(SendError::Corrupt));
}

#[test]
fn an_honest_reader_index_at_the_write_index_is_fine() {
    let ch = TestChannel::with_ring(64);
    let mut tx = ch.sender();
    tx.try_send(&[0; 48]).unwrap();
    assert_eq!(tx.try_send(&[]), Err(SendError::Full));
    ch.set_read_index(64);
    tx.try_send(&[]).unwrap();
    assert!(!tx.is_corrupt());
}

#[derive(Clone, Debug)]
enum Scribble {
    WriteIndex(u64),
    WriteIndexPlus(u64),
    RingWord(usize, u64),
    Header(usize, u32),
}

fn scribble() -> impl Strategy<Value = Scribble> {
    prop_oneof![
        any::<u64>().prop_map(Scribble::WriteIndex),
        (0u64..600).prop_map(Scribble::WriteIndexPlus),
        (any::<usize>(), any::<u64>()).prop_map(|(i, v)| Scribble::RingWord(i, v)),
        (any::<usize>(), 0u32..700).prop_map(|(i, l)| Scribble::Header(i, l)),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Whatever a writer scribbles, between whatever receives, the reader never panics,
    /// never hands out more than its buffer or the ring holds, consumes exactly the
    /// record it returns, and once it says Corrupt it keeps saying so. A second channel
    /// beside it keeps working throughout.
    #[test]
    fn reader_survives_any_scribbles(
        ring_words in 3usize..64,
        lens in proptest::collection::vec(0usize..300, 0..12),
        reads in 0usize..12,
        steps in proptest::collection::vec((scribble(), 0usize..600), 1..12),
    ) {
        let ring = ring_words * WORD;
        let ch = honest_history(ring, &lens, reads);
        let mut rx = ch.receiver();
        let max = rx.max_message_len();
        let other = TestChannel::with_ring(64);
        let (mut other_tx, mut other_rx) = other.pair();
        let mut corrupt = false;
        for (i, (s, buf_len)) in steps.into_iter().enumerate() {
            match s {
                Scribble::WriteIndex(v) => ch.set_write_index(v),
                Scribble::WriteIndexPlus(d) => ch.set_write_index(ch.write_index().wrapping_add(d)),
                Scribble::RingWord(i, v) => ch.set_ring_word(i % ring_words, v),
                Scribble::Header(i, l) => ch.set_ring_word(i % ring_words, record_header(l)),
            }
            let mut buf = vec![0u8; buf_len];
            let before = ch.read_index();
            match rx.try_recv(&mut buf) {
                Ok(Some(n)) => {
                    prop_assert!(!corrupt, "a corrupt channel delivered");
                    prop_assert!(n <= buf_len && n <= max);
                    prop_assert_eq!(ch.read_index().wrapping_sub(before), record_size(n).unwrap() as u64);
                }
                Ok(None) => {
                    prop_assert!(!corrupt);
                    prop_assert_eq!(ch.read_index(), before);
                }
                Err(RecvError::BufferTooSmall { needed }) => {
                    prop_assert!(!corrupt);
                    prop_assert!(needed > buf_len && needed <= max);
                    prop_assert_eq!(ch.read_index(), before);
                }
                Err(RecvError::Corrupt) => {
                    corrupt = true;
                    prop_assert_eq!(ch.read_index(), before);
                }
            }
            prop_assert_eq!(rx.is_corrupt(), corrupt);
            let msg = (i as u64).to_le_bytes();
            other_tx.try_send(&msg).unwrap();
            let mut obuf = [0u8; 8];
            prop_assert_eq!(other_rx.try_recv(&mut obuf), Ok(Some(8)));
            prop_assert_eq!(obuf, msg);
        }
    }

    /// On a drained channel, a write index that is not a word multiple or runs more than a
    /// ring ahead is Corrupt at once; one that is plausible but points at zeroed memory is
    /// Corrupt too (no record tag).
    #[test]
    fn a_drained_channel_rejects_any_foreign_write_index(
        ring_words in 3usize..64,
        lens in proptest::collection::vec(0usize..300, 0..8),
        w in any::<u64>(),
    ) {
        let ch = honest_history(ring_words * WORD, &lens, usize::MAX);
        let r = ch.read_index();
        prop_assume!(w != r);
        // Zero the ring so no old record can be mistaken for a new one.
        for i in 0..ring_words {
            ch.set_ring_word(i, 0);
        }
        let mut rx = ch.receiver();
        ch.set_write_index(w);
        let mut buf = vec![0u8; ring_words * WORD];
        prop_assert_eq!(rx.try_recv(&mut buf), Err(RecvError::Corrupt));
    }

    /// A fresh sender after an honest history, then a reader index `x`: the sender goes
    /// Corrupt exactly when `x` is not a word multiple between the last read index and the
    /// write index at the moment it has to look at it (when not even an empty message, 16
    /// bytes, fits any more: `r + ring` less what is left over in 16-byte steps);
    /// otherwise it ends with Full.
    #[test]
    fn writer_accepts_exactly_the_plausible_read_indices(
        ring_words in 3usize..64,
        lens in proptest::collection::vec(0usize..300, 0..8),
        reads in 0usize..8,
        x_choice in prop_oneof![any::<u64>(), 0u64..1000],
    ) {
        let ch = honest_history(ring_words * WORD, &lens, reads);
        let r = ch.read_index();
        let x = if x_choice < 1000 { r.wrapping_add(x_choice) } else { x_choice };
        let mut tx = ch.sender();
        ch.set_read_index(x);
        let ring = (ring_words * WORD) as u64;
        let free = ring - ch.write_index().wrapping_sub(r);
        let looks_at = ring - free % 16;
        let plausible = x % 8 == 0 && x.wrapping_sub(r) <= looks_at;
        let mut outcome = Ok(());
        for _ in 0..=ring_words * 2 {
            outcome = tx.try_send(&[]);
            if outcome.is_err() {
                break;
            }
        }
        let expected = if plausible { SendError::Full } else { SendError::Corrupt };
        prop_assert_eq!(outcome, Err(expected));
        // It filled the ring up to the last reader index it trusted, until not even an
        // empty message (16 bytes of header and stamp) fits.
        let trusted = if plausible { x } else { r };
        let used = ch.write_index().wrapping_sub(trusted);
        prop_assert!(used <= ring && ring - used < 16, "used {} of {}", used, ring);
    }
}
