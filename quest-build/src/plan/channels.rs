//! Channel placement: where each channel appears in each endpoint's channel window.
//!
//! A sandbox that is an endpoint of any channel gets the read-only channel directory at
//! [`DIRECTORY_GPA`] and then, in manifest order, each of its channels: the data area
//! (writer read-write, reader read-only) immediately followed by the acknowledgement area
//! (reader read-write, writer read-only). One unmapped guard page separates the directory
//! and consecutive channels, so running off the end of one channel faults instead of
//! silently writing into the next one (guest address space in the window is plentiful).

use super::types::{ChannelEnd, ChannelPlan, RegionPlan, Role};
use quest_abi::layout::{CHANNEL_ACK_SIZE, CHANNEL_WINDOW_GPA, DIRECTORY_GPA, DIRECTORY_SIZE};
use quest_abi::{GuestPhysAddr, RegionKind, ACCESS_READ, ACCESS_WRITE, PAGE_SIZE};

/// Unmapped gap after the directory and after every channel in a window.
pub const CHANNEL_GUARD_SIZE: u64 = PAGE_SIZE;

/// Bytes at the start of a data area taken by the ring's header (the writer's index and
/// sleep counter, each on its own cache line), from the channel library's wire format.
pub const RING_HEADER_SIZE: u64 = quest_channel::wire::RING_HEADER_SIZE as u64;

/// Bytes of messages a data area of `data_size` bytes can hold at once.
/// This is the largest single message the channel library accepts on such a channel.
pub fn capacity(data_size: u64) -> u64 {
    usize::try_from(data_size).map_or(0, |d| quest_channel::max_message_len(d) as u64)
}

/// A channel to place: the manifest's channel with its endpoints resolved to indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelRequest {
    /// Channel name.
    pub name: String,
    /// Writer sandbox index.
    pub writer: usize,
    /// Reader sandbox index.
    pub reader: usize,
    /// Data area size as the manifest states it (rounded up to whole pages here).
    pub size: u64,
}

/// One sandbox's channel window as placed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelWindow {
    /// Directory region first, then data and ack regions by address (empty: no channels).
    pub regions: Vec<RegionPlan>,
    /// The channels this sandbox is an endpoint of, in manifest order.
    pub ends: Vec<ChannelEnd>,
}

/// Every channel placed in both of its endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Channels, in request order.
    pub channels: Vec<ChannelPlan>,
    /// Channel windows, one per sandbox.
    pub windows: Vec<ChannelWindow>,
}

/// Rounds a channel size up to whole pages (saturating: an absurd size stays absurd and
/// fails validation rather than wrapping to something small).
pub fn data_size(size: u64) -> u64 {
    size.checked_next_multiple_of(PAGE_SIZE)
        .unwrap_or(u64::MAX - (PAGE_SIZE - 1))
}

/// Bytes of the channel window a sandbox with channels of these (manifest) sizes uses,
/// from [`CHANNEL_WINDOW_GPA`]: the directory, every channel's data and ack area, and the
/// guard pages (0 without channels). It must not exceed
/// [`quest_abi::layout::CHANNEL_WINDOW_SIZE`].
pub fn window_bytes_needed(sizes: impl IntoIterator<Item = u64>) -> u64 {
    let mut sizes = sizes.into_iter().peekable();
    if sizes.peek().is_none() {
        return 0;
    }
    let start = DIRECTORY_GPA - CHANNEL_WINDOW_GPA + DIRECTORY_SIZE;
    sizes.fold(start, |used, size| {
        used.saturating_add(CHANNEL_GUARD_SIZE)
            .saturating_add(data_size(size))
            .saturating_add(CHANNEL_ACK_SIZE)
    })
}

/// Places every channel in the windows of `n_sandboxes` sandboxes. Pure and
/// deterministic; endpoints outside `0..n_sandboxes` are recorded but mapped nowhere
/// (validation rejects them later).
pub fn place_channels(n_sandboxes: usize, requests: &[ChannelRequest]) -> Placement {
    let mut windows = vec![ChannelWindow::default(); n_sandboxes];
    // Next free address in each window.
    let mut cursor = vec![DIRECTORY_GPA + DIRECTORY_SIZE + CHANNEL_GUARD_SIZE; n_sandboxes];
    let mut channels = Vec::with_capacity(requests.len());
    for (index, req) in requests.iter().enumerate() {
        let data_size = data_size(req.size);
        let mut place = |sandbox: usize, role: Role| -> GuestPhysAddr {
            let (Some(window), Some(next)) = (windows.get_mut(sandbox), cursor.get_mut(sandbox))
            else {
                return GuestPhysAddr::ZERO;
            };
            // The cursor saturates (validation rejects a window that large).
            let (data, ack) = (*next, next.saturating_add(data_size));
            *next = ack
                .saturating_add(CHANNEL_ACK_SIZE)
                .saturating_add(CHANNEL_GUARD_SIZE);
            let (data_gpa, ack_gpa) = (GuestPhysAddr::new(data), GuestPhysAddr::new(ack));
            let (data_access, ack_access) = match role {
                Role::Writer => (ACCESS_READ | ACCESS_WRITE, ACCESS_READ),
                Role::Reader => (ACCESS_READ, ACCESS_READ | ACCESS_WRITE),
            };
            window.regions.push(RegionPlan {
                kind: RegionKind::ChannelData,
                gpa: data_gpa,
                size: data_size,
                access: data_access,
                channel: Some(index),
            });
            window.regions.push(RegionPlan {
                kind: RegionKind::ChannelAck,
                gpa: ack_gpa,
                size: CHANNEL_ACK_SIZE,
                access: ack_access,
                channel: Some(index),
            });
            window.ends.push(ChannelEnd {
                channel: index,
                role,
                data_gpa,
                ack_gpa,
            });
            data_gpa
        };
        let writer_gpa = place(req.writer, Role::Writer);
        let reader_gpa = place(req.reader, Role::Reader);
        channels.push(ChannelPlan {
            name: req.name.clone(),
            writer: req.writer,
            reader: req.reader,
            data_size,
            ack_size: CHANNEL_ACK_SIZE,
            writer_gpa,
            reader_gpa,
        });
    }
    for window in &mut windows {
        if !window.ends.is_empty() {
            window.regions.insert(
                0,
                RegionPlan {
                    kind: RegionKind::Directory,
                    gpa: GuestPhysAddr::new(DIRECTORY_GPA),
                    size: DIRECTORY_SIZE,
                    access: ACCESS_READ,
                    channel: None,
                },
            );
        }
    }
    Placement { channels, windows }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn req(name: &str, writer: usize, reader: usize, size: u64) -> ChannelRequest {
        ChannelRequest {
            name: name.into(),
            writer,
            reader,
            size,
        }
    }

    #[test]
    fn a_channel_pair_is_placed_after_the_directory_in_both_windows() {
        let p = place_channels(3, &[req("ab", 0, 1, 64 << 10), req("ba", 1, 0, 5000)]);
        let first = GuestPhysAddr::new(DIRECTORY_GPA + DIRECTORY_SIZE + CHANNEL_GUARD_SIZE);
        let ab = &p.channels[0];
        assert_eq!((ab.writer_gpa, ab.reader_gpa), (first, first));
        assert_eq!((ab.data_size, ab.ack_size), (64 << 10, CHANNEL_ACK_SIZE));
        let second = first
            .checked_add((64 << 10) + CHANNEL_ACK_SIZE + CHANNEL_GUARD_SIZE)
            .unwrap();
        let ba = &p.channels[1];
        assert_eq!((ba.writer_gpa, ba.reader_gpa), (second, second));
        assert_eq!(ba.data_size, 8192, "5000 bytes round up to two pages");

        let w0 = &p.windows[0];
        let kinds: Vec<_> = w0.regions.iter().map(|r| (r.kind, r.access)).collect();
        let (r, rw) = (ACCESS_READ, ACCESS_READ | ACCESS_WRITE);
        assert_eq!(
            kinds,
            [
                (RegionKind::Directory, r),
                (RegionKind::ChannelData, rw),
                (RegionKind::ChannelAck, r),
                (RegionKind::ChannelData, r),
                (RegionKind::ChannelAck, rw),
            ]
        );
        assert_eq!(w0.ends[0].role, Role::Writer);
        assert_eq!(w0.ends[1].role, Role::Reader);
        assert_eq!(w0.ends[1].ack_gpa, second.checked_add(8192).unwrap());
        assert!(p.windows[2].regions.is_empty() && p.windows[2].ends.is_empty());
    }

    #[test]
    fn window_bytes_needed_matches_the_placement() {
        let sizes = [4096, 64 << 10, 1 << 20];
        let reqs: Vec<_> = sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| req(&format!("c{i}"), 0, 1, s))
            .collect();
        let p = place_channels(2, &reqs);
        let last = p.windows[0].regions.last().unwrap();
        let end = last.gpa.checked_add(last.size).unwrap();
        assert_eq!(
            end.checked_offset_from(GuestPhysAddr::new(CHANNEL_WINDOW_GPA)),
            Some(window_bytes_needed(sizes))
        );
        assert_eq!(window_bytes_needed([]), 0);
    }

    #[test]
    fn bad_endpoints_and_sizes_never_panic() {
        let p = place_channels(1, &[req("x", 7, 0, u64::MAX), req("y", 0, 0, 1)]);
        assert_eq!(
            p.channels[0].writer_gpa,
            GuestPhysAddr::ZERO,
            "unknown writer is mapped nowhere"
        );
        assert_eq!(p.channels.len(), 2);
        assert_eq!(window_bytes_needed([u64::MAX, u64::MAX]), u64::MAX);
    }

    proptest! {
        #[test]
        fn windows_are_disjoint_aligned_and_consistent(
            chans in proptest::collection::vec((0usize..5, 0usize..5, 1u64..(4 << 20)), 0..24)
        ) {
            let reqs: Vec<_> = chans
                .iter()
                .enumerate()
                .filter(|(_, (w, r, _))| w != r)
                .map(|(i, &(w, r, s))| req(&format!("c{i}"), w, r, s))
                .collect();
            let p = place_channels(5, &reqs);
            prop_assert_eq!(&p, &place_channels(5, &reqs), "deterministic");
            for (s, w) in p.windows.iter().enumerate() {
                for (i, a) in w.regions.iter().enumerate() {
                    prop_assert!(a.gpa.is_aligned(PAGE_SIZE));
                    prop_assert_eq!(a.size % PAGE_SIZE, 0);
                    if i > 0 {
                        // Sorted by address and never touching: a guard page or the
                        // ack right after its own data.
                        let prev = &w.regions[i - 1];
                        prop_assert!(prev.gpa.checked_add(prev.size).unwrap() <= a.gpa);
                    }
                }
                let sizes = reqs.iter().filter(|r| r.writer == s || r.reader == s).map(|r| r.size);
                let used = window_bytes_needed(sizes);
                if let Some(last) = w.regions.last() {
                    let end = last.gpa.checked_add(last.size).unwrap();
                    prop_assert_eq!(end.checked_offset_from(GuestPhysAddr::new(CHANNEL_WINDOW_GPA)), Some(used));
                }
            }
            for (i, c) in p.channels.iter().enumerate() {
                let we = p.windows[c.writer].ends.iter().find(|e| e.channel == i).unwrap();
                let re = p.windows[c.reader].ends.iter().find(|e| e.channel == i).unwrap();
                prop_assert_eq!((we.role, we.data_gpa), (Role::Writer, c.writer_gpa));
                prop_assert_eq!((re.role, re.data_gpa), (Role::Reader, c.reader_gpa));
                prop_assert_eq!(Some(we.ack_gpa), we.data_gpa.checked_add(c.data_size));
                prop_assert!(c.data_size >= reqs[i].size && c.data_size - reqs[i].size < PAGE_SIZE);
            }
        }
    }
}
