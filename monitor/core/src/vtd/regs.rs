//! A VT-d unit's registers (Intel VT-d spec rev. 4.1, chapter 11): offsets, the bits
//! Quest uses, the capability fields it decides by, command values, and the decoding of
//! a primary fault record. Pure values; the monitor does the accesses.

use quest_abi::PciAddress;

/// Version (32 bits).
pub const VER: u64 = 0x00;
/// Capability (64 bits).
pub const CAP: u64 = 0x08;
/// Extended capability (64 bits).
pub const ECAP: u64 = 0x10;
/// Global command (32 bits, write only).
pub const GCMD: u64 = 0x18;
/// Global status (32 bits).
pub const GSTS: u64 = 0x1c;
/// Root table address (64 bits).
pub const RTADDR: u64 = 0x20;
/// Context command (64 bits).
pub const CCMD: u64 = 0x28;
/// Fault status (32 bits).
pub const FSTS: u64 = 0x34;
/// Fault event control (32 bits).
pub const FECTL: u64 = 0x38;
/// Fault event data (32 bits).
pub const FEDATA: u64 = 0x3c;
/// Fault event address (32 bits).
pub const FEADDR: u64 = 0x40;
/// Fault event upper address (32 bits).
pub const FEUADDR: u64 = 0x44;

/// GCMD/GSTS: translation enable / status.
pub const GCMD_TE: u32 = 1 << 31;
/// GCMD: set root table pointer; GSTS: root table pointer status.
pub const GCMD_SRTP: u32 = 1 << 30;
/// GCMD: write buffer flush; GSTS: its status (set while the flush runs).
pub const GCMD_WBF: u32 = 1 << 27;
/// GSTS bits that are persistent states a GCMD write must repeat (11.4.4: software
/// reads GSTS, keeps these, and sets the one command it means; the other bits are
/// one-shot commands, written as 0). TE, EAFL, QIE, IRE.
pub const GSTS_PERSISTENT: u32 = 0x96ff_ffff;

/// CCMD bit 63: invalidate context cache (clear when done).
pub const CCMD_ICC: u64 = 1 << 63;
/// CCMD bits 62:61 = 01: global invalidation.
pub const CCMD_GLOBAL: u64 = 1 << 61;

/// IOTLB register bit 63: invalidate IOTLB (clear when done).
pub const IOTLB_IVT: u64 = 1 << 63;
/// IOTLB register bits 61:60 = 01: global invalidation.
pub const IOTLB_GLOBAL: u64 = 1 << 60;
/// IOTLB register bit 49: drain reads first.
pub const IOTLB_DR: u64 = 1 << 49;
/// IOTLB register bit 48: drain writes first.
pub const IOTLB_DW: u64 = 1 << 48;

/// FSTS bit 0: primary fault overflow (write 1 to clear).
pub const FSTS_PFO: u32 = 1 << 0;
/// FSTS bit 1: primary pending fault (read only: set while a record holds a fault).
pub const FSTS_PPF: u32 = 1 << 1;
/// FSTS bits 15:8: fault record index (the first record to look at).
pub const FSTS_FRI_SHIFT: u32 = 8;
/// The FSTS bits software clears by writing 1: PFO, AFO, APF, IQE, ICE, ITE.
pub const FSTS_CLEAR: u32 = 0x7d;
/// FECTL bit 31: interrupt mask.
pub const FECTL_IM: u32 = 1 << 31;
/// Bit 63 of a fault record's upper quadword: F, the record holds a fault (write 1 to
/// clear).
pub const FAULT_F: u64 = 1 << 63;
/// Bit 62 of a fault record's upper quadword: T, 1 = read request, 0 = write.
const FAULT_READ: u64 = 1 << 62;

/// Capability register fields (11.4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability(pub u64);

impl Capability {
    /// Supported adjusted guest address widths, bit 1 = 39-bit 3-level, bit 2 = 48-bit
    /// 4-level, bit 3 = 57-bit 5-level.
    pub fn sagaw(self) -> u8 {
        ((self.0 >> 8) & 0x1f) as u8
    }
    /// Number of domain IDs the unit supports (2^(4 + 2 * ND)).
    pub fn domains(self) -> u32 {
        1 << (4 + 2 * (self.0 & 7).min(6))
    }
    /// Required write-buffer flushing.
    pub fn rwbf(self) -> bool {
        self.0 & (1 << 4) != 0
    }
    /// Caching mode: the unit may cache not-present entries (then a new context entry
    /// needs an invalidation too, which Quest does anyway).
    pub fn caching_mode(self) -> bool {
        self.0 & (1 << 7) != 0
    }
    /// Offset of the first fault recording register (bits 33:24, in 16-byte units).
    pub fn fault_record_offset(self) -> u64 {
        ((self.0 >> 24) & 0x3ff) * 16
    }
    /// Number of fault recording registers (bits 47:40, plus one).
    pub fn fault_records(self) -> u32 {
        ((self.0 >> 40) & 0xff) as u32 + 1
    }
    /// Second-level 2 MiB pages (SLLPS bit 0, capability bit 34).
    pub fn large_pages(self) -> bool {
        self.0 & (1 << 34) != 0
    }
    /// Maximum guest address width, bits (field plus one).
    pub fn mgaw(self) -> u8 {
        ((self.0 >> 16) & 0x3f) as u8 + 1
    }
    /// Write draining (DWD) and read draining (DRD), for IOTLB invalidations.
    pub fn drains(self) -> u64 {
        let mut d = 0;
        if self.0 & (1 << 54) != 0 {
            d |= IOTLB_DW;
        }
        if self.0 & (1 << 55) != 0 {
            d |= IOTLB_DR;
        }
        d
    }
}

/// Extended capability register fields (11.4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtCapability(pub u64);

impl ExtCapability {
    /// Page walks snoop the processor caches (C). Without it, every table write must be
    /// flushed from the cache before the unit may read it.
    pub fn coherent(self) -> bool {
        self.0 & 1 != 0
    }
    /// Offset of the IOTLB registers (IRO, bits 17:8, in 16-byte units): the IOTLB
    /// invalidate register is at `iotlb_offset() + 8`.
    pub fn iotlb_offset(self) -> u64 {
        ((self.0 >> 8) & 0x3ff) * 16
    }
}

/// How many levels the second-level tables of every domain have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Levels {
    /// 3 levels: 39-bit guest addresses (context entry AW = 1).
    Three,
    /// 4 levels: 48-bit guest addresses (AW = 2).
    Four,
}

impl Levels {
    /// The context entry's address-width field.
    pub fn aw(self) -> u64 {
        match self {
            Self::Three => 1,
            Self::Four => 2,
        }
    }
    /// Guest addresses below this can be translated.
    pub fn limit(self) -> u64 {
        match self {
            Self::Three => 1 << 39,
            Self::Four => 1 << 48,
        }
    }
    /// The width in bits.
    pub fn bits(self) -> u8 {
        match self {
            Self::Three => 39,
            Self::Four => 48,
        }
    }
}

/// The levels to use with a unit of capability `cap` for domains whose addresses all lie
/// below `top`: 3 when the unit supports them and they suffice (fewer walks per IOTLB
/// miss), else 4; `None` when the unit supports neither that suffices.
pub fn choose_levels(cap: Capability, top: u64) -> Option<Levels> {
    let sagaw = cap.sagaw();
    [Levels::Three, Levels::Four]
        .into_iter()
        .find(|&l| sagaw & (1 << l.aw()) != 0 && top <= l.limit())
}

/// The GCMD value that sets command `bit` on a unit whose status reads `gsts`.
pub fn gcmd(gsts: u32, bit: u32) -> u32 {
    (gsts & GSTS_PERSISTENT) | bit
}

/// The fault-event interrupt (FEDATA, FEADDR): an NMI to the local APIC with ID
/// `apic_id`, physical destination, edge (VT-d 5.1.6 and SDM Vol. 3, 11.11: delivery mode
/// 100b = NMI, whose vector is ignored). `None` when the ID does not fit the 8-bit
/// destination of a compatibility-format message (interrupt remapping would be needed).
pub fn fault_event_nmi(apic_id: u32) -> Option<(u32, u32)> {
    let id = u8::try_from(apic_id).ok()?;
    let data = 0b100 << 8;
    let address = 0xfee0_0000 | u32::from(id) << 12;
    Some((data, address))
}

/// A primary fault record (11.4.14).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultRecord {
    /// The requester (its source ID).
    pub source: PciAddress,
    /// The page of the address it used (bits 63:12 of the faulting address).
    pub address: u64,
    /// Whether it was a write (else a read).
    pub write: bool,
    /// The fault reason.
    pub reason: u8,
}

impl FaultRecord {
    /// The record in the two quadwords `low` and `high`; `None` when its F bit is clear.
    pub fn decode(low: u64, high: u64) -> Option<Self> {
        if high & FAULT_F == 0 {
            return None;
        }
        Some(Self {
            source: PciAddress::from_u16(high as u16),
            address: low & !0xfff,
            write: high & FAULT_READ == 0,
            reason: (high >> 32) as u8,
        })
    }

    /// The fault reason in a few words (VT-d spec, appendix A; legacy-mode reasons).
    pub fn reason_name(&self) -> &'static str {
        match self.reason {
            0x1 => "root entry not present",
            0x2 => "no context entry",
            0x3 => "invalid context entry",
            0x4 => "address beyond the address width",
            0x5 => "write not allowed",
            0x6 => "read not allowed",
            0x7 => "page table unreadable",
            0x8 => "root table unreadable",
            0x9 => "context table unreadable",
            0xa => "reserved bit in a root entry",
            0xb => "reserved bit in a context entry",
            0xc => "reserved bit in a page table entry",
            0xd => "translation type blocked",
            _ => "other reason",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU 7.2's intel-iommu capability with its default 39-bit width: ND = 2, SAGAW =
    /// 39-bit only, MGAW 39, FRO = 0x22 (records at 0x220), one record, SLLPS 2M+1G, PSI,
    /// MAMV 18.
    const QEMU_CAP: u64 = 2 | 0b10 << 8 | 38 << 16 | 0x22 << 24 | 0b11 << 34 | 1 << 39 | 18 << 48;

    #[test]
    fn qemu_capability_decodes() {
        let cap = Capability(QEMU_CAP);
        assert_eq!(cap.sagaw(), 0b10);
        assert_eq!(cap.domains(), 256);
        assert_eq!(cap.fault_record_offset(), 0x220);
        assert_eq!(cap.fault_records(), 1);
        assert_eq!(cap.mgaw(), 39);
        assert!(cap.large_pages());
        assert!(!cap.rwbf() && !cap.caching_mode());
        assert_eq!(choose_levels(cap, 0x41_0000_0000), Some(Levels::Three));
        assert_eq!(choose_levels(cap, 1 << 40), None, "needs 4 levels");
        let both = Capability(QEMU_CAP | 0b100 << 8);
        assert_eq!(choose_levels(both, 1 << 40), Some(Levels::Four));
        assert_eq!(choose_levels(Capability(0), 0), None);
        assert_eq!(ExtCapability(0xf0a).iotlb_offset(), 0xf0);
        assert!(!ExtCapability(0xf0a).coherent());
    }

    #[test]
    fn commands_keep_persistent_state_and_drop_one_shots() {
        let enabled = GCMD_TE | GCMD_SRTP; // TE on, root pointer status set
        assert_eq!(gcmd(enabled, GCMD_WBF), GCMD_TE | GCMD_WBF);
        assert_eq!(gcmd(0, GCMD_TE), GCMD_TE);
        assert_eq!(gcmd(GCMD_SRTP, GCMD_SRTP), GCMD_SRTP);
    }

    #[test]
    fn fault_event_is_an_nmi_to_one_apic() {
        assert_eq!(fault_event_nmi(1), Some((0x400, 0xfee0_1000)));
        assert_eq!(fault_event_nmi(255), Some((0x400, 0xfeef_f000)));
        assert_eq!(fault_event_nmi(256), None, "needs remapping");
    }

    #[test]
    fn fault_records_decode() {
        // QEMU's layout: low = page, high = F | T(read) | reason << 32 | source ID.
        let sid = PciAddress::new(0, 3, 0).unwrap().to_u16();
        let write = FaultRecord::decode(0x40_0123, FAULT_F | 5 << 32 | u64::from(sid)).unwrap();
        assert_eq!(
            write,
            FaultRecord {
                source: PciAddress::new(0, 3, 0).unwrap(),
                address: 0x40_0000,
                write: true,
                reason: 5
            }
        );
        assert_eq!(write.reason_name(), "write not allowed");
        let read = FaultRecord::decode(0x1000, FAULT_F | FAULT_READ | 6 << 32 | 0xffff).unwrap();
        assert!(!read.write);
        assert_eq!(read.source.to_string(), "ff:1f.7");
        assert_eq!(read.reason_name(), "read not allowed");
        assert_eq!(FaultRecord::decode(0x1000, 5 << 32), None, "F clear");
        let odd = FaultRecord::decode(u64::MAX, u64::MAX).unwrap();
        assert_eq!((odd.address, odd.reason_name()), (!0xfff, "other reason"));
    }
}
