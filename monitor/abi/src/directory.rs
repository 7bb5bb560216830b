//! The channel directory: a read-only page at [`crate::layout::DIRECTORY_GPA`] in every
//! sandbox that has channels, listing them by name with their guest addresses.

use crate::layout::DIRECTORY_SIZE;
use crate::table::NAME_LEN;
use core::mem::size_of;
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// [`DirectoryHeader::magic`].
pub const DIRECTORY_MAGIC: [u8; 8] = *b"QUESTCD\0";

/// Start of the directory page.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct DirectoryHeader {
    /// [`DIRECTORY_MAGIC`].
    pub magic: [u8; 8],
    /// Number of [`DirectoryEntry`]s that follow.
    pub count: U32,
    /// Reserved, zero.
    pub reserved: U32,
}

/// This sandbox writes the channel.
pub const ROLE_WRITER: u32 = 0;
/// This sandbox reads the channel.
pub const ROLE_READER: u32 = 1;

/// One channel as one endpoint sees it.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct DirectoryEntry {
    /// Channel name.
    pub name: [u8; NAME_LEN],
    /// [`ROLE_WRITER`] or [`ROLE_READER`].
    pub role: U32,
    /// Index of the channel in the partition table.
    pub channel: U32,
    /// Guest-physical address of the data area.
    pub data_gpa: U64,
    /// Size of the data area.
    pub data_size: U64,
    /// Guest-physical address of the acknowledgement area.
    pub ack_gpa: U64,
    /// Size of the acknowledgement area.
    pub ack_size: U64,
}

/// Most entries that fit in one directory page.
pub const MAX_DIRECTORY_ENTRIES: usize =
    (DIRECTORY_SIZE as usize - size_of::<DirectoryHeader>()) / size_of::<DirectoryEntry>();

/// The directory page listing `entries` in order: the header, the entries, then zeros.
/// Entries beyond [`MAX_DIRECTORY_ENTRIES`] do not fit and are left out.
pub fn directory_page(entries: &[DirectoryEntry]) -> [u8; DIRECTORY_SIZE as usize] {
    let entries = &entries[..entries.len().min(MAX_DIRECTORY_ENTRIES)];
    let header = DirectoryHeader {
        magic: DIRECTORY_MAGIC,
        // At most MAX_DIRECTORY_ENTRIES: fits.
        count: (entries.len() as u32).into(),
        reserved: 0.into(),
    };
    let mut page = [0u8; DIRECTORY_SIZE as usize];
    let (head, rest) = page.split_at_mut(size_of::<DirectoryHeader>());
    head.copy_from_slice(header.as_bytes());
    for (slot, entry) in rest
        .chunks_exact_mut(size_of::<DirectoryEntry>())
        .zip(entries)
    {
        slot.copy_from_slice(entry.as_bytes());
    }
    page
}
