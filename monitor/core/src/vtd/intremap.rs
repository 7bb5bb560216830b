//! VT-d interrupt remapping (Intel VT-d spec rev. 4.1: 5.1 "Interrupt Remapping", 6.5.2
//! "Queued Invalidation", 9.10 "Interrupt Remapping Table Entry", 11.4.9 and 11.4.10):
//! the registers, the interrupt remapping table entries (IRTEs) Quest writes, the
//! remappable-format messages that point at them (a device's MSI address, an I/O APIC
//! redirection entry), and the invalidation-queue descriptors that make the unit drop
//! its cached entries. Pure values; the monitor does the accesses.
//!
//! Quest's use: xAPIC mode (IRTA.EIME = 0, 8-bit physical destinations), one table of
//! [`IRT_ENTRIES`] shared by every unit, compatibility-format interrupts blocked (GCMD.CFI
//! never set: a device's own write of a compatibility-format message to 0xFEExxxxx is a
//! remapping fault, reason 25h), and every IRTE verifies its requester (SVT = 01b, SQ =
//! 00b: the source ID must equal the one function, or the I/O APIC, it was written for;
//! reason 26h otherwise). A remappable message carries only a handle (SHV = 0, data 0):
//! vector, destination and delivery mode come from the IRTE, which only the monitor
//! writes.

/// Invalidation queue head (64 bits, read only: bits 18:4 the next descriptor the unit
/// fetches).
pub const IQH: u64 = 0x80;
/// Invalidation queue tail (64 bits: bits 18:4 the descriptor software writes next).
pub const IQT: u64 = 0x88;
/// Invalidation queue address (64 bits: base, DW bit 11, QS bits 2:0).
pub const IQA: u64 = 0x90;
/// Invalidation completion status (32 bits: bit 0 IWC, write 1 to clear).
pub const ICS: u64 = 0x9c;
/// Interrupt remapping table address (64 bits: base, EIME bit 11, S bits 3:0).
pub const IRTA: u64 = 0xb8;

/// GCMD/GSTS: queued invalidation enable / status.
pub const GCMD_QIE: u32 = 1 << 26;
/// GCMD/GSTS: interrupt remapping enable / status.
pub const GCMD_IRE: u32 = 1 << 25;
/// GCMD: set interrupt remap table pointer; GSTS: its status.
pub const GCMD_SIRTP: u32 = 1 << 24;
/// GCMD/GSTS: compatibility format interrupts allowed. Quest never sets it.
pub const GCMD_CFI: u32 = 1 << 23;

/// ECAP bit 1: queued invalidation.
const ECAP_QI: u64 = 1 << 1;
/// ECAP bit 3: interrupt remapping.
const ECAP_IR: u64 = 1 << 3;

/// Whether a unit with extended capability `ecap` can remap interrupts the way Quest
/// does: IR, and QI (the interrupt entry cache is invalidated through the queue only).
pub fn supported(ecap: u64) -> bool {
    ecap & (ECAP_IR | ECAP_QI) == ECAP_IR | ECAP_QI
}

/// Entries of the interrupt remapping table: one 4 KiB page of 16-byte entries.
pub const IRT_ENTRIES: usize = 256;
/// The first IRTE of I/O APIC lines (one per routed line, `ioapic::MAX_ROUTES` of them).
pub const FIRST_LINE: u16 = 0;
/// The first IRTE of device MSIs (one per protected function).
pub const FIRST_MSI: u16 = 32;

/// The IRTA value for the table at `table` (4 KiB aligned): S = 7 (2^(S+1) =
/// [`IRT_ENTRIES`] entries), EIME = 0 (xAPIC mode).
pub fn irta(table: u64) -> u64 {
    (table & !0xfff) | 7
}

/// The IQA value for the queue at `queue` (4 KiB aligned): QS = 0 (one page), DW = 0
/// (128-bit descriptors: 256 of them).
pub fn iqa(queue: u64) -> u64 {
    queue & !0xfff
}

/// Descriptors in the queue ([`iqa`]).
pub const QUEUE_ENTRIES: u64 = 256;

/// The IQT value after `n` descriptors were written in all (the queue wraps).
pub fn iqt(n: u64) -> u64 {
    (n % QUEUE_ENTRIES) << 4
}

/// IRTE bit 0: present.
const IRTE_PRESENT: u64 = 1 << 0;
/// IRTE bit 4: trigger mode level.
const IRTE_LEVEL: u64 = 1 << 4;
/// IRTE high bits 19:18 (83:82): SVT = 01b, verify the source ID with SID and SQ.
const IRTE_SVT_SID: u64 = 1 << 18;

/// One interrupt as the monitor remaps it: a fixed, physical-destination interrupt to
/// one core, accepted only from one requester.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Irte {
    /// The vector (16 and up).
    pub vector: u8,
    /// The physical APIC ID of the destination core (xAPIC mode: 8 bits).
    pub apic_id: u8,
    /// Level triggered (an I/O APIC's level line), else edge.
    pub level: bool,
    /// The requester ID (bus << 8 | device << 3 | function) the unit accepts it from.
    pub source: u16,
}

impl Irte {
    /// The entry's two quadwords (low, high): present, physical destination mode, no
    /// redirection hint, fixed delivery (000b), remapped (IM = 0), the destination in
    /// bits 47:40 (xAPIC mode), SVT = 01b, SQ = 00b (all 16 bits of SID compared).
    pub fn encode(&self) -> [u64; 2] {
        let level = if self.level { IRTE_LEVEL } else { 0 };
        let low =
            IRTE_PRESENT | level | u64::from(self.vector) << 16 | u64::from(self.apic_id) << 40;
        let high = IRTE_SVT_SID | u64::from(self.source);
        [low, high]
    }
}

/// The remappable-format MSI (address, data) naming IRTE `index` (5.1.5.2): 0xFEE in
/// bits 31:20, the handle's bits 14:0 in 19:5, interrupt format (bit 4) = 1, SHV (bit
/// 3) = 0, the handle's bit 15 in bit 2; data 0 (ignored with SHV = 0, so every message
/// of a multiple-message function uses this one entry).
pub fn remappable_msi(index: u16) -> (u32, u32) {
    let handle = u32::from(index);
    let address = 0xfee0_0000 | (handle & 0x7fff) << 5 | 1 << 4 | (handle >> 15) << 2;
    (address, 0)
}

/// The remappable-format I/O APIC redirection entry naming IRTE `index` (5.1.5.1): the
/// handle's bits 14:0 in 63:49, format (bit 48) = 1, bit 15 trigger, bit 13 polarity,
/// the handle's bit 15 in bit 11, delivery mode 000b, the vector in 7:0 (the same as the
/// IRTE's, so that the EOI of a level line reaches this entry), unmasked.
pub fn remappable_rte(index: u16, vector: u8, level: bool, active_low: bool) -> u64 {
    let handle = u64::from(index);
    (handle & 0x7fff) << 49
        | 1 << 48
        | u64::from(level) << 15
        | u64::from(active_low) << 13
        | (handle >> 15) << 11
        | u64::from(vector)
}

/// Descriptor type 4: interrupt entry cache invalidation.
const DESC_IEC: u64 = 0x4;
/// Descriptor type 5: invalidation wait.
const DESC_WAIT: u64 = 0x5;
/// IEC descriptor bit 4: index-selective (else global).
const IEC_INDEX: u64 = 1 << 4;
/// Wait descriptor bit 5: status write (SW).
const WAIT_STATUS_WRITE: u64 = 1 << 5;
/// Wait descriptor bit 6: fence (FN): later descriptors wait for this one's.
const WAIT_FENCE: u64 = 1 << 6;

/// A descriptor that invalidates every cached IRTE (6.5.2.7, G = 0).
pub fn iec_global() -> [u64; 2] {
    [DESC_IEC, 0]
}

/// A descriptor that invalidates the cached IRTE `index` (6.5.2.7, G = 1, IM = 0: one
/// entry, IIDX in bits 47:32).
pub fn iec_entry(index: u16) -> [u64; 2] {
    [DESC_IEC | IEC_INDEX | u64::from(index) << 32, 0]
}

/// A descriptor that, once every earlier one completed, writes `data` to the dword at
/// `status` (6.5.2.8: SW = 1, FN = 1, the status data in bits 63:32, the address, 4-byte
/// aligned, in the upper quadword).
pub fn wait(status: u64, data: u32) -> [u64; 2] {
    [
        DESC_WAIT | WAIT_STATUS_WRITE | WAIT_FENCE | u64::from(data) << 32,
        status & !3,
    ]
}

/// Whether fault reason `reason` is an interrupt-remapping fault (20h-27h, appendix A).
pub fn is_interrupt_fault(reason: u8) -> bool {
    (0x20..=0x27).contains(&reason)
}

/// An interrupt-remapping fault reason in a few words (appendix A).
pub fn reason_name(reason: u8) -> &'static str {
    match reason {
        0x20 => "reserved bit in a remappable request",
        0x21 => "index beyond the table",
        0x22 => "entry not present",
        0x23 => "table unreadable",
        0x24 => "reserved bit in the entry",
        0x25 => "compatibility format blocked",
        0x26 => "source ID not the entry's",
        0x27 => "posted format blocked",
        _ => "other reason",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn support_needs_both_remapping_and_the_queue() {
        // QEMU 7.2's intel-iommu with intremap=on: QI, DT, IR, EIM=0 (TCG), PT, ... .
        assert!(supported(0xf0_020e));
        assert!(!supported(1 << 3), "no queued invalidation");
        assert!(!supported(1 << 1), "no interrupt remapping");
    }

    #[test]
    fn table_and_queue_addresses() {
        assert_eq!(irta(0x12_3000), 0x12_3007);
        assert_eq!(1 << ((irta(0) & 0xf) + 1), IRT_ENTRIES);
        assert_eq!(irta(0x12_3abc) & 1 << 11, 0, "xAPIC mode, EIME clear");
        assert_eq!(iqa(0x45_6000), 0x45_6000, "QS 0, DW 0");
        assert_eq!(iqt(0), 0);
        assert_eq!(iqt(2), 0x20);
        assert_eq!(iqt(QUEUE_ENTRIES + 1), 0x10, "wraps");
        assert!(usize::from(FIRST_MSI) >= crate::ioapic::MAX_ROUTES);
        assert!(usize::from(FIRST_MSI) + 64 <= IRT_ENTRIES);
    }

    #[test]
    fn an_irte_is_fixed_physical_and_verifies_its_source() {
        let edu = quest_abi::PciAddress::new(0, 3, 0).unwrap().to_u16();
        let [low, high] = Irte {
            vector: 0x41,
            apic_id: 2,
            level: false,
            source: edu,
        }
        .encode();
        assert_eq!(low, 0x0000_0200_0041_0001);
        assert_eq!(low & 1 << 2, 0, "physical destination");
        assert_eq!((low >> 5) & 7, 0, "fixed delivery");
        assert_eq!(low & 1 << 15, 0, "remapped, not posted");
        assert_eq!(high, 0x4_0018, "SVT 01, SQ 00, SID 00:03.0");
        let [level, ioapic] = Irte {
            vector: 0x2b,
            apic_id: 0xff,
            level: true,
            source: 0xff00,
        }
        .encode();
        assert_eq!(level, 0x0000_ff00_002b_0011);
        assert_eq!(ioapic, 0x4_ff00);
    }

    #[test]
    fn remappable_messages_carry_only_the_handle() {
        assert_eq!(remappable_msi(0), (0xfee0_0010, 0));
        assert_eq!(remappable_msi(33), (0xfee0_0430, 0));
        let (top, _) = remappable_msi(0xffff);
        assert_eq!(top, 0xfeef_fff4, "bits 14:0 in 19:5, bit 15 in 2");
        assert_eq!(top & 1 << 3, 0, "no subhandle");
        let rte = remappable_rte(3, 0x2b, true, false);
        assert_eq!(rte, 3 << 49 | 1 << 48 | 1 << 15 | 0x2b);
        assert_eq!(rte & 1 << 16, 0, "unmasked");
        assert_eq!(
            remappable_rte(0x8001, 0x23, false, true),
            1 << 49 | 1 << 48 | 1 << 13 | 1 << 11 | 0x23
        );
    }

    #[test]
    fn descriptors() {
        assert_eq!(iec_global(), [0x4, 0]);
        assert_eq!(iec_entry(0x21), [0x21_0000_0014, 0]);
        assert_eq!(wait(0x9_0004, 7), [0x7_0000_0065, 0x9_0004]);
        assert_eq!(wait(0x9_0007, 1)[1], 0x9_0004, "4-byte aligned");
    }

    #[test]
    fn fault_reasons() {
        assert!(is_interrupt_fault(0x25) && is_interrupt_fault(0x20));
        assert!(!is_interrupt_fault(0x5) && !is_interrupt_fault(0x28));
        assert_eq!(reason_name(0x25), "compatibility format blocked");
        assert_eq!(reason_name(0x26), "source ID not the entry's");
        assert_eq!(reason_name(0x1), "other reason");
    }
}
