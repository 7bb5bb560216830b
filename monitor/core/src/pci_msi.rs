//! A sandbox's view of a PCI function's interrupt registers (its half of
//! `crate::pci_virtual`):
//! - the Interrupt Line register reads the ISA line the monitor routed the function's
//!   INTx to (its IOAPIC pin, vector 32 + line, the owner's first core), or 0xff when it
//!   routed none;
//! - the MSI capability is virtual: the sandbox reads back what it wrote, and the device
//!   gets the translated message (PCI 3.0, 6.8.1): the destination is a virtual APIC ID
//!   (the sandbox's vCPU index, as for IPIs) and becomes the physical APIC ID of that
//!   vCPU's core; the vector is kept. Logical destinations, IDs outside the sandbox,
//!   vectors below 16 and delivery modes other than fixed / lowest priority (SMI, NMI,
//!   INIT, ExtINT) are refused: the device's MSI stays disabled until the sandbox writes a
//!   message the monitor accepts;
//! - the MSI-X capability is hidden (unlinked from the capability list, its registers
//!   read 0): its table lives in a BAR the sandbox maps directly, where the monitor could
//!   not translate it. Drivers fall back to MSI or INTx. It is kept off in the device
//!   (firmware may have left it on): with it on, the table the sandbox writes through
//!   its BAR would send any message (NMI, INIT, another core) untranslated.
//!
//! Message address and data: Intel SDM Vol. 3A, 11.11.1 and 11.11.2.

use crate::pci::ConfigSpace;
use quest_abi::PciAddress;

/// Capability ID of MSI.
pub const CAP_MSI: u8 = 0x05;
/// Capability ID of MSI-X.
pub const CAP_MSIX: u8 = 0x11;
/// Interrupt Line (byte 0), Interrupt Pin (byte 1), Min_Gnt, Max_Lat.
pub const INTERRUPT: u8 = 0x3c;
/// The status register's "capabilities list" bit (in the COMMAND dword's upper half).
const STATUS_CAPABILITIES: u32 = 1 << (16 + 4);
/// Message control: MSI enable.
const MSI_ENABLE: u16 = 1 << 0;
/// Message control: multiple message enable (bits 6:4).
const MSI_MME: u16 = 7 << 4;
/// Message control: 64-bit address capable.
const MSI_64BIT: u16 = 1 << 7;
/// Message control: per-vector masking capable.
const MSI_MASKABLE: u16 = 1 << 8;
/// MSI-X message control bit 15 (enable), in the capability's first dword.
const MSIX_ENABLE: u32 = 1 << 31;
/// Bytes of the MSI-X capability.
const MSIX_LEN: u8 = 12;
/// Most virtual APIC IDs (vCPUs) a sandbox has (`quest_abi::MAX_VCPUS_PER_SANDBOX`).
pub const MAX_TARGETS: usize = 16;

/// Where a function's MSI capability is and what it can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiCap {
    /// Its offset in configuration space.
    pub offset: u8,
    /// 64-bit message address.
    pub wide: bool,
    /// Per-vector mask and pending registers.
    pub maskable: bool,
}

impl MsiCap {
    /// The offset of the message data register.
    fn data(&self) -> u8 {
        self.offset + if self.wide { 0x0c } else { 0x08 }
    }
    /// The end (exclusive) of the registers the sandbox writes here (mask bits after the
    /// data register are passed through).
    fn end(&self) -> u8 {
        self.data() + 4
    }
}

/// A hidden MSI-X capability: the pointer to it and what it pointed on to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HiddenCap {
    /// The byte holding the pointer to it (0x34 or the previous capability's next).
    pub pointer_at: u8,
    /// The capability's own offset.
    pub offset: u8,
    /// Its next pointer, which the pointer to it now reads.
    pub next: u8,
}

/// A function's capabilities as the monitor handles them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// MSI, if present.
    pub msi: Option<MsiCap>,
    /// MSI-X, if present (hidden).
    pub msix: Option<HiddenCap>,
}

/// Walks function `f`'s capability list (at most 48 entries, offsets 0x40-0xfc; a
/// malformed list ends the walk).
pub fn capabilities(cs: &mut impl ConfigSpace, f: PciAddress) -> Capabilities {
    let mut out = Capabilities::default();
    if cs.read(f, crate::pci::COMMAND) & STATUS_CAPABILITIES == 0 {
        return out;
    }
    let mut pointer_at = crate::pci::CAPABILITIES;
    let mut at = (cs.read(f, pointer_at) & 0xfc) as u8;
    for _ in 0..48 {
        if at < 0x40 {
            break;
        }
        let head = cs.read(f, at);
        let (id, next) = (head as u8, ((head >> 8) & 0xfc) as u8);
        match id {
            CAP_MSI if out.msi.is_none() && at <= 0xff - 0x17 => {
                let control = (head >> 16) as u16;
                out.msi = Some(MsiCap {
                    offset: at,
                    wide: control & MSI_64BIT != 0,
                    maskable: control & MSI_MASKABLE != 0,
                });
            }
            CAP_MSIX if out.msix.is_none() => {
                out.msix = Some(HiddenCap {
                    pointer_at,
                    offset: at,
                    next,
                });
            }
            _ => {}
        }
        pointer_at = at + 1;
        at = next;
    }
    out
}

/// What the IOMMU makes of a translated message (physical APIC ID, vector) that
/// function `f` is to send ([`Targets::with_remap`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remapped {
    /// No interrupt remapping: the device sends the compatibility-format message.
    Compatibility,
    /// Remapping: the device sends this remappable-format (address, data), which names
    /// an entry the monitor wrote with that destination and vector, accepted from `f`
    /// only.
    Message(u32, u32),
    /// Remapping is on but this function's message cannot be remapped.
    Refused,
}

/// The IOMMU's remapping of function `f`'s message to physical APIC ID `apic_id` with
/// `vector` (the monitor's; no guest value reaches it untranslated).
pub type Remap = fn(f: PciAddress, apic_id: u32, vector: u8) -> Remapped;

/// The physical APIC ID of each of a sandbox's vCPUs (virtual APIC ID = index), and the
/// IOMMU's interrupt remapping, if any.
#[derive(Clone, Copy, Debug, Default)]
pub struct Targets {
    ids: [u32; MAX_TARGETS],
    count: usize,
    remap: Option<Remap>,
}

impl Targets {
    /// None yet.
    pub const fn new() -> Self {
        Self {
            ids: [0; MAX_TARGETS],
            count: 0,
            remap: None,
        }
    }
    /// The same targets, each accepted message remapped by `remap`.
    pub fn with_remap(self, remap: Remap) -> Self {
        Self {
            remap: Some(remap),
            ..self
        }
    }
    /// The physical APIC IDs of vCPUs 0, 1, ... (at most [`MAX_TARGETS`]).
    pub fn of(ids: &[u32]) -> Self {
        let mut t = Self::new();
        for (slot, id) in t.ids.iter_mut().zip(ids) {
            *slot = *id;
            t.count += 1;
        }
        t
    }
    /// The physical APIC ID of vCPU `virtual_id`.
    pub fn physical(&self, virtual_id: u32) -> Option<u32> {
        self.ids[..self.count]
            .get(usize::try_from(virtual_id).ok()?)
            .copied()
    }
}

/// Why an MSI message was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsiRefusal {
    /// The address is not in the interrupt range 0xFEExxxxx.
    Address(u64),
    /// Logical destination mode.
    Logical,
    /// A destination that is not one of the sandbox's vCPUs.
    Foreign(u32),
    /// The core's physical APIC ID does not fit an MSI address (above 255).
    WideApicId(u32),
    /// Delivery mode other than fixed or lowest priority.
    DeliveryMode(u8),
    /// A vector below 16.
    Vector(u8),
    /// Interrupt remapping is on and the IOMMU has no entry for the function.
    NotRemapped,
}

impl core::fmt::Display for MsiRefusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::Address(a) => write!(f, "MSI address {a:#x} is not an interrupt address"),
            Self::Logical => f.write_str("MSI in logical destination mode"),
            Self::Foreign(id) => write!(f, "MSI to APIC ID {id} outside the sandbox"),
            Self::WideApicId(id) => write!(f, "MSI to physical APIC ID {id} (above 255)"),
            Self::DeliveryMode(m) => write!(f, "MSI with delivery mode {}", mode_name(m)),
            Self::Vector(v) => write!(f, "MSI with illegal vector {v}"),
            Self::NotRemapped => {
                f.write_str("MSI (no interrupt remapping for this device; INTx works)")
            }
        }
    }
}

/// The SDM's name of delivery mode `m` (bits 10:8 of the message data).
fn mode_name(m: u8) -> &'static str {
    match m {
        0 => "fixed",
        1 => "lowest priority",
        2 => "SMI",
        4 => "NMI",
        5 => "INIT",
        7 => "ExtINT",
        _ => "reserved",
    }
}

/// Translates a message the sandbox wrote (`address`, `data`) into the one the device
/// may send: physical destination, fixed delivery, edge, the same vector.
pub fn translate(address: u64, data: u32, targets: &Targets) -> Result<(u32, u32), MsiRefusal> {
    if address >> 20 != 0xfee {
        return Err(MsiRefusal::Address(address));
    }
    if address & (1 << 2) != 0 {
        return Err(MsiRefusal::Logical);
    }
    let dest = ((address >> 12) & 0xff) as u32;
    let physical = targets.physical(dest).ok_or(MsiRefusal::Foreign(dest))?;
    if physical > 0xff {
        return Err(MsiRefusal::WideApicId(physical));
    }
    let mode = ((data >> 8) & 7) as u8;
    if mode > 1 {
        return Err(MsiRefusal::DeliveryMode(mode));
    }
    let vector = data as u8;
    if vector < 16 {
        return Err(MsiRefusal::Vector(vector));
    }
    // One physical destination: lowest priority among one core is that core (fixed).
    Ok((0xfee0_0000 | physical << 12, u32::from(vector)))
}

/// The message function `f` sends for the translated (`address`, `data`): the same
/// without interrupt remapping, else the remappable one the IOMMU gives.
fn remap(
    f: PciAddress,
    address: u32,
    data: u32,
    targets: &Targets,
) -> Result<(u32, u32), MsiRefusal> {
    let Some(remap) = targets.remap else {
        return Ok((address, data));
    };
    match remap(f, (address >> 12) & 0xff, data as u8) {
        Remapped::Compatibility => Ok((address, data)),
        Remapped::Message(a, d) => Ok((a, d)),
        Remapped::Refused => Err(MsiRefusal::NotRemapped),
    }
}

/// The sandbox's side of one function's interrupt registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FunctionIrq {
    /// The capabilities found at boot.
    pub caps: Capabilities,
    /// The routed INTx line (`None`: reads 0xff).
    pub line: Option<u8>,
    /// What the sandbox wrote: message control (enable, MME), address, data.
    control: u16,
    address: u64,
    data: u32,
    /// The refusal reported last (each is reported once, not for every register the
    /// sandbox writes while its message stays refused).
    refused: Option<MsiRefusal>,
}

/// What a write to the interrupt registers did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// Not an interrupt register: the caller goes on.
    NotMine,
    /// Handled (kept virtual or passed on).
    Done,
    /// Handled; the message is refused and the device's MSI stays off.
    Refused(MsiRefusal),
}

impl FunctionIrq {
    /// For a function with `caps` whose INTx is routed to `line`.
    pub fn new(caps: Capabilities, line: Option<u8>) -> Self {
        Self {
            caps,
            line,
            ..Self::default()
        }
    }

    /// The dword `reg` as the sandbox sees it, where `real` is what the device reads
    /// (returned as is when `reg` is none of these registers).
    pub fn read(&self, reg: u8, real: u32) -> u32 {
        if let Some(h) = self.caps.msix {
            if (h.offset & !3..h.offset.saturating_add(MSIX_LEN)).contains(&reg) {
                return 0;
            }
        }
        let value = self.read_own(reg, real);
        match self.caps.msix {
            Some(h) if reg == h.pointer_at & !3 => {
                let shift = 8 * u32::from(h.pointer_at & 3);
                (value & !(0xff << shift)) | u32::from(h.next) << shift
            }
            _ => value,
        }
    }

    /// [`Self::read`] of the line and MSI registers.
    fn read_own(&self, reg: u8, real: u32) -> u32 {
        if reg == INTERRUPT {
            return (real & !0xff) | u32::from(self.line.unwrap_or(0xff));
        }
        let Some(m) = self.caps.msi else {
            return real;
        };
        if reg == m.offset {
            let control = self.control & (MSI_ENABLE | MSI_MME);
            let real_control = (real >> 16) as u16 & !(MSI_ENABLE | MSI_MME);
            return (real & 0xffff) | u32::from(real_control | control) << 16;
        }
        if reg == m.offset + 4 {
            return self.address as u32;
        }
        if m.wide && reg == m.offset + 8 {
            return (self.address >> 32) as u32;
        }
        if reg == m.data() {
            return self.data & 0xffff;
        }
        real
    }

    /// Forgets what the sandbox wrote and turns MSI and MSI-X off in the device: the
    /// state a sandbox starts from (at boot, firmware may have left either on) and the
    /// one a stopped sandbox leaves (nothing may target its cores until it programs MSI
    /// again).
    pub fn quiesce(&mut self, cs: &mut impl ConfigSpace, f: PciAddress) {
        *self = Self::new(self.caps, self.line);
        if let Some(m) = self.caps.msi {
            let head = cs.read(f, m.offset);
            cs.write(f, m.offset, head & !(u32::from(MSI_ENABLE | MSI_MME) << 16));
        }
        if let Some(h) = self.caps.msix {
            let head = cs.read(f, h.offset);
            if head & MSIX_ENABLE != 0 {
                cs.write(f, h.offset, head & !MSIX_ENABLE);
            }
        }
    }

    /// Writes `value` into the lanes `lanes` of dword `reg` of function `f` (already
    /// shifted into place). Message control, address and data are kept as written and
    /// the device gets the translation ([`translate`]) whenever MSI is enabled.
    pub fn write(
        &mut self,
        cs: &mut impl ConfigSpace,
        f: PciAddress,
        reg: u8,
        lanes: u32,
        value: u32,
        targets: &Targets,
    ) -> Written {
        if reg == INTERRUPT {
            return Written::Done; // the line is the monitor's; pin and the rest read-only
        }
        if let Some(h) = self.caps.msix {
            if (h.offset & !3..h.offset.saturating_add(MSIX_LEN)).contains(&reg) {
                return Written::Done; // hidden: MSI-X stays off
            }
        }
        let Some(m) = self.caps.msi else {
            return Written::NotMine;
        };
        if reg < m.offset || reg >= m.end() {
            return Written::NotMine;
        }
        let merge = |old: u32| (old & !lanes) | (value & lanes);
        if reg == m.offset {
            let control = (merge(u32::from(self.control) << 16) >> 16) as u16;
            self.control = control & (MSI_ENABLE | MSI_MME);
        } else if reg == m.offset + 4 {
            let low = merge(self.address as u32) & !3;
            self.address = (self.address & !0xffff_ffff) | u64::from(low);
        } else if m.wide && reg == m.offset + 8 {
            let high = merge((self.address >> 32) as u32);
            self.address = u64::from(high) << 32 | (self.address & 0xffff_ffff);
        } else if reg == m.data() {
            self.data = merge(self.data) & 0xffff;
        }
        self.sync(cs, f, m, targets)
    }

    /// Gives the device the translation of the sandbox's message, MSI enabled only if
    /// the sandbox enabled it and the message is accepted.
    fn sync(
        &mut self,
        cs: &mut impl ConfigSpace,
        f: PciAddress,
        m: MsiCap,
        targets: &Targets,
    ) -> Written {
        let head = cs.read(f, m.offset);
        let control = (head >> 16) as u16 & !(MSI_ENABLE | MSI_MME);
        let off = |c: u16| (head & 0xffff) | u32::from(c) << 16;
        let wanted = self.control & MSI_ENABLE != 0;
        // Never more messages than the device can send (MME <= MMC, bits 3:1).
        let mme = ((self.control & MSI_MME) >> 4).min((control >> 1) & 7) << 4;
        let translated = translate(self.address, self.data, targets)
            .and_then(|(address, data)| remap(f, address, data, targets));
        match translated {
            Ok((address, data)) => {
                // Disabled while the message changes, so it never sends half of one.
                cs.write(f, m.offset, off(control));
                cs.write(f, m.offset + 4, address);
                if m.wide {
                    cs.write(f, m.offset + 8, 0);
                }
                let real_data = cs.read(f, m.data());
                cs.write(f, m.data(), (real_data & !0xffff) | data);
                cs.write(
                    f,
                    m.offset,
                    off(control | mme | (self.control & MSI_ENABLE)),
                );
                self.refused = None;
                Written::Done
            }
            Err(why) => {
                cs.write(f, m.offset, off(control | mme));
                if !wanted {
                    self.refused = None; // off: the next enable is reported again
                    Written::Done
                } else if self.refused != Some(why) {
                    self.refused = Some(why);
                    Written::Refused(why)
                } else {
                    Written::Done
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::fake::{bus, FakeBus};

    fn edu() -> PciAddress {
        PciAddress::new(0, 3, 0).unwrap()
    }

    /// vCPU 0 on physical APIC 4, vCPU 1 on 6.
    fn targets() -> Targets {
        Targets::of(&[4, 6])
    }

    /// The test bus with edu's MSI capability made 64-bit (as QEMU's edu), an MSI-X
    /// capability at 0x50 behind it and a vendor capability at 0x60 last.
    fn with_caps() -> FakeBus {
        let mut b = bus();
        let f = &mut b.functions[3];
        f.regs[15] = 0x0000_010b; // line 11, pin INTA
        f.regs[16] = 0x0080_5005; // MSI, next 0x50, control: 64-bit
        f.regs[20] = 0x0003_6011; // MSI-X, next 0x60, table size 4
        f.regs[24] = 0x0000_0009; // vendor specific, end
        b
    }

    fn setup() -> (FakeBus, FunctionIrq) {
        let mut b = with_caps();
        let caps = capabilities(&mut b, edu());
        (b, FunctionIrq::new(caps, Some(11)))
    }

    fn read(irq: &FunctionIrq, b: &mut FakeBus, reg: u8) -> u32 {
        irq.read(reg, b.reg(edu(), reg))
    }

    #[test]
    fn the_capability_walk_finds_msi_and_msix() {
        let (_, irq) = setup();
        assert_eq!(
            irq.caps,
            Capabilities {
                msi: Some(MsiCap {
                    offset: 0x40,
                    wide: true,
                    maskable: false
                }),
                msix: Some(HiddenCap {
                    pointer_at: 0x41,
                    offset: 0x50,
                    next: 0x60
                }),
            }
        );
        // A loop in the list ends; no capability bit: nothing.
        let mut b = with_caps();
        b.functions[3].regs[24] = 0x0000_4009;
        assert!(capabilities(&mut b, edu()).msi.is_some());
        b.functions[3].regs[1] = 0;
        assert_eq!(capabilities(&mut b, edu()), Capabilities::default());
    }

    #[test]
    fn msix_is_unlinked_and_reads_zero_and_the_line_is_the_routed_one() {
        let (mut b, irq) = setup();
        assert_eq!(
            read(&irq, &mut b, 0x40) >> 8 & 0xff,
            0x60,
            "MSI's next skips MSI-X"
        );
        for reg in [0x50, 0x54, 0x58] {
            assert_eq!(read(&irq, &mut b, reg), 0);
        }
        assert_eq!(read(&irq, &mut b, 0x60), 0x0000_0009);
        assert_eq!(read(&irq, &mut b, INTERRUPT), 0x0000_010b);
        let unrouted = FunctionIrq::new(irq.caps, None);
        assert_eq!(read(&unrouted, &mut b, INTERRUPT), 0x0000_01ff);
        // MSI-X first in the list: the capabilities pointer skips it.
        let mut b = with_caps();
        b.functions[3].regs[13] = 0x50;
        b.functions[3].regs[20] = 0x0003_4011;
        b.functions[3].regs[16] = 0x0080_6005;
        let caps = capabilities(&mut b, edu());
        let irq = FunctionIrq::new(caps, None);
        assert_eq!(read(&irq, &mut b, 0x34) & 0xff, 0x40);
        // Writes to MSI-X do nothing.
        let w = FunctionIrq::new(caps, None).write(&mut b, edu(), 0x50, !0, !0, &targets());
        assert_eq!(w, Written::Done);
        assert!(b.writes.is_empty());
    }

    #[test]
    fn messages_are_translated_to_the_physical_core() {
        assert_eq!(
            translate(0xfee0_1000, 0x0051, &targets()),
            Ok((0xfee0_6000, 0x51))
        );
        // Lowest priority becomes fixed; level/assert bits and RH are dropped.
        assert_eq!(
            translate(0xfee0_0008, 0xc160, &targets()),
            Ok((0xfee0_4000, 0x60))
        );
        for (address, data, why) in [
            (0xfee0_2000, 0x51, MsiRefusal::Foreign(2)),
            (0xfeef_f000, 0x51, MsiRefusal::Foreign(0xff)),
            (0xfee0_0004, 0x51, MsiRefusal::Logical),
            (0xfee0_0000, 0x0451, MsiRefusal::DeliveryMode(4)),
            (0xfee0_0000, 0x0251, MsiRefusal::DeliveryMode(2)),
            (0xfee0_0000, 0x0551, MsiRefusal::DeliveryMode(5)),
            (0xfee0_0000, 0x0751, MsiRefusal::DeliveryMode(7)),
            (0xfee0_0000, 0x000e, MsiRefusal::Vector(14)),
            (0x1_fee0_0000, 0x51, MsiRefusal::Address(0x1_fee0_0000)),
            (0xfed0_0000, 0x51, MsiRefusal::Address(0xfed0_0000)),
        ] {
            assert_eq!(
                translate(address, data, &targets()),
                Err(why),
                "{address:#x} {data:#x}"
            );
        }
        assert_eq!(
            translate(0xfee0_0000, 0x51, &Targets::of(&[300])),
            Err(MsiRefusal::WideApicId(300))
        );
    }

    /// An IOMMU that remaps edu's messages to IRTE 32 + vector (a made-up handle that
    /// shows what it was given) and has no entry for any other function.
    fn remap_edu(f: PciAddress, apic_id: u32, vector: u8) -> Remapped {
        if f != edu() {
            return Remapped::Refused;
        }
        assert_eq!(apic_id, 6, "the physical APIC ID, never the sandbox's");
        Remapped::Message(0xfee0_0010 | u32::from(vector) << 5, apic_id)
    }

    #[test]
    fn with_remapping_the_device_gets_the_remappable_message() {
        let (mut b, mut irq) = setup();
        let t = targets().with_remap(remap_edu);
        let all = u32::MAX;
        irq.write(&mut b, edu(), 0x44, all, 0xfee0_1000, &t);
        irq.write(&mut b, edu(), 0x48, all, 0, &t);
        irq.write(&mut b, edu(), 0x4c, 0xffff, 0x51, &t);
        assert_eq!(
            irq.write(&mut b, edu(), 0x40, 0xffff_0000, 1 << 16, &t),
            Written::Done
        );
        assert_eq!(b.reg(edu(), 0x44), 0xfee0_0a30, "handle of vector 0x51");
        assert_eq!(b.reg(edu(), 0x4c) & 0xffff, 6, "the remapper's data");
        assert_eq!(b.reg(edu(), 0x40) >> 16 & 1, 1, "enabled");
        assert_eq!(read(&irq, &mut b, 0x44), 0xfee0_1000, "the sandbox's own");
        // Hostile messages are refused before the remapper sees them.
        assert_eq!(
            irq.write(&mut b, edu(), 0x4c, 0xffff, 0x400, &t),
            Written::Refused(MsiRefusal::DeliveryMode(4))
        );
        assert_eq!(b.reg(edu(), 0x40) >> 16 & 1, 0, "MSI off");
        // A function the IOMMU has no entry for: refused, MSI stays off.
        let other = PciAddress::new(0, 1, 1).unwrap();
        assert_eq!(
            remap(other, 0xfee0_4000, 0x40, &t),
            Err(MsiRefusal::NotRemapped)
        );
        assert_eq!(
            remap(other, 0xfee0_4000, 0x40, &targets()),
            Ok((0xfee0_4000, 0x40))
        );
    }

    #[test]
    fn the_sandbox_reads_its_message_and_the_device_gets_the_translation() {
        let (mut b, mut irq) = setup();
        let t = targets();
        let all = u32::MAX;
        assert_eq!(
            irq.write(&mut b, edu(), 0x44, all, 0xfee0_1000, &t),
            Written::Done
        );
        assert_eq!(irq.write(&mut b, edu(), 0x48, all, 0, &t), Written::Done);
        assert_eq!(
            irq.write(&mut b, edu(), 0x4c, 0xffff, 0x51, &t),
            Written::Done
        );
        assert_eq!(b.reg(edu(), 0x40) >> 16 & 1, 0, "not enabled yet");
        // Enable with a 16-bit write of message control (lanes 3:2).
        assert_eq!(
            irq.write(&mut b, edu(), 0x40, 0xffff_0000, 1 << 16, &t),
            Written::Done
        );
        assert_eq!(b.reg(edu(), 0x44), 0xfee0_6000, "vCPU 1 is APIC 6");
        assert_eq!(b.reg(edu(), 0x4c) & 0xffff, 0x51);
        assert_eq!(
            b.reg(edu(), 0x40) >> 16 & 0x81,
            0x81,
            "enabled, 64-bit kept"
        );
        assert_eq!(
            read(&irq, &mut b, 0x44),
            0xfee0_1000,
            "the sandbox's own value"
        );
        assert_eq!(read(&irq, &mut b, 0x4c), 0x51);
        assert_eq!(read(&irq, &mut b, 0x40) >> 16 & 0x81, 0x81);
        // A write that does not reach the capability is not this module's.
        assert_eq!(irq.write(&mut b, edu(), 0x60, all, 0, &t), Written::NotMine);
        assert_eq!(
            irq.write(&mut b, edu(), 0x3c, 0xff, 0x05, &t),
            Written::Done
        );
        assert_eq!(b.reg(edu(), 0x3c) & 0xff, 0x0b, "the line stays");
    }

    #[test]
    fn quiescing_turns_msi_off_and_forgets_the_message() {
        let (mut b, mut irq) = setup();
        let t = targets();
        irq.write(&mut b, edu(), 0x44, u32::MAX, 0xfee0_1000, &t);
        irq.write(&mut b, edu(), 0x4c, 0xffff, 0x51, &t);
        irq.write(&mut b, edu(), 0x40, 0xffff_0000, 1 << 16, &t);
        assert_eq!(b.reg(edu(), 0x40) >> 16 & 1, 1);
        irq.quiesce(&mut b, edu());
        assert_eq!(b.reg(edu(), 0x40) >> 16, 0x0080, "off, 64-bit kept");
        assert_eq!(b.reg(edu(), 0x40) & 0xffff, 0x5005, "the header kept");
        assert_eq!(read(&irq, &mut b, 0x44), 0);
        assert_eq!(read(&irq, &mut b, 0x40) >> 16 & 1, 0);
        assert_eq!(
            read(&irq, &mut b, INTERRUPT) & 0xff,
            11,
            "the line stays routed"
        );
    }

    #[test]
    fn msix_left_on_by_firmware_is_turned_off() {
        let (mut b, mut irq) = setup();
        b.functions[3].regs[20] |= 0xc000 << 16; // MSI-X enabled, function masked
        b.functions[3].regs[16] |= 0x0031 << 16; // MSI enabled, 8 messages
        irq.quiesce(&mut b, edu());
        assert_eq!(b.reg(edu(), 0x50), 0x4003_6011, "MSI-X off, the mask kept");
        assert_eq!(b.reg(edu(), 0x40), 0x0080_5005, "MSI off");
        // Nothing to turn off: MSI-X's register is not written.
        b.writes.clear();
        irq.quiesce(&mut b, edu());
        assert!(b.writes.iter().all(|w| w.1 != 0x50));
    }

    #[test]
    fn hostile_messages_leave_msi_off_and_are_reported() {
        let (mut b, mut irq) = setup();
        let t = targets();
        let all = u32::MAX;
        irq.write(&mut b, edu(), 0x44, all, 0xfee0_0000, &t);
        irq.write(&mut b, edu(), 0x4c, 0xffff, 0x51, &t);
        assert_eq!(
            irq.write(&mut b, edu(), 0x40, 0xffff_0000, 1 << 16, &t),
            Written::Done
        );
        assert_eq!(b.reg(edu(), 0x44), 0xfee0_4000);
        // Now retarget to APIC ID 7 (not the sandbox's) while enabled.
        assert_eq!(
            irq.write(&mut b, edu(), 0x44, all, 0xfee0_7000, &t),
            Written::Refused(MsiRefusal::Foreign(7))
        );
        assert_eq!(b.reg(edu(), 0x40) >> 16 & 1, 0, "MSI off in the device");
        assert_eq!(
            irq.write(&mut b, edu(), 0x48, all, 0, &t),
            Written::Done,
            "the same refusal is reported once"
        );
        assert_eq!(
            b.reg(edu(), 0x44),
            0xfee0_4000,
            "the old, valid address stays"
        );
        assert_eq!(
            read(&irq, &mut b, 0x40) >> 16 & 1,
            1,
            "the sandbox sees its enable"
        );
        // Back to its own core: on again.
        assert_eq!(
            irq.write(&mut b, edu(), 0x44, all, 0xfee0_0000, &t),
            Written::Done
        );
        assert_eq!(b.reg(edu(), 0x40) >> 16 & 1, 1);
        // NMI delivery, by a byte write of the data's upper half.
        assert_eq!(
            irq.write(&mut b, edu(), 0x4c, 0xff00, 0x0400, &t),
            Written::Refused(MsiRefusal::DeliveryMode(4))
        );
        assert_eq!(b.reg(edu(), 0x40) >> 16 & 1, 0);
        assert_eq!(
            b.reg(edu(), 0x4c) & 0xffff,
            0x51,
            "never an NMI in the device"
        );
        // Disabling is never refused; a bad message while disabled is not reported.
        assert_eq!(
            irq.write(&mut b, edu(), 0x40, 0xffff_0000, 0, &t),
            Written::Done
        );
        assert_eq!(
            irq.write(&mut b, edu(), 0x44, all, 0x1234, &t),
            Written::Done
        );
        // Read-only control bits (64-bit) cannot be cleared; MME is kept as written but
        // the device gets no more than it can send (MMC 0 here, 3 below).
        irq.write(&mut b, edu(), 0x40, 0xffff_0000, 0x0070_0000, &t);
        assert_eq!(b.reg(edu(), 0x40) >> 16, 0x0080);
        assert_eq!(read(&irq, &mut b, 0x40) >> 16, 0x00f0);
        b.functions[3].regs[16] |= 3 << 17;
        irq.write(&mut b, edu(), 0x40, 0xffff_0000, 0x0070_0000, &t);
        assert_eq!(b.reg(edu(), 0x40) >> 16, 0x00b6);
    }
}
