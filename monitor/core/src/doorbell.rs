//! The `DOORBELL` hypercall's argument: which channel a sandbox means, and whom to wake.
//!
//! A sandbox names a channel by its position in its own channel directory. The host
//! (`quest-build`'s `plan::directory`) lists a sandbox's channels in table order,
//! keeping those it is an endpoint of (writer or reader), at most
//! [`MAX_DIRECTORY_ENTRIES`]; position `i` is therefore the `i`-th such channel. The
//! monitor recomputes that from the validated table and never reads the directory page
//! (guest-visible memory) to decide.

use quest_abi::directory::MAX_DIRECTORY_ENTRIES;
use quest_abi::ChannelEntry;

/// Where a doorbell goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DoorbellTarget {
    /// Index of the channel in the partition table.
    pub channel: usize,
    /// The sandbox at the other end (the one to wake).
    pub peer: usize,
}

/// The channel at `directory_index` in `caller`'s directory and its peer; `None` when the
/// index (a raw guest register) names no channel of `caller`.
pub fn doorbell_target(
    channels: &[ChannelEntry],
    caller: usize,
    directory_index: u64,
) -> Option<DoorbellTarget> {
    let index = usize::try_from(directory_index)
        .ok()
        .filter(|&i| i < MAX_DIRECTORY_ENTRIES)?;
    channels
        .iter()
        .enumerate()
        .filter_map(|(c, e)| {
            let (w, r) = (e.writer.get() as usize, e.reader.get() as usize);
            let peer = if w == caller { r } else { w };
            ((w == caller) != (r == caller)).then_some(DoorbellTarget { channel: c, peer })
        })
        .nth(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quest_abi::name_field;
    use zerocopy::FromZeros;

    fn channel(writer: u32, reader: u32) -> ChannelEntry {
        let mut c = ChannelEntry::new_zeroed();
        c.name = name_field("c").unwrap();
        c.writer = writer.into();
        c.reader = reader.into();
        c
    }

    #[test]
    fn index_counts_only_the_callers_channels_in_table_order() {
        // 0 -> 1, 2 -> 3, 1 -> 0, 0 -> 2
        let channels = [channel(0, 1), channel(2, 3), channel(1, 0), channel(0, 2)];
        let t = |caller, i| doorbell_target(&channels, caller, i);
        assert_eq!(
            t(0, 0),
            Some(DoorbellTarget {
                channel: 0,
                peer: 1
            })
        );
        assert_eq!(
            t(0, 1),
            Some(DoorbellTarget {
                channel: 2,
                peer: 1
            })
        );
        assert_eq!(
            t(0, 2),
            Some(DoorbellTarget {
                channel: 3,
                peer: 2
            })
        );
        assert_eq!(t(0, 3), None);
        assert_eq!(
            t(3, 0),
            Some(DoorbellTarget {
                channel: 1,
                peer: 2
            })
        );
        assert_eq!(t(3, 1), None);
        assert_eq!(t(4, 0), None, "a sandbox without channels");
    }

    #[test]
    fn hostile_indices_are_refused() {
        let channels = [channel(0, 1)];
        for i in [1, 2, 63, 64, u64::from(u32::MAX), u64::MAX, 1 << 63] {
            assert_eq!(doorbell_target(&channels, 0, i), None, "index {i}");
        }
        assert_eq!(doorbell_target(&[], 0, 0), None);
    }

    #[test]
    fn positions_past_the_directory_page_are_refused() {
        // More channels than one directory page lists (validation forbids it; stay safe).
        let channels: std::vec::Vec<_> = (0..MAX_DIRECTORY_ENTRIES + 3)
            .map(|_| channel(0, 1))
            .collect();
        let last = MAX_DIRECTORY_ENTRIES as u64 - 1;
        assert!(doorbell_target(&channels, 1, last).is_some());
        assert_eq!(doorbell_target(&channels, 1, last + 1), None);
    }

    #[test]
    fn a_channel_to_itself_is_never_a_target() {
        let channels = [channel(0, 0), channel(0, 1)];
        assert_eq!(
            doorbell_target(&channels, 0, 0),
            Some(DoorbellTarget {
                channel: 1,
                peer: 1
            })
        );
    }
}
