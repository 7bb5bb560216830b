//! Finding channels by name in the channel directory ([`quest_abi::directory`]).

use crate::error::OpenError;
use crate::shared::ChannelMemory;
use quest_abi::directory::{
    DirectoryEntry, DirectoryHeader, DIRECTORY_MAGIC, MAX_DIRECTORY_ENTRIES, ROLE_READER,
    ROLE_WRITER,
};
use zerocopy::FromBytes;

/// Which end of a channel a sandbox holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// It writes the data area and reads the acknowledgement area.
    Writer,
    /// It reads the data area and writes the acknowledgement area.
    Reader,
}

/// One channel as the directory lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelInfo<'a> {
    /// Position in this directory (what the `DOORBELL` hypercall takes).
    pub index: usize,
    /// Index of the channel in the partition table (the calibration page's index).
    pub channel: usize,
    /// Channel name (`None` if the entry's name is not valid UTF-8).
    pub name: Option<&'a str>,
    /// This sandbox's end (`None` for an unknown role value).
    pub role: Option<Role>,
    /// Guest-physical address of the data area.
    pub data_gpa: u64,
    /// Size of the data area.
    pub data_size: u64,
    /// Guest-physical address of the acknowledgement area.
    pub ack_gpa: u64,
    /// Size of the acknowledgement area.
    pub ack_size: u64,
}

/// A channel directory: a header and entries, read from a byte slice.
#[derive(Clone, Copy, Debug)]
pub struct Directory<'a> {
    entries: &'a [DirectoryEntry],
}

impl<'a> Directory<'a> {
    /// Reads a directory page. Fails with [`OpenError::DirectoryMissing`] if the magic is
    /// wrong or the entry count does not fit in `bytes` or in one page.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, OpenError> {
        let (header, rest) =
            DirectoryHeader::ref_from_prefix(bytes).map_err(|_| OpenError::DirectoryMissing)?;
        if header.magic != DIRECTORY_MAGIC {
            return Err(OpenError::DirectoryMissing);
        }
        let count = header.count.get() as usize;
        if count > MAX_DIRECTORY_ENTRIES {
            return Err(OpenError::DirectoryMissing);
        }
        let (entries, _) = <[DirectoryEntry]>::ref_from_prefix_with_elems(rest, count)
            .map_err(|_| OpenError::DirectoryMissing)?;
        Ok(Self { entries })
    }

    /// The directory the monitor maps read-only at [`quest_abi::layout::DIRECTORY_GPA`]
    /// (identity-mapped in both runtimes).
    ///
    /// Only in a Quest sandbox: this crate's guest targets are built by `quest-build` to
    /// run under the Quest monitor, which maps the directory page in every sandbox that has
    /// channels. In a sandbox without channels the page is not mapped and the access stops
    /// the sandbox; a bare app that may lack channels checks `BootInfo::directory_gpa`
    /// first.
    #[cfg(any(target_os = "none", target_os = "hermit", doc))]
    pub fn fixed() -> Result<Directory<'static>, OpenError> {
        use quest_abi::layout::{DIRECTORY_GPA, DIRECTORY_SIZE};
        let page = core::ptr::with_exposed_provenance::<u8>(DIRECTORY_GPA as usize);
        // SAFETY: in a Quest sandbox with channels (see above) the monitor maps
        // DIRECTORY_SIZE bytes read-only at DIRECTORY_GPA, identity-mapped, for the
        // sandbox's whole life, and nobody writes them after boot, so an immutable
        // 'static byte slice over them is sound.
        let bytes = unsafe { core::slice::from_raw_parts(page, DIRECTORY_SIZE as usize) };
        Directory::from_bytes(bytes)
    }

    /// Number of channels listed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no channel is listed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every listed channel, in directory order.
    pub fn channels(&self) -> impl Iterator<Item = ChannelInfo<'a>> + 'a {
        self.entries
            .iter()
            .enumerate()
            .map(|(index, e)| ChannelInfo {
                index,
                channel: e.channel.get() as usize,
                name: quest_abi::name_str(&e.name),
                role: match e.role.get() {
                    ROLE_WRITER => Some(Role::Writer),
                    ROLE_READER => Some(Role::Reader),
                    _ => None,
                },
                data_gpa: e.data_gpa.get(),
                data_size: e.data_size.get(),
                ack_gpa: e.ack_gpa.get(),
                ack_size: e.ack_size.get(),
            })
    }

    /// The channel `name` with this sandbox as `role`.
    pub fn find(&self, name: &str, role: Role) -> Result<ChannelInfo<'a>, OpenError> {
        let mut other_role = false;
        for c in self.channels().filter(|c| c.name == Some(name)) {
            if c.role == Some(role) {
                return Ok(c);
            }
            other_role = true;
        }
        match (other_role, role) {
            (false, _) => Err(OpenError::NoSuchChannel),
            (true, Role::Writer) => Err(OpenError::NotWriter),
            (true, Role::Reader) => Err(OpenError::NotReader),
        }
    }

    /// Where the channel `name` lies when guest-physical addresses are this runtime's
    /// addresses (identity mapping), and its directory index.
    pub fn endpoint(&self, name: &str, role: Role) -> Result<(ChannelMemory, usize), OpenError> {
        let c = self.find(name, role)?;
        let too_big = OpenError::Layout(crate::LayoutError::Overlap);
        let size = |s: u64| usize::try_from(s).map_err(|_| too_big);
        let memory = ChannelMemory {
            data: core::ptr::with_exposed_provenance_mut(size(c.data_gpa)?),
            data_len: size(c.data_size)?,
            ack: core::ptr::with_exposed_provenance_mut(size(c.ack_gpa)?),
            ack_len: size(c.ack_size)?,
        };
        Ok((memory, c.index))
    }
}

/// Where an endpoint came from: its index in this sandbox's directory (0 for one built
/// from memory) and, for one opened from the directory, its claim on that entry.
#[derive(Debug, Default)]
pub(crate) struct Opened {
    pub(crate) index: usize,
    /// The channel's index in the partition table (0 for an endpoint built from memory).
    #[cfg_attr(not(any(target_os = "none", target_os = "hermit")), allow(dead_code))]
    pub(crate) channel: usize,
    _claim: Option<Claim>,
}

/// Opens the channel `name` as `role` from the directory the monitor maps at
/// [`quest_abi::layout::DIRECTORY_GPA`]: finds it, claims its entry (one sender and one
/// receiver per channel in this sandbox) and builds the endpoint over its memory with
/// `from_memory`, which is [`crate::Sender::from_memory`] for a writer and
/// [`crate::Receiver::from_memory`] for a reader.
#[cfg(any(target_os = "none", target_os = "hermit", doc))]
pub(crate) fn open<T>(
    name: &str,
    role: Role,
    from_memory: unsafe fn(ChannelMemory) -> Result<T, crate::LayoutError>,
) -> Result<(T, Opened), OpenError> {
    let directory = Directory::fixed()?;
    let (memory, index) = directory.endpoint(name, role)?;
    let channel = directory.find(name, role)?.channel;
    let claim = Claim::take(index)?;
    // SAFETY: the directory at the fixed address is the monitor's (see `Directory::fixed`):
    // its entries name this sandbox's channel mappings, which stay mapped for the
    // sandbox's life, writable where `role` writes (the data area for a writer, the
    // acknowledgement area for a reader), and are shared only with the peer endpoint,
    // which uses this same atomic protocol. The claim makes this the only endpoint of its
    // role on the channel in this sandbox, as both `from_memory`s require.
    let endpoint = unsafe { from_memory(memory) }?;
    Ok((
        endpoint,
        Opened {
            index,
            channel,
            _claim: Some(claim),
        },
    ))
}

/// One end of a directory channel held open in this sandbox; released on drop. Makes
/// `open` refuse a second sender (or receiver) for the same channel, which would break
/// the single-producer, single-consumer ring.
#[derive(Debug)]
pub(crate) struct Claim {
    #[cfg_attr(not(any(target_os = "none", target_os = "hermit")), allow(dead_code))]
    index: usize,
}

/// Which directory entries are open.
static CLAIMED: [core::sync::atomic::AtomicBool; MAX_DIRECTORY_ENTRIES] =
    [const { core::sync::atomic::AtomicBool::new(false) }; MAX_DIRECTORY_ENTRIES];

impl Claim {
    /// Claims directory entry `index`.
    #[cfg_attr(not(any(target_os = "none", target_os = "hermit")), allow(dead_code))]
    pub(crate) fn take(index: usize) -> Result<Self, OpenError> {
        let slot = CLAIMED.get(index).ok_or(OpenError::NoSuchChannel)?;
        if slot.swap(true, core::sync::atomic::Ordering::Acquire) {
            return Err(OpenError::AlreadyOpen);
        }
        Ok(Self { index })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(slot) = CLAIMED.get(self.index) {
            slot.store(false, core::sync::atomic::Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quest_abi::directory::directory_page;
    use quest_abi::layout::DIRECTORY_SIZE;
    use zerocopy::FromZeros;

    fn entry(name: &str, role: u32, data_gpa: u64) -> DirectoryEntry {
        let mut e = DirectoryEntry::new_zeroed();
        e.name = quest_abi::name_field(name).unwrap();
        e.role = role.into();
        e.data_gpa = data_gpa.into();
        e.data_size = 0x2000.into();
        e.ack_gpa = (data_gpa + 0x2000).into();
        e.ack_size = 0x1000.into();
        e
    }

    /// A directory page with a channel we write and one we read: `(name, data GPA)` each.
    fn writer_and_reader(
        writer: (&str, u64),
        reader: (&str, u64),
    ) -> [u8; DIRECTORY_SIZE as usize] {
        directory_page(&[
            entry(writer.0, ROLE_WRITER, writer.1),
            entry(reader.0, ROLE_READER, reader.1),
        ])
    }

    #[test]
    fn finds_channels_by_name_and_role() {
        let p = writer_and_reader(("ping", 0x40_0000_2000), ("pong", 0x40_0000_6000));
        let d = Directory::from_bytes(&p).unwrap();
        assert_eq!(d.len(), 2);
        let pong = d.find("pong", Role::Reader).unwrap();
        assert_eq!(pong.index, 1);
        assert_eq!(pong.data_gpa, 0x40_0000_6000);
        assert_eq!(pong.ack_gpa, 0x40_0000_8000);
        let (mem, index) = d.endpoint("ping", Role::Writer).unwrap();
        assert_eq!(index, 0);
        assert_eq!(mem.data as usize, 0x40_0000_2000);
        assert_eq!(mem.data_len, 0x2000);
        assert_eq!(mem.ack_len, 0x1000);
    }

    #[test]
    fn wrong_role_and_unknown_names_are_distinct_errors() {
        let p = writer_and_reader(("ping", 0x1000), ("pong", 0x8000));
        let d = Directory::from_bytes(&p).unwrap();
        assert_eq!(d.find("ping", Role::Reader), Err(OpenError::NotReader));
        assert_eq!(d.find("pong", Role::Writer), Err(OpenError::NotWriter));
        assert_eq!(d.find("nope", Role::Reader), Err(OpenError::NoSuchChannel));
        assert_eq!(d.find("", Role::Reader), Err(OpenError::NoSuchChannel));
    }

    #[test]
    fn a_loopback_channel_has_both_roles() {
        let p = writer_and_reader(("self", 0x1000), ("self", 0x1000));
        let d = Directory::from_bytes(&p).unwrap();
        assert_eq!(d.find("self", Role::Writer).unwrap().index, 0);
        assert_eq!(d.find("self", Role::Reader).unwrap().index, 1);
    }

    #[test]
    fn a_missing_or_broken_directory_is_reported() {
        assert_eq!(
            Directory::from_bytes(&[0u8; 4096]).unwrap_err(),
            OpenError::DirectoryMissing
        );
        assert_eq!(
            Directory::from_bytes(&[]).unwrap_err(),
            OpenError::DirectoryMissing
        );
        let mut p = directory_page(&[entry("ping", ROLE_WRITER, 0x1000)]);
        p[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            Directory::from_bytes(&p).unwrap_err(),
            OpenError::DirectoryMissing
        );
        let short = directory_page(&[entry("ping", ROLE_WRITER, 0x1000)]);
        assert_eq!(
            Directory::from_bytes(&short[..40]).unwrap_err(),
            OpenError::DirectoryMissing,
            "count claims an entry the slice does not hold"
        );
        let empty = directory_page(&[]);
        assert!(Directory::from_bytes(&empty).unwrap().is_empty());
    }

    #[test]
    fn unknown_roles_and_bad_names_match_nothing() {
        let mut bad_name = entry("ping", 7, 0x1000);
        bad_name.name[0] = 0xff;
        let p = directory_page(&[bad_name, entry("ping", 7, 0x1000)]);
        let d = Directory::from_bytes(&p).unwrap();
        let infos: Vec<_> = d.channels().collect();
        assert_eq!(infos[0].name, None);
        assert_eq!(infos[1].role, None);
        assert_eq!(d.find("ping", Role::Reader), Err(OpenError::NotReader));
    }

    #[test]
    fn claims_are_exclusive_until_dropped() {
        let a = Claim::take(3).unwrap();
        assert_eq!(Claim::take(3).unwrap_err(), OpenError::AlreadyOpen);
        drop(a);
        let _b = Claim::take(3).unwrap();
        assert_eq!(
            Claim::take(MAX_DIRECTORY_ENTRIES).unwrap_err(),
            OpenError::NoSuchChannel
        );
    }
}
