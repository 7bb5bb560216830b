//! Single-threaded edges: empty, full, sizes, wrap-around at every offset, layout checks.

use super::{pattern, scale, TestChannel, ACK_LEN};
use crate::wire::{RECORD_HEADER_SIZE as H, RING_HEADER_SIZE, WORD};
use crate::{ChannelMemory, Directory, LayoutError, Receiver, RecvError, Role, SendError, Sender};

fn message(seq: u64, len: usize) -> Vec<u8> {
    (0..len).map(|j| pattern(seq, j)).collect()
}

#[test]
fn an_empty_channel_has_nothing_to_receive() {
    let ch = TestChannel::with_ring(256);
    let (_tx, mut rx) = ch.pair();
    let mut buf = [0u8; 64];
    assert_eq!(rx.try_recv(&mut buf), Ok(None));
    assert_eq!(rx.try_recv(&mut buf), Ok(None));
}

#[test]
fn messages_arrive_in_order_with_their_lengths() {
    let ch = TestChannel::with_ring(256);
    let (mut tx, mut rx) = ch.pair();
    for (seq, len) in [(0u64, 0usize), (1, 1), (2, 7), (3, 8), (4, 9), (5, 100)] {
        tx.try_send(&message(seq, len)).unwrap();
    }
    let mut buf = [0xAAu8; 128];
    for (seq, len) in [(0u64, 0usize), (1, 1), (2, 7), (3, 8), (4, 9), (5, 100)] {
        assert_eq!(rx.try_recv(&mut buf), Ok(Some(len)));
        assert_eq!(&buf[..len], &message(seq, len)[..]);
    }
    assert_eq!(rx.try_recv(&mut buf), Ok(None));
}

#[test]
fn a_full_ring_reports_full_until_the_reader_frees_a_record() {
    let ch = TestChannel::with_ring(256);
    let (mut tx, mut rx) = ch.pair();
    // 16-byte messages take 32 bytes of ring (16 of header and stamp): exactly 8 fit in
    // 256.
    let msg = [7u8; 16];
    for _ in 0..8 {
        tx.try_send(&msg).unwrap();
    }
    assert_eq!(tx.try_send(&msg), Err(SendError::Full));
    assert_eq!(
        tx.try_send(&[]),
        Err(SendError::Full),
        "not even a header fits"
    );
    let mut buf = [0u8; 16];
    assert_eq!(rx.try_recv(&mut buf), Ok(Some(16)));
    tx.try_send(&msg).unwrap();
    assert_eq!(tx.try_send(&msg), Err(SendError::Full));
    for _ in 0..8 {
        assert_eq!(rx.try_recv(&mut buf), Ok(Some(16)));
    }
    assert_eq!(rx.try_recv(&mut buf), Ok(None));
    assert_eq!(ch.write_index(), ch.read_index());
    assert_eq!(ch.write_index(), 9 * 32);
}

#[test]
fn the_largest_message_fills_the_ring_and_one_more_byte_is_too_large() {
    let ch = TestChannel::with_ring(512);
    let (mut tx, mut rx) = ch.pair();
    let max = tx.max_message_len();
    assert_eq!(max, 496);
    assert_eq!(rx.max_message_len(), max);
    let big = message(1, max);
    // Twice, so the second one starts mid-ring and wraps.
    tx.try_send(&[1, 2, 3]).unwrap();
    let mut buf = vec![0u8; max];
    assert_eq!(rx.try_recv(&mut buf), Ok(Some(3)));
    for _ in 0..2 {
        tx.try_send(&big).unwrap();
        assert_eq!(tx.try_send(&[]), Err(SendError::Full));
        assert_eq!(rx.try_recv(&mut buf), Ok(Some(max)));
        assert_eq!(buf, big);
    }
    let too_big = vec![0u8; max + 1];
    let expected = SendError::TooLarge { len: max + 1, max };
    assert_eq!(tx.try_send(&too_big), Err(expected));
    assert_eq!(
        tx.send(&too_big),
        Err(expected),
        "send does not wait for the impossible"
    );
    assert!(!tx.is_corrupt());
}

#[test]
fn wrap_around_at_every_offset_and_length() {
    const RING: usize = 256;
    let lengths: Vec<usize> = if cfg!(miri) {
        vec![0, 1, 7, 8, 9, 100, RING - H]
    } else {
        (0..=RING - H).collect()
    };
    let mut buf = vec![0u8; RING];
    for offset in (0..RING).step_by(WORD) {
        for &len in &lengths {
            let ch = TestChannel::with_ring(RING);
            let (mut tx, mut rx) = ch.pair();
            // Records totalling `offset` bytes (or a lap more, as a record is at least
            // H bytes) move both indices there.
            let mut todo = if offset == 0 || offset >= H {
                offset
            } else {
                offset + RING
            };
            while todo > 0 {
                let record = if todo > RING {
                    todo / 2 / WORD * WORD
                } else {
                    todo
                };
                tx.try_send(&vec![0u8; record - H]).unwrap();
                assert_eq!(rx.try_recv(&mut buf), Ok(Some(record - H)));
                todo -= record;
            }
            let msg = message(offset as u64, len);
            tx.try_send(&msg).unwrap();
            assert_eq!(
                rx.try_recv(&mut buf),
                Ok(Some(len)),
                "offset {offset} len {len}"
            );
            assert_eq!(&buf[..len], &msg[..], "offset {offset} len {len}");
        }
    }
}

#[test]
fn many_laps_of_a_tiny_ring_keep_their_order() {
    let ch = TestChannel::with_ring(32);
    let (mut tx, mut rx) = ch.pair();
    let mut buf = [0u8; 16];
    for seq in 0..scale(10_000, 200) as u64 {
        let len = (seq % 17) as usize;
        tx.try_send(&message(seq, len)).unwrap();
        assert_eq!(rx.try_recv(&mut buf), Ok(Some(len)));
        assert_eq!(&buf[..len], &message(seq, len)[..]);
    }
}

#[test]
fn a_buffer_too_small_leaves_the_message_in_place() {
    let ch = TestChannel::with_ring(256);
    let (mut tx, mut rx) = ch.pair();
    tx.try_send(&message(9, 40)).unwrap();
    let mut small = [0u8; 39];
    assert_eq!(
        rx.try_recv(&mut small),
        Err(RecvError::BufferTooSmall { needed: 40 })
    );
    assert_eq!(
        rx.recv(&mut small),
        Err(RecvError::BufferTooSmall { needed: 40 })
    );
    let mut big = [0u8; 64];
    assert_eq!(rx.recv(&mut big), Ok(40));
    assert_eq!(&big[..40], &message(9, 40)[..]);
}

#[test]
fn reopened_endpoints_resume_where_the_old_ones_stopped() {
    let ch = TestChannel::with_ring(128);
    let mut buf = [0u8; 64];
    {
        let (mut tx, mut rx) = ch.pair();
        for seq in 0..3 {
            tx.try_send(&message(seq, 20)).unwrap();
        }
        assert_eq!(rx.try_recv(&mut buf), Ok(Some(20)));
    }
    let (mut tx, mut rx) = ch.pair();
    tx.try_send(&message(3, 20)).unwrap();
    for seq in 1..4 {
        assert_eq!(rx.try_recv(&mut buf), Ok(Some(20)));
        assert_eq!(&buf[..20], &message(seq, 20)[..]);
    }
}

#[test]
fn unusable_memory_is_refused() {
    let ch = TestChannel::with_ring(64);
    let good = ch.memory();
    let check = |m: ChannelMemory| {
        // SAFETY: every candidate is refused before any access (that is what we test), or
        // is `good`, which is live for this test.
        let tx = unsafe { Sender::from_memory(m) }.map(|_| ());
        // SAFETY: as above.
        let rx = unsafe { Receiver::from_memory(m) }.map(|_| ());
        assert_eq!(tx, rx);
        tx
    };
    assert_eq!(check(good), Ok(()));
    let null = ChannelMemory {
        data: core::ptr::null_mut(),
        ..good
    };
    assert_eq!(check(null), Err(LayoutError::Null));
    let misaligned = ChannelMemory {
        ack: good.ack.wrapping_add(4),
        ack_len: ACK_LEN - 8,
        ..good
    };
    assert_eq!(check(misaligned), Err(LayoutError::Misaligned));
    let small = ChannelMemory {
        data_len: RING_HEADER_SIZE + 8,
        ..good
    };
    assert_eq!(check(small), Err(LayoutError::DataTooSmall { len: 136 }));
    let small_ack = ChannelMemory {
        ack_len: 64,
        ..good
    };
    assert_eq!(check(small_ack), Err(LayoutError::AckTooSmall { len: 64 }));
    let overlap = ChannelMemory {
        ack: good.data.wrapping_add(64),
        ..good
    };
    assert_eq!(check(overlap), Err(LayoutError::Overlap));
    let wraps = ChannelMemory {
        data: core::ptr::without_provenance_mut(usize::MAX - 7),
        data_len: 4096,
        ..good
    };
    assert_eq!(check(wraps), Err(LayoutError::Overlap));
}

#[test]
fn endpoints_opened_through_a_directory_talk() {
    use quest_abi::directory::{DirectoryEntry, DirectoryHeader, DIRECTORY_MAGIC};
    use quest_abi::directory::{ROLE_READER, ROLE_WRITER};
    use zerocopy::{FromZeros, IntoBytes};
    let ch = TestChannel::with_ring(1024);
    let m = ch.memory();
    let mut page = vec![0u8; 4096];
    let mut h = DirectoryHeader::new_zeroed();
    h.magic = DIRECTORY_MAGIC;
    h.count = 2.into();
    page[..16].copy_from_slice(h.as_bytes());
    for (i, role) in [ROLE_WRITER, ROLE_READER].into_iter().enumerate() {
        let mut e = DirectoryEntry::new_zeroed();
        e.name = quest_abi::name_field("loop").unwrap();
        e.role = role.into();
        e.data_gpa = (m.data as u64).into();
        e.data_size = (m.data_len as u64).into();
        e.ack_gpa = (m.ack as u64).into();
        e.ack_size = (m.ack_len as u64).into();
        let at = 16 + i * e.as_bytes().len();
        page[at..at + e.as_bytes().len()].copy_from_slice(e.as_bytes());
    }
    let dir = Directory::from_bytes(&page).unwrap();
    let (wmem, windex) = dir.endpoint("loop", Role::Writer).unwrap();
    let (rmem, rindex) = dir.endpoint("loop", Role::Reader).unwrap();
    assert_eq!((windex, rindex), (0, 1));
    assert_eq!(wmem, m);
    assert_eq!(rmem, m);
    // SAFETY: the directory names `ch`'s memory (exposed by the casts above), live until the
    // end of the test, one sender and one receiver.
    let (mut tx, mut rx) = unsafe {
        (
            Sender::from_memory(wmem).unwrap(),
            Receiver::from_memory(rmem).unwrap(),
        )
    };
    assert_eq!(tx.max_message_len(), 1008);
    tx.send(b"through the directory").unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(rx.recv(&mut buf), Ok(21));
    assert_eq!(&buf[..21], b"through the directory");
}

#[test]
fn a_spinning_pair_never_touches_the_sleep_counters() {
    let ch = TestChannel::with_ring(64);
    let (mut tx, mut rx) = ch.pair();
    let mut buf = [0u8; 8];
    for _ in 0..100 {
        tx.send(&[1; 8]).unwrap();
        rx.recv(&mut buf).unwrap();
    }
    assert_eq!((ch.reader_sleep(), ch.writer_sleep()), (0, 0));
}

#[test]
fn every_message_is_timed_on_the_readers_clock() {
    let ch = TestChannel::with_ring(1024);
    let (mut tx, rx) = ch.pair();
    let mut buf = [0u8; 64];
    // Say the writer's TSC reads 2^40 more than ours (offset = ours - theirs): converted
    // to our clock, every stamp is 2^40 earlier, so every latency is at least that.
    let mut rx = rx.with_tsc_offset(-(1 << 40));
    for len in [0usize, 8, 64] {
        tx.try_send(&[1; 64][..len]).unwrap();
        assert_eq!(rx.try_recv(&mut buf), Ok(Some(len)));
    }
    let l = rx.latency();
    assert_eq!((l.messages, l.early), (3, 0));
    assert!(
        l.worst >= 1 << 40 && l.worst < (1 << 40) + (1 << 36),
        "{}",
        l.worst
    );
    assert_eq!(l.buckets[41], 3, "2^40 + a little has 41 significant bits");
    // Say ours reads 2^50 more: stamps land in our future (a wrong offset, or a lying
    // writer), counted as early with latency 0.
    let mut rx = rx.with_tsc_offset(1 << 50);
    tx.try_send(&[2; 8]).unwrap();
    assert_eq!(rx.try_recv(&mut buf), Ok(Some(8)));
    let l = rx.latency();
    assert_eq!((l.messages, l.early, l.buckets[0]), (4, 1, 1));
    // Nothing received, nothing recorded: an empty poll is not a message.
    assert_eq!(rx.try_recv(&mut buf), Ok(None));
    assert_eq!(rx.latency().messages, 4);
}

#[test]
fn a_reopened_receiver_keeps_counting_and_unread_tracks_the_reader() {
    let ch = TestChannel::with_ring(1024);
    let mut tx = ch.sender();
    assert!(!tx.reader_opened(), "no receiver yet");
    let mut rx = ch.receiver();
    assert!(tx.reader_opened());
    let mut buf = [0u8; 64];
    assert_eq!(tx.unread(), Ok(0));
    tx.try_send(&[1; 10]).unwrap();
    tx.try_send(&[1; 40]).unwrap();
    assert_eq!(tx.unread(), Ok(32 + 56));
    assert_eq!(rx.try_recv(&mut buf), Ok(Some(10)));
    assert_eq!(tx.unread(), Ok(56));
    drop(rx);
    let mut rx = ch.receiver();
    assert_eq!(rx.try_recv(&mut buf), Ok(Some(40)));
    assert_eq!(
        rx.latency().messages,
        2,
        "the block survives a new receiver"
    );
    assert_eq!(tx.unread(), Ok(0));
    // A reader index behind the last one seen is a lie.
    ch.set_read_index(32);
    assert_eq!(tx.unread(), Err(SendError::Corrupt));
}
