//! The channel directory: a read-only page at [`crate::layout::DIRECTORY_GPA`] in every
//! sandbox that has channels, listing them by name with their guest addresses.

use crate::table::NAME_LEN;
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
pub const MAX_DIRECTORY_ENTRIES: usize = (crate::layout::DIRECTORY_SIZE as usize
    - core::mem::size_of::<DirectoryHeader>())
    / core::mem::size_of::<DirectoryEntry>();
