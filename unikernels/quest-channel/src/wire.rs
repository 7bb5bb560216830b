//! The wire format of a channel: every offset and constant both endpoints agree on.
//!
//! This is an ABI between two sandboxes that may run different builds of this crate, so
//! nothing here changes without a new [`RING_VERSION`]. See the
//! [crate documentation](crate#wire-format) for the picture.

/// Cache-line size the layout separates shared values by.
pub const CACHE_LINE: usize = 64;

/// Version of the ring format described here (documentation only: channel memory is
/// zeroed at boot and carries no version field, so both endpoints must be built against
/// the same format).
pub const RING_VERSION: u32 = 2;

/// Offset, in the data area, of the writer's index: a little-endian `u64` counting every
/// ring byte ever published (monotonic, always a multiple of [`WORD`]). Alone on its cache
/// line; written only by the writer (Release), read by the reader (Acquire).
pub const WRITE_INDEX_OFFSET: usize = 0;
/// Offset, in the data area, of the writer's sleep counter: the writer increments it before
/// it sleeps waiting for space; the reader rings the writer's doorbell when it sees a value
/// it has not rung for yet. Only used by endpoints that have a doorbell.
pub const WRITER_SLEEP_OFFSET: usize = CACHE_LINE;
/// Bytes at the start of the data area before the ring (two cache lines, so the ring
/// starts on its own 128-byte line pair; adjacent-line prefetch fetches pairs).
pub const RING_HEADER_SIZE: usize = 2 * CACHE_LINE;

/// Offset, in the acknowledgement area, of the reader's index: a little-endian `u64`
/// counting every ring byte ever consumed (monotonic, a multiple of [`WORD`], never ahead
/// of the write index). Alone on its cache line; written only by the reader (Release), read
/// by the writer (Acquire).
pub const READ_INDEX_OFFSET: usize = 0;
/// Offset, in the acknowledgement area, of the reader's sleep counter (see
/// [`WRITER_SLEEP_OFFSET`]). On a separate line pair from the read index, so a writer that
/// polls it does not pull the busy read-index line.
pub const READER_SLEEP_OFFSET: usize = 2 * CACHE_LINE;
/// Offset, in the acknowledgement area, of the reader's latency statistics
/// ([`quest_abi::latency`]): written only by the reader, read by the monitor at the end.
pub const STATS_OFFSET: usize = quest_abi::latency::STATS_OFFSET;
/// Smallest acknowledgement area this format needs.
pub const ACK_AREA_MIN: usize = STATS_OFFSET + quest_abi::latency::STATS_SIZE;

/// Ring granularity: records start on 8-byte boundaries and are copied in `u64` words.
pub const WORD: usize = 8;
/// Size of a record header: the tag-and-length word, then the writer's TSC when it wrote
/// the record (the reader measures each message's latency from it).
pub const RECORD_HEADER_SIZE: usize = 2 * WORD;
/// High half of every record header (`"QREC"` little-endian); the low half is the payload
/// length. Catches a reader that lost its place and a writer that scribbled zeros.
pub const RECORD_TAG: u32 = u32::from_le_bytes(*b"QREC");
/// Smallest ring this format accepts (room for one 8-byte message).
pub const MIN_RING_SIZE: usize = RECORD_HEADER_SIZE + WORD;

/// Bytes of ring a data area of `data_size` bytes provides (rounded down to whole words;
/// 0 if the area is too small to hold a header).
pub const fn ring_size(data_size: usize) -> usize {
    if data_size < RING_HEADER_SIZE {
        return 0;
    }
    (data_size - RING_HEADER_SIZE) / WORD * WORD
}

/// Largest message a channel whose data area has `data_size` bytes can carry (its
/// capacity as `quest-build plan` reports it). 0 if the area is too small to be a channel.
pub const fn max_message_len(data_size: usize) -> usize {
    let ring = ring_size(data_size);
    if ring < MIN_RING_SIZE {
        return 0;
    }
    let max = ring - RECORD_HEADER_SIZE;
    if max > u32::MAX as usize {
        // The length field is 32 bits; keep the largest word multiple below it.
        (u32::MAX as usize) / WORD * WORD
    } else {
        max
    }
}

/// Bytes of ring one record with a `len`-byte payload takes (header plus the payload
/// rounded up to whole words). `None` on overflow.
pub const fn record_size(len: usize) -> Option<usize> {
    match len.checked_add(RECORD_HEADER_SIZE + WORD - 1) {
        Some(n) => Some(n / WORD * WORD),
        None => None,
    }
}

/// The header word of a record with a `len`-byte payload (`len` fits in 32 bits).
pub const fn record_header(len: u32) -> u64 {
    (RECORD_TAG as u64) << 32 | len as u64
}

/// The payload length a header word announces, `None` if its tag is wrong.
pub const fn record_len(header: u64) -> Option<u32> {
    if (header >> 32) as u32 == RECORD_TAG {
        Some(header as u32)
    } else {
        None
    }
}

// The layout keeps each shared value on its own line, and fits a sandbox's ack area.
const _: () = {
    assert!(WRITE_INDEX_OFFSET / CACHE_LINE != WRITER_SLEEP_OFFSET / CACHE_LINE);
    assert!(WRITER_SLEEP_OFFSET + WORD <= RING_HEADER_SIZE);
    assert!(RING_HEADER_SIZE % (2 * CACHE_LINE) == 0);
    assert!(READER_SLEEP_OFFSET / (2 * CACHE_LINE) != READ_INDEX_OFFSET / (2 * CACHE_LINE));
    assert!(STATS_OFFSET >= READER_SLEEP_OFFSET + 2 * CACHE_LINE);
    assert!(ACK_AREA_MIN as u64 <= quest_abi::layout::CHANNEL_ACK_SIZE);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_of_a_page_sized_channel() {
        assert_eq!(ring_size(4096), 4096 - 128);
        assert_eq!(max_message_len(4096), 4096 - 128 - 16);
        assert_eq!(ring_size(100), 0);
        assert_eq!(max_message_len(RING_HEADER_SIZE + 16), 0);
        assert_eq!(max_message_len(RING_HEADER_SIZE + 24), 8);
        assert_eq!(
            ring_size(RING_HEADER_SIZE + 23),
            16,
            "rounded down to words"
        );
    }

    #[test]
    fn record_sizes_round_up_to_words() {
        assert_eq!(record_size(0), Some(16));
        assert_eq!(record_size(1), Some(24));
        assert_eq!(record_size(8), Some(24));
        assert_eq!(record_size(9), Some(32));
        assert_eq!(record_size(usize::MAX), None);
    }

    #[test]
    fn headers_round_trip_and_reject_a_wrong_tag() {
        for len in [0u32, 1, 4088, u32::MAX] {
            assert_eq!(record_len(record_header(len)), Some(len));
        }
        assert_eq!(record_len(0), None);
        assert_eq!(record_len(u64::MAX), None);
    }
}
