//! The ACPI I/O Virtualization Reporting Structure (IVRS) that announces AMD IOMMUs
//! (AMD IOMMU spec 48882, chapter 5): a 48-byte header (the ACPI SDT header, IVinfo,
//! 8 reserved bytes) followed by blocks, each `type: u8, flags: u8, length: u16, ...`.
//!
//! Only IVHD blocks (I/O Virtualization Hardware Definition: types 10h, 11h and 40h)
//! matter here: a unit's register base, PCI segment, its own PCI function, and which
//! device IDs it translates (its device entries: all, one, ranges, aliases, special
//! devices, ACPI devices). Firmware often describes one unit twice or three times (a
//! 10h block for old software and an 11h/40h one with more fields); the block of the
//! highest type is used. IVMD blocks (memory that must stay mapped for firmware DMA) and
//! unknown types are skipped by their length. Nothing here trusts the firmware: a table
//! that is short, whose blocks or entries overrun, whose ranges are not closed, or that
//! holds more than this parser keeps, is an error, never a panic or a read out of
//! bounds.

use crate::acpi_walk::{checked_table, structures, u16_at, u32_at, u64_at, HeaderError};
use quest_abi::PciAddress;

/// Bytes before the first block.
pub const HEADER_LEN: usize = 48;
/// Most units kept.
pub const MAX_UNITS: usize = 8;
/// Most device ranges kept per unit (every entry is one, a start/end pair too).
pub const MAX_RANGES: usize = 64;
/// The IVHD types this parser knows, lowest first.
const IVHD_TYPES: [u8; 3] = [0x10, 0x11, 0x40];
/// Bytes of a type 10h IVHD before its device entries.
const IVHD_10_LEN: usize = 24;
/// Bytes of a type 11h or 40h IVHD before its device entries.
const IVHD_11_LEN: usize = 40;
/// Bytes of an ACPI-device (F0h) entry before its UID.
const ACPI_ENTRY_LEN: usize = 22;
/// Most special devices (I/O APICs, HPETs) kept per unit.
pub const MAX_SPECIALS: usize = 8;
/// A special device entry's variety (byte 7) for an I/O APIC.
const VARIETY_IOAPIC: u8 = 1;

/// Why an IVRS table was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IvrsError {
    /// Fewer bytes than the header, or than the header's length field says.
    Truncated {
        /// Bytes given.
        len: usize,
    },
    /// The signature is not `IVRS`.
    BadSignature,
    /// The bytes do not sum to zero.
    BadChecksum,
    /// The block at byte `at` is shorter than 4 bytes or overruns the table.
    BadBlock {
        /// Its offset in the table.
        at: usize,
    },
    /// The IVHD at byte `at` is shorter than its header or has a register base that is
    /// zero or not 4 KiB aligned.
    BadUnit {
        /// Its offset in the table.
        at: usize,
    },
    /// The device entry at byte `at` overruns its unit, has a type whose length is not
    /// known, ends a range that was not started, or starts one that is not ended.
    BadEntry {
        /// Its offset in the table.
        at: usize,
    },
    /// More than [`MAX_UNITS`] units or [`MAX_RANGES`] ranges in one.
    TooMany,
    /// The table announces no unit.
    NoUnit,
}

impl core::fmt::Display for IvrsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::Truncated { len } => write!(f, "IVRS table truncated ({len} bytes)"),
            Self::BadSignature => f.write_str("not an IVRS table"),
            Self::BadChecksum => f.write_str("IVRS checksum is wrong"),
            Self::BadBlock { at } => write!(f, "IVRS block at byte {at} is malformed"),
            Self::BadUnit { at } => write!(f, "IVRS unit at byte {at} is malformed"),
            Self::BadEntry { at } => write!(f, "IVRS device entry at byte {at} is malformed"),
            Self::TooMany => f.write_str("IVRS table has more units or ranges than Quest keeps"),
            Self::NoUnit => f.write_str("IVRS table announces no IOMMU"),
        }
    }
}

/// Device IDs `first..=last` (bus << 8 | device << 3 | function) behind a unit; their
/// requests carry `alias` instead of their own ID when set (a bridge that takes
/// ownership of its secondary bus's requests, say).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    /// The first device ID.
    pub first: u16,
    /// The last device ID.
    pub last: u16,
    /// The ID their requests carry, if not their own.
    pub alias: Option<u16>,
}

/// One IOMMU (the IVHD of the highest known type that describes it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unit {
    /// The IVHD type it came from (10h, 11h or 40h).
    pub block_type: u8,
    /// The unit's own PCI function (its MSI capability signals its events).
    pub function: PciAddress,
    /// Offset of its IOMMU capability in that function's configuration space.
    pub capability: u16,
    /// Host-physical base of its registers (4 KiB aligned, non-zero).
    pub base: u64,
    /// Its PCI segment.
    pub segment: u16,
    /// The extended feature register's image (types 11h and 40h).
    pub features: Option<u64>,
    ranges: [Option<Range>; MAX_RANGES],
    /// Its special devices (entry 48h): variety (1: I/O APIC, 2: HPET), handle (the
    /// I/O APIC ID or HPET number) and device ID.
    specials: [Option<(u8, u8, u16)>; MAX_SPECIALS],
}

impl Unit {
    /// Its device ranges.
    pub fn ranges(&self) -> impl Iterator<Item = &Range> {
        self.ranges.iter().flatten()
    }

    /// The device ID requests of function `f` carry at this unit, if it translates `f`.
    pub fn requester_id(&self, f: PciAddress) -> Option<u16> {
        let id = f.to_u16();
        self.ranges()
            .find(|r| (r.first..=r.last).contains(&id))
            .map(|r| r.alias.unwrap_or(id))
    }

    /// The device IDs of its I/O APICs (special device entries of variety 1) with
    /// their I/O APIC IDs.
    pub fn ioapics(&self) -> impl Iterator<Item = (u8, u16)> + '_ {
        self.specials
            .iter()
            .flatten()
            .filter(|s| s.0 == VARIETY_IOAPIC)
            .map(|&(_, handle, id)| (handle, id))
    }

    /// The highest device ID any of its ranges names (own or alias).
    pub fn highest_id(&self) -> Option<u16> {
        self.ranges()
            .map(|r| r.last.max(r.alias.unwrap_or(0)))
            .max()
    }

    fn push(&mut self, range: Range) -> Result<(), IvrsError> {
        let slot = self
            .ranges
            .iter_mut()
            .find(|r| r.is_none())
            .ok_or(IvrsError::TooMany)?;
        *slot = Some(range);
        Ok(())
    }
}

/// The units of an IVRS table, in table order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ivrs {
    /// IVinfo (bit 1: DMA remapping required by firmware; bits 14:8 physical address
    /// size; bits 21:15 virtual address size).
    pub info: u32,
    units: [Option<Unit>; MAX_UNITS],
}

impl Ivrs {
    /// Parses a whole IVRS table (header included). Bytes after the header's length are
    /// ignored.
    pub fn parse(bytes: &[u8]) -> Result<Self, IvrsError> {
        let table = checked_table(bytes, b"IVRS", HEADER_LEN).map_err(|e| match e {
            HeaderError::Truncated => IvrsError::Truncated { len: bytes.len() },
            HeaderError::BadSignature => IvrsError::BadSignature,
            HeaderError::BadChecksum => IvrsError::BadChecksum,
        })?;
        let mut ivrs = Self {
            info: u32_at(table, 36).ok_or(IvrsError::Truncated { len: bytes.len() })?,
            units: [None; MAX_UNITS],
        };
        for block in structures(table, HEADER_LEN) {
            let (at, block) = block.map_err(|at| IvrsError::BadBlock { at })?;
            if IVHD_TYPES.contains(&block[0]) {
                ivrs.keep(parse_unit(block, at)?)?;
            }
        }
        if ivrs.units().next().is_none() {
            return Err(IvrsError::NoUnit);
        }
        Ok(ivrs)
    }

    /// Adds `unit`, or replaces the block of a lower type that describes the same unit.
    fn keep(&mut self, unit: Unit) -> Result<(), IvrsError> {
        let same =
            |u: &Unit| (u.base, u.segment, u.function) == (unit.base, unit.segment, unit.function);
        if let Some(slot) = self.units.iter_mut().flatten().find(|u| same(u)) {
            if slot.block_type < unit.block_type {
                *slot = unit;
            }
            return Ok(());
        }
        let slot = self
            .units
            .iter_mut()
            .find(|u| u.is_none())
            .ok_or(IvrsError::TooMany)?;
        *slot = Some(unit);
        Ok(())
    }

    /// Its units.
    pub fn units(&self) -> impl Iterator<Item = &Unit> {
        self.units.iter().flatten()
    }

    /// The unit (index) and device ID of the one I/O APIC the table names; `None` when
    /// it names none or several.
    pub fn ioapic(&self) -> Option<(usize, u16)> {
        let mut all = self
            .units()
            .enumerate()
            .flat_map(|(i, u)| u.ioapics().map(move |(_, id)| (i, id)));
        match (all.next(), all.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        }
    }

    /// The index (in [`Ivrs::units`] order) of the unit that translates function `f`
    /// of `segment`, and the device ID its requests carry there.
    pub fn unit_for(&self, segment: u16, f: PciAddress) -> Option<(usize, u16)> {
        self.units()
            .enumerate()
            .filter(|(_, u)| u.segment == segment)
            .find_map(|(i, u)| Some((i, u.requester_id(f)?)))
    }
}

/// One IVHD block (`s`, at table offset `at`).
fn parse_unit(s: &[u8], at: usize) -> Result<Unit, IvrsError> {
    let bad = IvrsError::BadUnit { at };
    let block_type = s[0];
    let header = if block_type == 0x10 {
        IVHD_10_LEN
    } else {
        IVHD_11_LEN
    };
    if s.len() < header {
        return Err(bad);
    }
    let base = u64_at(s, 8).ok_or(bad)?;
    if base == 0 || base % 0x1000 != 0 {
        return Err(bad);
    }
    let mut unit = Unit {
        block_type,
        function: PciAddress::from_u16(u16_at(s, 4).ok_or(bad)?),
        capability: u16_at(s, 6).ok_or(bad)?,
        base,
        segment: u16_at(s, 16).ok_or(bad)?,
        features: (block_type != 0x10).then(|| u64_at(s, 24)).flatten(),
        ranges: [None; MAX_RANGES],
        specials: [None; MAX_SPECIALS],
    };
    // An open range: its first ID, alias and offset.
    let mut open: Option<(u16, Option<u16>, usize)> = None;
    let mut off = header;
    while off < s.len() {
        let bad = IvrsError::BadEntry { at: at + off };
        let kind = s[off];
        let length = entry_len(kind, s.get(off + 21).copied()).ok_or(bad)?;
        let e = s.get(off..off + length).ok_or(bad)?;
        let id = u16_at(e, 1).ok_or(bad)?;
        if open.is_some() && kind != 0x04 {
            return Err(bad);
        }
        let one = |id, alias| Range {
            first: id,
            last: id,
            alias,
        };
        match kind {
            // Select all (the DTE settings byte applies to every device).
            0x01 => unit.push(Range {
                first: 0,
                last: u16::MAX,
                alias: None,
            })?,
            // Select, extended select, ACPI device.
            0x02 | 0x46 | 0xf0 => unit.push(one(id, None))?,
            // Start of range, extended start of range.
            0x03 | 0x47 => open = Some((id, None, off)),
            // Alias start of range: the alias is in bytes 5-6.
            0x43 => open = Some((id, Some(u16_at(e, 5).ok_or(bad)?), off)),
            // End of range.
            0x04 => {
                let (first, alias, _) = open.take().ok_or(bad)?;
                if id < first {
                    return Err(bad);
                }
                unit.push(Range {
                    first,
                    last: id,
                    alias,
                })?;
            }
            // Alias select.
            0x42 => unit.push(one(id, Some(u16_at(e, 5).ok_or(bad)?)))?,
            // Special device (an I/O APIC or HPET): its ID is in bytes 5-6.
            0x48 => {
                let id = u16_at(e, 5).ok_or(bad)?;
                unit.push(one(id, None))?;
                let slot = unit
                    .specials
                    .iter_mut()
                    .find(|s| s.is_none())
                    .ok_or(IvrsError::TooMany)?;
                *slot = Some((e[7], e[4], id));
            }
            // Padding and reserved types of a known length.
            _ => {}
        }
        off += length;
    }
    if let Some((_, _, start)) = open {
        return Err(IvrsError::BadEntry { at: at + start });
    }
    Ok(unit)
}

/// The length of a device entry of type `kind` (`uid_len`: the entry's byte 21, for
/// ACPI devices); `None` for types whose length this parser does not know.
fn entry_len(kind: u8, uid_len: Option<u8>) -> Option<usize> {
    match kind {
        0x00..=0x3f => Some(4),
        0x40..=0x7f => Some(8),
        0xf0 => Some(ACPI_ENTRY_LEN + usize::from(uid_len?)),
        _ => None,
    }
}

#[cfg(test)]
#[path = "ivrs_tests.rs"]
mod tests;
