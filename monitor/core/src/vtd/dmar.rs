//! The ACPI DMA Remapping table (DMAR) that announces Intel VT-d units (Intel VT-d spec
//! rev. 4.1, chapter 8): a 48-byte header (the ACPI SDT header, host address width,
//! flags) followed by remapping structures, each `type: u16, length: u16, ...`.
//!
//! Only DRHD structures (type 0, "DMA Remapping Hardware Unit Definition") matter here:
//! a unit's register base, PCI segment, and which functions it translates (its device
//! scopes, or every function of the segment not claimed by another unit when the
//! INCLUDE_PCI_ALL flag is set). Everything else (RMRR, ATSR, RHSA, ANDD, SATC and types
//! this code does not know) is skipped by its length. Nothing here trusts the firmware:
//! a table that is short, whose structures overrun it or each other, or that holds more
//! than this parser keeps, is an error, never a panic or a read out of bounds.

use crate::acpi_walk::{checked_table, structures, u16_at, u64_at, HeaderError};
use quest_abi::PciAddress;

/// Bytes before the first remapping structure.
pub const HEADER_LEN: usize = 48;
/// Most DRHD units kept.
pub const MAX_UNITS: usize = 8;
/// Most device scopes kept per unit.
pub const MAX_SCOPES: usize = 16;
/// Most (device, function) steps in one scope's path.
pub const MAX_PATH: usize = 8;
/// DRHD flag bit 0: the unit translates every function of its segment that no other
/// unit's scope names.
const INCLUDE_PCI_ALL: u8 = 1;
/// Remapping structure type of a DRHD.
const TYPE_DRHD: u16 = 0;
/// Bytes of a DRHD before its device scopes.
const DRHD_LEN: usize = 16;
/// Bytes of a device scope before its path.
const SCOPE_LEN: usize = 6;

/// Why a DMAR table was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmarError {
    /// Fewer bytes than the header, or than the header's length field says.
    Truncated {
        /// Bytes given.
        len: usize,
    },
    /// The signature is not `DMAR`.
    BadSignature,
    /// The bytes do not sum to zero.
    BadChecksum,
    /// The remapping structure at byte `at` is shorter than 4 bytes or overruns the table.
    BadStructure {
        /// Its offset in the table.
        at: usize,
    },
    /// The DRHD at byte `at` is too short or has a register base that is zero or not
    /// 4 KiB aligned.
    BadUnit {
        /// Its offset in the table.
        at: usize,
    },
    /// The device scope at byte `at` is too short, has an odd path or overruns its unit.
    BadScope {
        /// Its offset in the table.
        at: usize,
    },
    /// More than [`MAX_UNITS`] units, [`MAX_SCOPES`] scopes in one, or [`MAX_PATH`]
    /// steps in one scope's path.
    TooMany,
    /// The table announces no unit.
    NoUnit,
}

impl core::fmt::Display for DmarError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::Truncated { len } => write!(f, "DMAR table truncated ({len} bytes)"),
            Self::BadSignature => f.write_str("not a DMAR table"),
            Self::BadChecksum => f.write_str("DMAR checksum is wrong"),
            Self::BadStructure { at } => write!(f, "DMAR structure at byte {at} is malformed"),
            Self::BadUnit { at } => write!(f, "DMAR unit at byte {at} is malformed"),
            Self::BadScope { at } => write!(f, "DMAR device scope at byte {at} is malformed"),
            Self::TooMany => {
                f.write_str("DMAR table has more units, scopes or path steps than Quest keeps")
            }
            Self::NoUnit => f.write_str("DMAR table announces no remapping unit"),
        }
    }
}

/// What a device scope names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeKind {
    /// One PCI endpoint function.
    Endpoint,
    /// A PCI-PCI bridge and everything below it.
    SubHierarchy,
    /// An I/O APIC (only interrupt remapping cares).
    IoApic,
    /// An HPET (only interrupt remapping cares).
    Hpet,
    /// An ACPI namespace device.
    AcpiNamespace,
    /// A type this code does not know: it never matches a function.
    Other(u8),
}

impl ScopeKind {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Endpoint,
            2 => Self::SubHierarchy,
            3 => Self::IoApic,
            4 => Self::Hpet,
            5 => Self::AcpiNamespace,
            other => Self::Other(other),
        }
    }
}

/// One device scope: a path from `start_bus` through bridges, one (device, function)
/// step per level; the last step is the scope's device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scope {
    /// What it names.
    pub kind: ScopeKind,
    /// The bus of the first step.
    pub start_bus: u8,
    path: [(u8, u8); MAX_PATH],
    path_len: usize,
}

impl Scope {
    /// The (device, function) steps.
    pub fn path(&self) -> &[(u8, u8)] {
        &self.path[..self.path_len]
    }

    /// The function the path ends at: each step but the last is a bridge whose
    /// secondary bus `bridge` gives (`None`: not a bridge, or not there).
    pub fn resolve(
        &self,
        bridge: impl Fn(PciAddress) -> Option<BridgeBuses>,
    ) -> Option<PciAddress> {
        let (last, hops) = self.path().split_last()?;
        let mut bus = self.start_bus;
        for &(device, function) in hops {
            bus = bridge(PciAddress::new(bus, device, function)?)?.secondary;
        }
        PciAddress::new(bus, last.0, last.1)
    }

    /// Whether the scope covers function `f`: an endpoint scope that resolves to it, or a
    /// sub-hierarchy scope whose bridge is `f` or has `f`'s bus in its bus range.
    pub fn covers(
        &self,
        f: PciAddress,
        bridge: impl Fn(PciAddress) -> Option<BridgeBuses> + Copy,
    ) -> bool {
        let Some(at) = self.resolve(bridge) else {
            return false;
        };
        match self.kind {
            ScopeKind::Endpoint => at == f,
            ScopeKind::SubHierarchy => {
                at == f
                    || bridge(at).is_some_and(|b| (b.secondary..=b.subordinate).contains(&f.bus))
            }
            _ => false,
        }
    }
}

/// A PCI-PCI bridge's secondary and subordinate bus numbers (its configuration
/// registers 0x19 and 0x1a).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BridgeBuses {
    /// The bus right below it.
    pub secondary: u8,
    /// The highest bus below it.
    pub subordinate: u8,
}

/// One remapping hardware unit (DRHD).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unit {
    /// Host-physical base of its registers (4 KiB aligned, non-zero).
    pub register_base: u64,
    /// Its PCI segment.
    pub segment: u16,
    /// INCLUDE_PCI_ALL: it translates every function of the segment no other unit names.
    pub include_all: bool,
    scopes: [Option<Scope>; MAX_SCOPES],
}

impl Unit {
    /// Its device scopes.
    pub fn scopes(&self) -> impl Iterator<Item = &Scope> {
        self.scopes.iter().flatten()
    }
}

/// The units of a DMAR table, in table order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dmar {
    /// Host address width the platform supports, in bits (the field plus one).
    pub host_address_width: u8,
    /// The header's flags (bit 0: interrupt remapping; bit 2: DMA control opt-in).
    pub flags: u8,
    units: [Option<Unit>; MAX_UNITS],
}

impl Dmar {
    /// Parses a whole DMAR table (header included). Bytes after the header's length are
    /// ignored.
    pub fn parse(bytes: &[u8]) -> Result<Self, DmarError> {
        let table = checked_table(bytes, b"DMAR", HEADER_LEN).map_err(|e| match e {
            HeaderError::Truncated => DmarError::Truncated { len: bytes.len() },
            HeaderError::BadSignature => DmarError::BadSignature,
            HeaderError::BadChecksum => DmarError::BadChecksum,
        })?;
        let mut dmar = Self {
            host_address_width: table[36].saturating_add(1),
            flags: table[37],
            units: [None; MAX_UNITS],
        };
        let mut count = 0;
        for structure in structures(table, HEADER_LEN) {
            let (at, structure) = structure.map_err(|at| DmarError::BadStructure { at })?;
            if u16_at(structure, 0) == Some(TYPE_DRHD) {
                let slot = dmar.units.get_mut(count).ok_or(DmarError::TooMany)?;
                *slot = Some(parse_unit(structure, at)?);
                count += 1;
            }
        }
        if count == 0 {
            return Err(DmarError::NoUnit);
        }
        Ok(dmar)
    }

    /// Its units.
    pub fn units(&self) -> impl Iterator<Item = &Unit> {
        self.units.iter().flatten()
    }

    /// The index (in [`Dmar::units`] order) of the unit that translates function `f` of
    /// `segment`: the first whose scope covers it, else the first INCLUDE_PCI_ALL unit of
    /// the segment. `bridge` reads a bridge's bus numbers (for scopes behind bridges).
    pub fn unit_for(
        &self,
        segment: u16,
        f: PciAddress,
        bridge: impl Fn(PciAddress) -> Option<BridgeBuses> + Copy,
    ) -> Option<usize> {
        let in_segment = || {
            self.units()
                .enumerate()
                .filter(|(_, u)| u.segment == segment)
        };
        in_segment()
            .find(|(_, u)| u.scopes().any(|s| s.covers(f, bridge)))
            .or_else(|| in_segment().find(|(_, u)| u.include_all))
            .map(|(i, _)| i)
    }
}

/// One DRHD structure (`s`, at table offset `at`).
fn parse_unit(s: &[u8], at: usize) -> Result<Unit, DmarError> {
    let bad = DmarError::BadUnit { at };
    if s.len() < DRHD_LEN {
        return Err(bad);
    }
    let register_base = u64_at(s, 8).ok_or(bad)?;
    if register_base == 0 || register_base % 0x1000 != 0 {
        return Err(bad);
    }
    let mut unit = Unit {
        register_base,
        segment: u16_at(s, 6).ok_or(bad)?,
        include_all: s[4] & INCLUDE_PCI_ALL != 0,
        scopes: [None; MAX_SCOPES],
    };
    let mut off = DRHD_LEN;
    let mut count = 0;
    while off < s.len() {
        let bad = DmarError::BadScope { at: at + off };
        let length = usize::from(*s.get(off + 1).ok_or(bad)?);
        let scope = s.get(off..off + length).ok_or(bad)?;
        if length < SCOPE_LEN || (length - SCOPE_LEN) % 2 != 0 {
            return Err(bad);
        }
        let steps = &scope[SCOPE_LEN..];
        if steps.len() / 2 > MAX_PATH {
            return Err(DmarError::TooMany);
        }
        let mut path = [(0, 0); MAX_PATH];
        for (slot, step) in path.iter_mut().zip(steps.chunks_exact(2)) {
            *slot = (step[0], step[1]);
        }
        let slot = unit.scopes.get_mut(count).ok_or(DmarError::TooMany)?;
        *slot = Some(Scope {
            kind: ScopeKind::from_u8(scope[0]),
            start_bus: scope[5],
            path,
            path_len: steps.len() / 2,
        });
        count += 1;
        off += length;
    }
    Ok(unit)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::vec::Vec;

    fn at(b: u8, d: u8, f: u8) -> PciAddress {
        PciAddress::new(b, d, f).unwrap()
    }

    /// A DMAR table with `structures` after the header, its length and checksum right.
    pub(crate) fn table(structures: &[Vec<u8>]) -> Vec<u8> {
        // Host address width 39, flags 0.
        crate::acpi_walk::test_table(b"DMAR", 1, &[38, 0], HEADER_LEN, structures)
    }

    /// A DRHD with `flags`, `base` and `scopes`.
    pub(crate) fn drhd(flags: u8, segment: u16, base: u64, scopes: &[Vec<u8>]) -> Vec<u8> {
        let mut s = Vec::new();
        s.extend_from_slice(&TYPE_DRHD.to_le_bytes());
        s.extend_from_slice(&0u16.to_le_bytes());
        s.extend_from_slice(&[flags, 0]);
        s.extend_from_slice(&segment.to_le_bytes());
        s.extend_from_slice(&base.to_le_bytes());
        for sc in scopes {
            s.extend_from_slice(sc);
        }
        let len = s.len() as u16;
        s[2..4].copy_from_slice(&len.to_le_bytes());
        s
    }

    fn scope(kind: u8, start_bus: u8, path: &[(u8, u8)]) -> Vec<u8> {
        let mut s = vec![kind, (SCOPE_LEN + 2 * path.len()) as u8, 0, 0, 0, start_bus];
        for &(d, f) in path {
            s.extend_from_slice(&[d, f]);
        }
        s
    }

    /// An RMRR (type 1) structure: skipped.
    fn rmrr() -> Vec<u8> {
        let mut s = vec![1, 0, 24 + 8, 0, 0, 0, 0, 0];
        s.extend_from_slice(&0xe_0000u64.to_le_bytes());
        s.extend_from_slice(&0xf_ffffu64.to_le_bytes());
        s.extend_from_slice(&scope(1, 0, &[(0x1d, 0)]));
        s
    }

    #[test]
    fn qemu_style_table_with_one_include_all_unit() {
        let t = table(&[drhd(1, 0, 0xfed9_0000, &[scope(3, 0xf0, &[(0x1f, 0)])])]);
        let d = Dmar::parse(&t).unwrap();
        assert_eq!(d.host_address_width, 39);
        let units: Vec<_> = d.units().collect();
        assert_eq!(units.len(), 1);
        assert_eq!(
            (
                units[0].register_base,
                units[0].segment,
                units[0].include_all
            ),
            (0xfed9_0000, 0, true)
        );
        let s: Vec<_> = units[0].scopes().collect();
        assert_eq!(
            (s[0].kind, s[0].start_bus, s[0].path()),
            (ScopeKind::IoApic, 0xf0, &[(0x1f, 0)][..])
        );
        let no_bridges = |_| None;
        assert_eq!(d.unit_for(0, at(0, 3, 0), no_bridges), Some(0));
        assert_eq!(
            d.unit_for(1, at(0, 3, 0), no_bridges),
            None,
            "other segment"
        );
    }

    #[test]
    fn scopes_win_over_include_all_and_other_structures_are_skipped() {
        let t = table(&[
            rmrr(),
            drhd(
                0,
                0,
                0xfed9_1000,
                &[scope(1, 0, &[(2, 0)]), scope(2, 0, &[(0x1c, 0)])],
            ),
            vec![0x99, 0, 8, 0, 1, 2, 3, 4], // an unknown type
            drhd(1, 0, 0xfed9_0000, &[]),
        ]);
        let d = Dmar::parse(&t).unwrap();
        assert_eq!(d.units().count(), 2);
        // 00:1c.0 is a bridge to buses 3..=5.
        let bridge = |f: PciAddress| {
            (f == at(0, 0x1c, 0)).then_some(BridgeBuses {
                secondary: 3,
                subordinate: 5,
            })
        };
        assert_eq!(d.unit_for(0, at(0, 2, 0), bridge), Some(0), "endpoint");
        assert_eq!(
            d.unit_for(0, at(0, 2, 1), bridge),
            Some(1),
            "other function"
        );
        assert_eq!(
            d.unit_for(0, at(4, 0, 0), bridge),
            Some(0),
            "below the bridge"
        );
        assert_eq!(
            d.unit_for(0, at(0, 0x1c, 0), bridge),
            Some(0),
            "the bridge itself"
        );
        assert_eq!(
            d.unit_for(0, at(6, 0, 0), bridge),
            Some(1),
            "beyond its buses"
        );
    }

    #[test]
    fn paths_through_bridges_resolve_by_secondary_bus() {
        let s = Scope {
            kind: ScopeKind::Endpoint,
            start_bus: 0,
            path: {
                let mut p = [(0, 0); MAX_PATH];
                p[0] = (0x1c, 0);
                p[1] = (0, 1);
                p
            },
            path_len: 2,
        };
        let bridge = |f: PciAddress| {
            (f == at(0, 0x1c, 0)).then_some(BridgeBuses {
                secondary: 7,
                subordinate: 7,
            })
        };
        assert_eq!(s.resolve(bridge), Some(at(7, 0, 1)));
        assert!(s.covers(at(7, 0, 1), bridge));
        assert_eq!(s.resolve(|_| None), None, "no bridge there");
        assert!(!s.covers(at(7, 0, 1), |_| None));
    }

    #[test]
    fn hostile_tables_are_errors() {
        let good = table(&[drhd(1, 0, 0xfed9_0000, &[])]);
        // Every truncation of a valid table (length field unchanged) is refused.
        for n in 0..good.len() {
            assert!(Dmar::parse(&good[..n]).is_err(), "truncated to {n}");
        }
        let mut sig = good.clone();
        sig[0] = b'X';
        assert_eq!(Dmar::parse(&sig), Err(DmarError::BadSignature));
        let mut sum = good.clone();
        sum[40] ^= 1;
        assert_eq!(Dmar::parse(&sum), Err(DmarError::BadChecksum));
        // Header length smaller than the header.
        let mut short = good.clone();
        short[4..8].copy_from_slice(&10u32.to_le_bytes());
        assert!(matches!(
            Dmar::parse(&short),
            Err(DmarError::Truncated { .. })
        ));
        assert_eq!(Dmar::parse(&table(&[])), Err(DmarError::NoUnit));
        assert_eq!(
            Dmar::parse(&table(&[vec![0, 0, 2, 0]])),
            Err(DmarError::BadStructure { at: 48 }),
            "length below 4"
        );
        assert_eq!(
            Dmar::parse(&table(&[vec![0, 0, 200, 0]])),
            Err(DmarError::BadStructure { at: 48 }),
            "overruns the table"
        );
        assert_eq!(
            Dmar::parse(&table(&[drhd(1, 0, 0xfed9_0800, &[])])),
            Err(DmarError::BadUnit { at: 48 }),
            "unaligned registers"
        );
        assert_eq!(
            Dmar::parse(&table(&[drhd(1, 0, 0, &[])])),
            Err(DmarError::BadUnit { at: 48 })
        );
        let mut short_unit = drhd(1, 0, 0xfed9_0000, &[]);
        short_unit.truncate(12);
        short_unit[2] = 12;
        assert_eq!(
            Dmar::parse(&table(&[short_unit])),
            Err(DmarError::BadUnit { at: 48 })
        );
        let odd = vec![1, 7, 0, 0, 0, 0, 3];
        assert_eq!(
            Dmar::parse(&table(&[drhd(0, 0, 0x1000, &[odd])])),
            Err(DmarError::BadScope { at: 64 })
        );
        let overrun = vec![1, 40, 0, 0, 0, 0, 3, 0];
        assert_eq!(
            Dmar::parse(&table(&[drhd(0, 0, 0x1000, &[overrun])])),
            Err(DmarError::BadScope { at: 64 })
        );
        let zero_len = vec![1, 0, 0, 0, 0, 0];
        assert_eq!(
            Dmar::parse(&table(&[drhd(0, 0, 0x1000, &[zero_len])])),
            Err(DmarError::BadScope { at: 64 })
        );
        let long_path = scope(1, 0, &[(1, 0); MAX_PATH + 1]);
        assert_eq!(
            Dmar::parse(&table(&[drhd(0, 0, 0x1000, &[long_path])])),
            Err(DmarError::TooMany)
        );
        let many: Vec<_> = (0..=MAX_UNITS).map(|_| drhd(1, 0, 0x1000, &[])).collect();
        assert_eq!(Dmar::parse(&table(&many)), Err(DmarError::TooMany));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap fuzz: every byte of a valid table set to a few values, checksum fixed.
        let good = table(&[
            rmrr(),
            drhd(0, 0, 0xfed9_1000, &[scope(2, 0, &[(0x1c, 0), (0, 0)])]),
            drhd(1, 0, 0xfed9_0000, &[]),
        ]);
        for i in 0..good.len() {
            for v in [0u8, 1, 2, 5, 0x7f, 0xff] {
                let mut t = good.clone();
                t[i] = v;
                let sum = t.iter().fold(0u8, |s, &b| s.wrapping_add(b));
                t[9] = t[9].wrapping_sub(sum);
                if let Ok(d) = Dmar::parse(&t) {
                    for u in d.units() {
                        for s in u.scopes() {
                            let _ = s.covers(at(0, 3, 0), |_| {
                                Some(BridgeBuses {
                                    secondary: 1,
                                    subordinate: 0,
                                })
                            });
                        }
                    }
                }
            }
        }
    }
}
