//! An AMD IOMMU's registers, commands and event-log entries (AMD IOMMU spec 48882,
//! chapters 2.4, 3.3-3.4): MMIO offsets, the control and status bits Quest uses, the
//! extended feature fields it decides by, command encodings, device table entries, and
//! the decoding of an event. Pure values; the monitor does the accesses.

use quest_abi::PciAddress;

/// Bytes of the MMIO register window.
pub const MMIO_SIZE: u64 = 0x4000;
/// Device table base (64 bits): address 51:12, size 8:0 (4 KiB pages minus one).
pub const DEVICE_TABLE_BASE: u64 = 0x0000;
/// Command buffer base (64 bits): address 51:12, length 59:56 (log2 of entries).
pub const COMMAND_BASE: u64 = 0x0008;
/// Event log base (64 bits): as the command buffer's.
pub const EVENT_LOG_BASE: u64 = 0x0010;
/// Control (64 bits).
pub const CONTROL: u64 = 0x0018;
/// Extended features (64 bits, read only).
pub const EXTENDED_FEATURES: u64 = 0x0030;
/// Command buffer head (byte offset, the unit moves it).
pub const COMMAND_HEAD: u64 = 0x2000;
/// Command buffer tail (byte offset, software moves it).
pub const COMMAND_TAIL: u64 = 0x2008;
/// Event log head (byte offset, software moves it).
pub const EVENT_HEAD: u64 = 0x2010;
/// Event log tail (byte offset, the unit moves it).
pub const EVENT_TAIL: u64 = 0x2018;
/// Status (64 bits).
pub const STATUS: u64 = 0x2020;

/// Control bit 0: the unit translates.
pub const CONTROL_IOMMU_EN: u64 = 1 << 0;
/// Control bit 2: the unit writes its event log.
pub const CONTROL_EVENT_LOG_EN: u64 = 1 << 2;
/// Control bit 3: a new event raises the unit's interrupt.
pub const CONTROL_EVENT_INT_EN: u64 = 1 << 3;
/// Control bit 12: the unit reads its command buffer.
pub const CONTROL_COMMAND_EN: u64 = 1 << 12;

/// Status bit 0: the event log overflowed (write 1 to clear).
pub const STATUS_EVENT_OVERFLOW: u64 = 1 << 0;
/// Status bit 1: an event was logged (write 1 to clear).
pub const STATUS_EVENT_INT: u64 = 1 << 1;
/// Status bit 2: a COMPLETION_WAIT asked for an interrupt (write 1 to clear).
pub const STATUS_COMPLETION_INT: u64 = 1 << 2;

/// Bytes of a device table entry.
pub const DTE_SIZE: u64 = 32;
/// Device table entries per 4 KiB page.
pub const DTES_PER_PAGE: u32 = 128;
/// Bytes of a command or an event-log entry.
pub const ENTRY_SIZE: u64 = 16;
/// Entries of the command buffer and the event log Quest gives a unit (4 KiB each, the
/// smallest the spec allows).
pub const RING_ENTRIES: u64 = 256;
/// Head and tail offsets are within the ring and 16-byte aligned.
pub const RING_MASK: u64 = (RING_ENTRIES * ENTRY_SIZE - 1) & !(ENTRY_SIZE - 1);

/// The device table base register for a table at `addr` of `pages` 4 KiB pages (1 to
/// 512: 128 entries each).
pub fn device_table_base(addr: u64, pages: u32) -> u64 {
    (addr & ADDR_MASK) | u64::from(pages.clamp(1, 512) - 1)
}

/// The command buffer or event log base register for a ring of [`RING_ENTRIES`] at
/// `addr` (length field: log2 of the entries).
pub fn ring_base(addr: u64) -> u64 {
    (addr & ADDR_MASK) | u64::from(RING_ENTRIES.trailing_zeros()) << 56
}

/// Address bits 51:12 of table pointers and page table entries.
pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Extended feature register fields (3.4.5 of the spec's MMIO chapter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features(pub u64);

impl Features {
    /// The most host page-table levels supported (HATS, bits 11:10: 4, 5 or 6).
    pub fn max_levels(self) -> u8 {
        match (self.0 >> 10) & 3 {
            0 => 4,
            1 => 5,
            _ => 6,
        }
    }
}

/// How many levels every domain's page tables have (the DTE's Mode field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Levels {
    /// 3 levels: 39-bit device addresses (Mode 3).
    Three,
    /// 4 levels: 48-bit device addresses (Mode 4).
    Four,
}

impl Levels {
    /// The DTE's Mode field.
    pub fn mode(self) -> u64 {
        match self {
            Self::Three => 3,
            Self::Four => 4,
        }
    }
    /// Device addresses below this can be translated.
    pub fn limit(self) -> u64 {
        1 << self.bits()
    }
    /// The width in bits.
    pub fn bits(self) -> u8 {
        match self {
            Self::Three => 39,
            Self::Four => 48,
        }
    }
}

/// The levels for domains whose addresses all lie below `top` on a unit with
/// `features`: 3 when they suffice (fewer reads per walk), else 4; `None` when the unit
/// walks fewer levels than needed.
pub fn choose_levels(features: Features, top: u64) -> Option<Levels> {
    [Levels::Three, Levels::Four]
        .into_iter()
        .find(|&l| top <= l.limit() && l.mode() <= u64::from(features.max_levels()))
}

/// DTE bit 0: valid.
const DTE_V: u64 = 1 << 0;
/// DTE bit 1: translation information valid.
const DTE_TV: u64 = 1 << 1;
/// DTE bits 11:9: Mode (levels; 0 = no translation, access by IR/IW alone).
const DTE_MODE_SHIFT: u32 = 9;
/// DTE bit 61: reads allowed (ANDed with every level's IR).
pub const DTE_IR: u64 = 1 << 61;
/// DTE bit 62: writes allowed.
pub const DTE_IW: u64 = 1 << 62;

/// A device table entry (four 64-bit words; the IOMMU reads word 0 last matters only
/// for a live table, where the caller writes it last).
pub type Dte = [u64; 4];

/// The entry of a device ID given to no sandbox: V = 1 and TV = 1 (so the unit does not
/// pass its requests through untranslated, as it does with V = 0), Mode 0 (no page
/// table) and IR = IW = 0: every read and write is refused. The spec's Mode 0 means
/// "addresses untranslated, access controlled by IR and IW"; QEMU 7.2's amd-iommu does
/// the same (`amdvi_page_walk`: TV set and Mode 0 go to `no_remap`, whose permissions
/// are the DTE's IR/IW, here none) and logs nothing for it. Interrupts: IV = 0 passes
/// MSIs through untranslated (with interrupt remapping, `DeviceTable::block_interrupts`
/// blocks them).
pub const DTE_BLOCKED: Dte = [DTE_V | DTE_TV, 0, 0, 0];

/// A DTE's third word for a device whose interrupts are all refused (AMD IOMMU spec 2.2.2
/// "Device Table Entry Format" and 2.2.5 "Interrupt Remapping Tables"): IV = 1 (the
/// interrupt fields are valid), IntCtl = 00b (fixed and arbitrated interrupts target
/// aborted, no table read: IntTabLen and IntTableRootPtr 0), and no pass bit (INIT,
/// ExtInt, NMI, LINT0, LINT1 blocked). Without interrupt remapping a protected function
/// gets it (its own DMA write to 0xFEExxxxx included; its INTx still arrives through the
/// I/O APIC, and the monitor refuses its MSI enables); with remapping every device ID
/// the monitor gives no table (`DeviceTable::block_interrupts`).
pub const DTE_INTERRUPTS_BLOCKED: u64 = 1;

/// The entry of a device ID given to a sandbox: translated through the page tables at
/// `root` with `levels`, reads and writes allowed where they allow them, in domain
/// `domain` (the IOTLB's tag); `interrupts` its third word (its interrupts blocked,
/// [`DTE_INTERRUPTS_BLOCKED`], or remapped through a table,
/// [`dte_interrupts`](super::intremap::dte_interrupts)).
pub fn dte_translated(root: u64, levels: Levels, domain: u16, interrupts: u64) -> Dte {
    [
        DTE_V | DTE_TV | levels.mode() << DTE_MODE_SHIFT | (root & ADDR_MASK) | DTE_IR | DTE_IW,
        u64::from(domain),
        interrupts,
        0,
    ]
}

/// The entry of a device ID that makes no DMA but sends interrupts through a table (the
/// I/O APIC's): [`DTE_BLOCKED`] with `interrupts` as its third word.
pub fn dte_interrupts_only(interrupts: u64) -> Dte {
    [DTE_BLOCKED[0], 0, interrupts, 0]
}

/// A command (two 64-bit words; the opcode is in bits 63:60 of the first).
pub type Command = [u64; 2];

const OPCODE_SHIFT: u32 = 60;

/// COMPLETION_WAIT: when every earlier command is done, store `data` at the 8-byte
/// aligned host-physical `store` (S = 1, no interrupt).
pub fn completion_wait(store: u64, data: u64) -> Command {
    [
        (store & 0x000f_ffff_ffff_fff8) | 1 | 1 << OPCODE_SHIFT,
        data,
    ]
}

/// INVALIDATE_DEVTAB_ENTRY of device ID `id`.
pub fn invalidate_devtab_entry(id: u16) -> Command {
    [u64::from(id) | 2 << OPCODE_SHIFT, 0]
}

/// INVALIDATE_IOMMU_PAGES of every page of domain `domain` (S = 1 with the all-pages
/// address, PDE = 1: the cached directory entries too).
pub fn invalidate_domain(domain: u16) -> Command {
    [
        u64::from(domain) << 32 | 3 << OPCODE_SHIFT,
        0x7fff_ffff_ffff_f000 | 1 << 1 | 1,
    ]
}

/// The unit's event interrupt, as its MSI capability's address and data: an NMI to the
/// local APIC with ID `apic_id` (the same compatibility-format message as VT-d's fault
/// event, SDM Vol. 3, 11.11; delivery mode 100b, vector ignored). `None` when the ID
/// does not fit 8 bits.
pub fn event_nmi(apic_id: u32) -> Option<(u32, u32)> {
    crate::vtd::regs::fault_event_nmi(apic_id).map(|(data, address)| (address, data))
}

/// Event code of an IO_PAGE_FAULT.
pub const IO_PAGE_FAULT: u8 = 2;

/// IO_PAGE_FAULT flag bit 3: an interrupt request (not a memory access).
const FLAG_INTERRUPT: u16 = 1 << 3;
/// IO_PAGE_FAULT flag bit 4: the page was present (so the access was not allowed).
const FLAG_PRESENT: u16 = 1 << 4;
/// IO_PAGE_FAULT flag bit 5: a write (else a read).
const FLAG_WRITE: u16 = 1 << 5;
/// IO_PAGE_FAULT flag bit 7: a reserved bit was set in an entry.
const FLAG_RESERVED: u16 = 1 << 7;

/// One event-log entry (16 bytes): code in bits 63:60, device ID in 15:0, domain or
/// PASID in 47:32 and flags in 59:48 of the first word; the address in the second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// The event code.
    pub code: u8,
    /// The device ID it concerns (for device events).
    pub device: PciAddress,
    /// The domain ID (IO_PAGE_FAULT) or other event-specific bits.
    pub domain: u16,
    /// The event's flags.
    pub flags: u16,
    /// The address (the device address of an IO_PAGE_FAULT).
    pub address: u64,
}

impl Event {
    /// The entry in the two words `entry`; `None` for an empty (all-zero) slot.
    pub fn decode(entry: [u64; 2]) -> Option<Self> {
        if entry == [0, 0] {
            return None;
        }
        let w = entry[0];
        Some(Self {
            code: (w >> 60) as u8,
            device: PciAddress::from_u16(w as u16),
            domain: (w >> 32) as u16,
            flags: ((w >> 48) & 0xfff) as u16,
            address: entry[1],
        })
    }

    /// An IO_PAGE_FAULT for a memory access (not an interrupt request).
    pub fn is_dma_fault(&self) -> bool {
        self.code == IO_PAGE_FAULT && self.flags & FLAG_INTERRUPT == 0
    }

    /// An IO_PAGE_FAULT for an interrupt request the unit refused (interrupt
    /// remapping: an entry without RemapEn, IntCtl = 00b, a refused delivery mode).
    pub fn is_interrupt_fault(&self) -> bool {
        self.code == IO_PAGE_FAULT && self.flags & FLAG_INTERRUPT != 0
    }

    /// Whether the access was a write.
    pub fn write(&self) -> bool {
        self.flags & FLAG_WRITE != 0
    }

    /// Why the access was refused, in a few words (IO_PAGE_FAULT), or what the event is.
    pub fn reason(&self) -> &'static str {
        match self.code {
            IO_PAGE_FAULT if self.flags & FLAG_RESERVED != 0 => "reserved bit in an entry",
            IO_PAGE_FAULT if self.flags & FLAG_INTERRUPT != 0 => "interrupt request refused",
            IO_PAGE_FAULT if self.flags & FLAG_PRESENT == 0 => "not its memory",
            IO_PAGE_FAULT if self.write() => "write not allowed",
            IO_PAGE_FAULT => "read not allowed",
            1 => "invalid device table entry",
            3 => "device table unreadable",
            4 => "page table unreadable",
            5 => "illegal command",
            6 => "command buffer unreadable",
            7 => "IOTLB invalidation timed out",
            8 => "invalid device request",
            _ => "other event",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_registers_encode_address_and_size() {
        assert_eq!(device_table_base(0x40_0000, 2), 0x40_0001);
        assert_eq!(device_table_base(0x40_0000, 512), 0x40_01ff);
        assert_eq!(
            device_table_base(0x40_0000, 0),
            0x40_0000,
            "at least a page"
        );
        assert_eq!(ring_base(0x7000), 0x0800_0000_0000_7000);
        assert_eq!(RING_MASK, 0xff0);
    }

    #[test]
    fn qemu_features_give_three_levels() {
        // QEMU 7.2's amd-iommu: PREFETCH | PPR | IA | GT | HE | GA, HATS = 2 (6 levels),
        // GATS = 2.
        let qemu = Features(1 | 1 << 1 | 1 << 6 | 1 << 4 | 1 << 8 | 1 << 7 | 2 << 10 | 2 << 12);
        assert_eq!(qemu.max_levels(), 6);
        assert_eq!(choose_levels(qemu, 0x41_0000_0000), Some(Levels::Three));
        assert_eq!(choose_levels(qemu, 1 << 40), Some(Levels::Four));
        assert_eq!(choose_levels(qemu, 1 << 49), None);
        assert_eq!(Features(0).max_levels(), 4);
    }

    #[test]
    fn device_table_entries() {
        assert_eq!(DTE_BLOCKED, [3, 0, 0, 0]);
        let e = dte_translated(0x1234_5000, Levels::Three, 2, DTE_INTERRUPTS_BLOCKED);
        assert_eq!(e[0], 0x6000_0000_1234_5603);
        assert_eq!(e[1..], [2, 1, 0], "IV = 1, IntCtl = 00b, no pass bits");
        assert_eq!(
            dte_translated(0x7000, Levels::Four, 1, 1)[0] & 0xe00,
            4 << 9
        );
        assert_eq!(dte_interrupts_only(0x17), [3, 0, 0x17, 0]);
    }

    #[test]
    fn commands_encode_as_the_spec_and_qemu_read_them() {
        // QEMU 7.2 refuses reserved bits: COMPLETION_WAIT 59:52, INVALIDATE_DEVTAB_ENTRY
        // 59:16 and the second word, INVALIDATE_IOMMU_PAGES 31:20, 59:48 and 11:3.
        let c = completion_wait(0x1234_5678, 0xabcd);
        assert_eq!(c, [0x1000_0000_1234_5679, 0xabcd]);
        assert_eq!(c[0] >> 52 & 0xff, 0);
        assert_eq!(invalidate_devtab_entry(0x18), [0x2000_0000_0000_0018, 0]);
        let p = invalidate_domain(3);
        assert_eq!(p, [0x3000_0003_0000_0000, 0x7fff_ffff_ffff_f003]);
        assert_eq!(
            (p[0] >> 20 & 0xfff, p[0] >> 48 & 0xfff, p[1] >> 3 & 0x1ff),
            (0, 0, 0)
        );
    }

    #[test]
    fn the_event_interrupt_is_an_nmi_message() {
        assert_eq!(event_nmi(1), Some((0xfee0_1000, 0x400)));
        assert_eq!(event_nmi(300), None);
    }

    #[test]
    fn io_page_faults_decode() {
        // Device 00:03.0, domain 1, write to a page that is not present.
        let w = 2u64 << 60 | (FLAG_WRITE as u64) << 48 | 1 << 32 | 0x18;
        let e = Event::decode([w, 0x40_0000]).unwrap();
        assert_eq!(
            (e.code, e.device, e.domain, e.address),
            (2, PciAddress::new(0, 3, 0).unwrap(), 1, 0x40_0000)
        );
        assert!(e.is_dma_fault() && e.write());
        assert_eq!(e.reason(), "not its memory");
        let read_present = Event::decode([2 << 60 | (FLAG_PRESENT as u64) << 48, 0x1000]).unwrap();
        assert!(!read_present.write());
        assert_eq!(read_present.reason(), "read not allowed");
        let write_present =
            Event::decode([2 << 60 | ((FLAG_PRESENT | FLAG_WRITE) as u64) << 48, 0]).unwrap();
        assert_eq!(write_present.reason(), "write not allowed");
        let irq = Event::decode([2 << 60 | (FLAG_INTERRUPT as u64) << 48, 0xfee0_0000]).unwrap();
        assert!(!irq.is_dma_fault() && irq.is_interrupt_fault());
        assert!(!e.is_interrupt_fault());
        let rsv = Event::decode([2 << 60 | (FLAG_RESERVED as u64) << 48, 0]).unwrap();
        assert_eq!(rsv.reason(), "reserved bit in an entry");
        let other = Event::decode([5 << 60, 0x7000]).unwrap();
        assert!(!other.is_dma_fault());
        assert_eq!(other.reason(), "illegal command");
        assert_eq!(Event::decode([0, 0]), None, "empty slot");
        assert_eq!(
            Event::decode([u64::MAX, u64::MAX]).unwrap().reason(),
            "other event"
        );
    }
}
