//! Writing a partition table into a caller-provided buffer (no allocation).

use crate::table::*;
use core::mem::size_of;
use zerocopy::{FromZeros, Immutable, IntoBytes};

/// Everything a table holds, as typed entries; [`encode`] lays it out.
#[derive(Clone, Copy, Debug)]
pub struct TableParts<'a> {
    /// System name field.
    pub system_name: [u8; NAME_LEN],
    /// Logical cores the target must have.
    pub system_cores: u32,
    /// Console UART base port.
    pub console_port: u16,
    /// RAM the target must have.
    pub system_memory: u64,
    /// RAM the monitor reserves for itself.
    pub monitor_reserve: u64,
    /// Size of the payload area following the table.
    pub payload_area_size: u64,
    /// Sandboxes.
    pub sandboxes: &'a [SandboxEntry],
    /// vCPUs, grouped by sandbox.
    pub vcpus: &'a [VcpuEntry],
    /// Regions, grouped by sandbox.
    pub regions: &'a [RegionEntry],
    /// Channels.
    pub channels: &'a [ChannelEntry],
    /// Devices, grouped by sandbox.
    pub devices: &'a [DeviceEntry],
    /// Payloads, grouped by sandbox.
    pub payloads: &'a [PayloadEntry],
}

/// Why a table could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The output buffer is smaller than [`encoded_len`].
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
    },
    /// The table would exceed 4 GiB.
    TooLarge,
}

impl core::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BufferTooSmall { needed } => {
                write!(f, "table buffer too small: {needed} bytes needed")
            }
            Self::TooLarge => f.write_str("table larger than 4 GiB"),
        }
    }
}

fn array_len<T>(items: &[T]) -> Option<usize> {
    items.len().checked_mul(size_of::<T>())
}

/// Size in bytes of the table [`encode`] writes for `parts`.
pub fn encoded_len(parts: &TableParts<'_>) -> Result<usize, EncodeError> {
    let lens = [
        array_len(parts.sandboxes),
        array_len(parts.vcpus),
        array_len(parts.regions),
        array_len(parts.channels),
        array_len(parts.devices),
        array_len(parts.payloads),
    ];
    let mut total = size_of::<Header>();
    for len in lens {
        total = len
            .and_then(|l| total.checked_add(l))
            .ok_or(EncodeError::TooLarge)?;
    }
    if u32::try_from(total).is_err() {
        return Err(EncodeError::TooLarge);
    }
    Ok(total)
}

/// Writes the table for `parts` into the front of `out` and returns its length. The
/// checksum is computed over the result. Validate the result with [`crate::validate()`].
pub fn encode(parts: &TableParts<'_>, out: &mut [u8]) -> Result<usize, EncodeError> {
    let total = encoded_len(parts)?;
    let out = out
        .get_mut(..total)
        .ok_or(EncodeError::BufferTooSmall { needed: total })?;
    out.fill(0);
    let mut header = Header::new_zeroed();
    header.magic = TABLE_MAGIC;
    header.version = TABLE_VERSION.into();
    header.header_size = (size_of::<Header>() as u32).into();
    header.total_size = (total as u32).into();
    header.system_name = parts.system_name;
    header.system_cores = parts.system_cores.into();
    header.console_port = parts.console_port.into();
    header.system_memory = parts.system_memory.into();
    header.monitor_reserve = parts.monitor_reserve.into();
    header.payload_area_size = parts.payload_area_size.into();

    let mut offset = size_of::<Header>();
    header.sandboxes = place(out, &mut offset, parts.sandboxes);
    header.vcpus = place(out, &mut offset, parts.vcpus);
    header.regions = place(out, &mut offset, parts.regions);
    header.channels = place(out, &mut offset, parts.channels);
    header.devices = place(out, &mut offset, parts.devices);
    header.payloads = place(out, &mut offset, parts.payloads);

    out[..size_of::<Header>()].copy_from_slice(header.as_bytes());
    let crc = crate::validate::checksum(out);
    header.checksum = crc.into();
    out[..size_of::<Header>()].copy_from_slice(header.as_bytes());
    Ok(total)
}

/// Copies `items` into `out` at `*offset`, advances `*offset` past them and returns the
/// header's reference to them. [`encoded_len`] sized `out` for every array, and every
/// length and offset fits in a `u32` (it checked the total).
fn place<T: IntoBytes + Immutable>(out: &mut [u8], offset: &mut usize, items: &[T]) -> ArrayRef {
    let bytes = items.as_bytes();
    out[*offset..*offset + bytes.len()].copy_from_slice(bytes);
    let r = ArrayRef {
        offset: (*offset as u32).into(),
        count: (items.len() as u32).into(),
        entry_size: (size_of::<T>() as u32).into(),
        reserved: 0.into(),
    };
    *offset += bytes.len();
    r
}
