//! AMD-Vi interrupt remapping (AMD IOMMU spec 48882, 2.2.5 "Interrupt Remapping
//! Tables", 2.2.2 the device table entry's interrupt fields, 2.4.5
//! INVALIDATE_INTERRUPT_TABLE): the entries Quest writes, the device table entry word
//! that points at a table, and the messages that name an entry. Pure values; the monitor
//! does the accesses.
//!
//! AMD-Vi remaps per device ID: each has its own table, and a fixed or arbitrated
//! interrupt it sends (an MSI, or the I/O APIC's message for a line) selects the entry
//! by the message data's bits 10:0; vector, destination and delivery come from the
//! entry, which only the monitor writes. Quest's use: 32-bit entries (no guest virtual
//! APIC: the control register's GAEn stays clear), physical destination, fixed delivery,
//! and every table [`IRT_ENTRIES`] long, the most the DTE can say, so that any index a
//! message names is an entry of the table (QEMU 7.2's `amdvi_get_irte` reads entry
//! `data & 0x7ff` without comparing it with IntTabLen). An entry the monitor did not
//! write is zero: RemapEn = 0, the interrupt is refused (target abort).

/// Entries of a table: 2^11, the most IntTabLen allows (every index data bits 10:0 can
/// name).
pub const IRT_ENTRIES: usize = 2048;
/// Bytes of a 32-bit entry.
pub const IRTE_SIZE: u64 = 4;
/// 4 KiB pages of a table.
pub const IRT_PAGES: usize = (IRT_ENTRIES as u64 * IRTE_SIZE / 4096) as usize;
/// The DTE's IntTabLen for [`IRT_ENTRIES`] (log2).
const INT_TAB_LEN: u64 = 11;
/// Entries a protected function's MSI uses (0 to 31: a function may send up to 32
/// messages, each naming entry `data | message number`; all get the same interrupt, as
/// VT-d's one handle does).
pub const MSI_ENTRIES: u16 = 32;

/// DTE word 2 bit 0 (bit 128): IV, the interrupt fields are valid.
const DTE_IV: u64 = 1 << 0;
/// DTE word 2 bits 4:1: IntTabLen.
const DTE_INT_TAB_LEN_SHIFT: u32 = 1;
/// DTE word 2 bits 51:6: IntTableRootPtr (the table is 128-byte aligned).
const DTE_INT_TABLE_MASK: u64 = 0x000f_ffff_ffff_ffc0;
/// DTE word 2 bits 61:60: IntCtl; 10b: fixed and arbitrated interrupts are remapped
/// through the table (00b aborts them, 01b passes them unchanged).
const DTE_INT_CTL_REMAP: u64 = 2 << 60;

/// The third word of the device table entry of a device whose interrupts go through the
/// table at `table` (4 KiB aligned, [`IRT_PAGES`] pages): IV = 1, IntTabLen = 11,
/// IntCtl = 10b, and no pass bit (InitPass, EIntPass, NMIPass, Lint0Pass and Lint1Pass
/// clear: INIT, ExtINT, NMI and LINT messages are refused).
pub fn dte_interrupts(table: u64) -> u64 {
    DTE_IV | INT_TAB_LEN << DTE_INT_TAB_LEN_SHIFT | (table & DTE_INT_TABLE_MASK) | DTE_INT_CTL_REMAP
}

/// IRTE bit 0: RemapEn.
const IRTE_REMAP_EN: u32 = 1 << 0;

/// One interrupt as the monitor remaps it: fixed delivery, physical destination, one
/// core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Irte {
    /// The vector (16 and up).
    pub vector: u8,
    /// The physical APIC ID of the destination core (xAPIC: 8 bits).
    pub apic_id: u8,
}

impl Irte {
    /// The 32-bit entry: RemapEn = 1, SupIOPF = 0 (a refused interrupt is logged),
    /// IntType = 000b (fixed), RqEoi = 0, DM = 0 (physical), GuestMode = 0, the
    /// destination in bits 15:8 and the vector in 23:16.
    pub fn encode(&self) -> u32 {
        IRTE_REMAP_EN | u32::from(self.apic_id) << 8 | u32::from(self.vector) << 16
    }
}

/// The MSI (address, data) that names entry `index` (below 256, so that data bits 10:8,
/// the delivery mode the unit reads first, say fixed): address 0xFEE00000 (its
/// destination field is not used: the entry's is), data = the index.
pub fn msi(index: u8) -> (u32, u32) {
    (0xfee0_0000, u32::from(index))
}

/// Command opcode 5: INVALIDATE_INTERRUPT_TABLE of device ID `id` (the unit drops what
/// it cached of that device's table).
pub fn invalidate_interrupt_table(id: u16) -> [u64; 2] {
    [u64::from(id) | 5 << 60, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_covers_every_index_a_message_can_name() {
        assert_eq!(IRT_ENTRIES, 0x7ff + 1);
        assert_eq!(IRT_PAGES, 2);
        assert_eq!(1 << INT_TAB_LEN, IRT_ENTRIES);
    }

    #[test]
    fn device_table_word_points_at_the_table_and_remaps() {
        let w = dte_interrupts(0x1234_5000);
        assert_eq!(w & 1, 1, "IV");
        assert_eq!((w >> 1) & 0xf, 11, "IntTabLen: 2048 entries");
        assert_eq!(w & DTE_INT_TABLE_MASK, 0x1234_5000);
        assert_eq!((w >> 60) & 3, 2, "IntCtl = 10b: remapped");
        // InitPass (56), EIntPass (57), NMIPass (58), Lint0Pass (62), Lint1Pass (63).
        for bit in [56, 57, 58, 62, 63] {
            assert_eq!(w & 1 << bit, 0, "pass bit {bit}");
        }
        assert_eq!(w, 0x2000_0000_1234_5017);
        // As QEMU 7.2 reads it: IntCtl at 60, the root at bits 50:6.
        assert_eq!(w & (((1 << 45) - 1) << 6), 0x1234_5000);
    }

    #[test]
    fn entries_are_fixed_physical_and_enabled() {
        let e = Irte {
            vector: 0x2b,
            apic_id: 3,
        }
        .encode();
        assert_eq!(e, 0x002b_0301);
        assert_eq!(e & 0b10, 0, "SupIOPF clear");
        assert_eq!((e >> 2) & 7, 0, "IntType fixed");
        assert_eq!((e >> 6) & 3, 0, "physical, not guest mode");
        assert_eq!(e >> 24, 0, "reserved");
    }

    #[test]
    fn messages_name_their_entry_with_fixed_delivery() {
        assert_eq!(msi(0), (0xfee0_0000, 0));
        let (_, data) = msi(0xff);
        assert_eq!(data & 0x7ff, 0xff);
        assert_eq!((data >> 8) & 7, 0, "fixed");
    }

    #[test]
    fn the_invalidation_has_only_the_opcode_and_the_device() {
        // QEMU 7.2 refuses bits 59:16 and the second word set.
        assert_eq!(invalidate_interrupt_table(0xa0), [0x5000_0000_0000_00a0, 0]);
    }
}
