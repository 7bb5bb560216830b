//! A sandbox's virtual PCI configuration space: what its accesses through 0xCF8/0xCFC see.
//! It holds the sandbox's own functions only (any other address reads as absent, all
//! ones, and ignores writes), and filters every access to those:
//! - reads pass through, except: the header type's multi-function bit says whether the
//!   sandbox owns another function of the same device; a BAR being sized reads its size
//!   mask (probed at boot, so the real BAR is never touched); the expansion ROM BAR reads
//!   0 (no ROM shown).
//! - writes: the command register may turn I/O and memory decode on or off (never on
//!   for a space in which firmware left an implemented BAR unassigned, at 0), and
//!   INTx-disable too when the monitor routed the function's line to the sandbox (an
//!   unrouted function's INTx stays disabled: its line may be another sandbox's, which a
//!   level-triggered INTx the other cannot clear would flood); bus mastering only for a function the monitor marked DMA-safe
//!   ([`VirtualConfig::allow_dma`]: behind an active IOMMU domain, or `dma =
//!   "unprotected"` on a machine without IOMMU), refused otherwise; every other bit kept. Writing
//!   all ones to a BAR starts sizing it; writing back its current value ends it; any other
//!   value would move it and is refused (the BAR stays where it is; later steps map BARs
//!   into the sandbox's EPT/NPT and may confine moves instead). The Interrupt Line and
//!   the MSI and MSI-X capabilities are `crate::pci_msi`'s (the routed line, translated
//!   MSI messages, MSI-X hidden). Everything else (status, capability list) is read-only.
//!
//! A guest that scans only function 0 of each device misses a function > 0 whose
//! function 0 it does not own; guests must scan all eight (Linux does so under Jailhouse,
//! `hypervisor_isolated_pci_functions`).

use crate::device_windows::{bar_ranges, BarSpace};
use crate::pci::{
    Bar, BarKind, ConfigSpace, Function, BAR0, COMMAND, COMMAND_BUS_MASTER, COMMAND_INTX_DISABLE,
    COMMAND_IO, COMMAND_MEMORY, HEADER, MULTI_FUNCTION, ROM,
};
use crate::pci_msi::{FunctionIrq, MsiRefusal, Targets, Written};
use quest_abi::PciAddress;

/// Most PCI functions one sandbox may own.
pub const MAX_FUNCTIONS_PER_SANDBOX: usize = 16;

/// The command bits a sandbox may change.
const COMMAND_WRITABLE: u16 = COMMAND_IO | COMMAND_MEMORY | COMMAND_INTX_DISABLE;

/// A write the virtual space refused, for the monitor's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A bus-master enable (DMA needs protection first).
    BusMaster(PciAddress),
    /// A BAR move (to `value`).
    BarMove {
        /// The function.
        function: PciAddress,
        /// Which BAR.
        bar: u8,
        /// The value the sandbox wrote.
        value: u32,
    },
    /// An MSI message the monitor does not let the device send.
    Msi {
        /// The function.
        function: PciAddress,
        /// Why.
        why: MsiRefusal,
    },
}

/// One function of a sandbox.
#[derive(Clone, Copy, Debug)]
struct Owned {
    function: Function,
    /// Whether the sandbox owns another function of the same device.
    multi: bool,
    /// BARs being sized (all ones written, the original not yet back).
    sizing: [bool; 6],
    /// It may master the bus (see [`VirtualConfig::allow_dma`]).
    dma: bool,
    /// Its interrupt registers (`crate::pci_msi`).
    irq: FunctionIrq,
}

/// A sandbox's virtual configuration space.
#[derive(Clone, Debug)]
pub struct VirtualConfig {
    owned: [Option<Owned>; MAX_FUNCTIONS_PER_SANDBOX],
    /// The physical APIC ID of each vCPU, for MSI destinations.
    targets: Targets,
}

impl Default for VirtualConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl VirtualConfig {
    /// A space with no function: every address reads as absent.
    pub const fn new() -> Self {
        Self {
            owned: [None; MAX_FUNCTIONS_PER_SANDBOX],
            targets: Targets::new(),
        }
    }

    /// Sets the physical APIC IDs MSI destinations (virtual APIC IDs) translate to.
    pub fn set_targets(&mut self, targets: Targets) {
        self.targets = targets;
    }

    /// Sets function `a`'s interrupt registers (its routed line and capabilities) and
    /// puts the device in the state the sandbox starts from: MSI and MSI-X off (see
    /// `FunctionIrq::quiesce`). False when the sandbox does not own `a`.
    pub fn set_interrupts(
        &mut self,
        cs: &mut impl ConfigSpace,
        a: PciAddress,
        irq: FunctionIrq,
    ) -> bool {
        let Some(o) = self.get(a).and_then(|i| self.owned[i].as_mut()) else {
            return false;
        };
        o.irq = irq;
        o.irq.quiesce(cs, a);
        if o.irq.line.is_none() {
            let command = cs.read(a, COMMAND) as u16 | COMMAND_INTX_DISABLE;
            // The status half written as 0 changes nothing (write-one-to-clear bits).
            cs.write(a, COMMAND, u32::from(command));
        }
        true
    }

    /// Gives the sandbox `f`; false when it already has [`MAX_FUNCTIONS_PER_SANDBOX`] or `f`.
    pub fn add(&mut self, f: Function) -> bool {
        if self.get(f.address).is_some() {
            return false;
        }
        let Some(slot) = self.owned.iter_mut().find(|o| o.is_none()) else {
            return false;
        };
        *slot = Some(Owned {
            function: f,
            multi: false,
            sizing: [false; 6],
            dma: false,
            irq: FunctionIrq::default(),
        });
        // Recompute every multi-function bit.
        let addresses: [Option<PciAddress>; MAX_FUNCTIONS_PER_SANDBOX] =
            core::array::from_fn(|i| self.owned[i].map(|o| o.function.address));
        for o in self.owned.iter_mut().flatten() {
            let a = o.function.address;
            o.multi = addresses
                .iter()
                .flatten()
                .any(|b| *b != a && b.bus == a.bus && b.device == a.device);
        }
        true
    }

    /// Lets function `a` master the bus: the monitor decided its DMA cannot leave the
    /// sandbox (an active IOMMU domain) or the manifest accepts that it may. False when
    /// the sandbox does not own `a`.
    pub fn allow_dma(&mut self, a: PciAddress) -> bool {
        let Some(o) = self.get(a).and_then(|i| self.owned[i].as_mut()) else {
            return false;
        };
        o.dma = true;
        true
    }

    /// Whether function `a` may master the bus.
    pub fn dma_allowed(&self, a: PciAddress) -> bool {
        self.get(a)
            .and_then(|i| self.owned[i])
            .is_some_and(|o| o.dma)
    }

    /// Its functions.
    pub fn functions(&self) -> impl Iterator<Item = &Function> {
        self.owned.iter().flatten().map(|o| &o.function)
    }

    fn get(&self, a: PciAddress) -> Option<usize> {
        self.owned
            .iter()
            .position(|o| o.is_some_and(|o| o.function.address == a))
    }

    /// Reads `size` (1, 2 or 4) bytes at `offset` of function `a`; an access that is not
    /// naturally aligned within its dword, or of another size, reads all ones.
    pub fn read(&mut self, cs: &mut impl ConfigSpace, a: PciAddress, offset: u8, size: u8) -> u32 {
        let ones = lane_mask(size);
        let Some(i) = self.get(a).filter(|_| valid(offset, size)) else {
            return ones;
        };
        let dword = self.read_dword(cs, i, offset & !3);
        (dword >> (8 * u32::from(offset & 3))) & ones
    }

    fn read_dword(&self, cs: &mut impl ConfigSpace, i: usize, reg: u8) -> u32 {
        let Some(o) = self.owned[i] else {
            return u32::MAX;
        };
        let f = o.function;
        match reg {
            HEADER => {
                let v = cs.read(f.address, reg);
                let multi = if o.multi { MULTI_FUNCTION } else { 0 };
                (v & !(0xff << 16)) | u32::from(f.header_type | multi) << 16
            }
            ROM if f.header_type == 0 => 0,
            _ => match bar_index(f, reg) {
                Some(b) if o.sizing[b] => f.bars[b].mask,
                Some(_) => cs.read(f.address, reg),
                None => o.irq.read(reg, cs.read(f.address, reg)),
            },
        }
    }

    /// Quiets every function after the sandbox stopped: bus mastering and MSI off in the
    /// device, INTx disabled unless `intx` (a restart gives the next launch the boot
    /// state, INTx enabled where its line is routed), BAR sizing and the sandbox's MSI
    /// message forgotten.
    pub fn quiesce(&mut self, cs: &mut impl ConfigSpace, intx: bool) {
        for o in self.owned.iter_mut().flatten() {
            let a = o.function.address;
            let command = cs.read(a, COMMAND) as u16 & !COMMAND_BUS_MASTER;
            let command = if intx && o.irq.line.is_some() {
                command & !COMMAND_INTX_DISABLE
            } else {
                command | COMMAND_INTX_DISABLE
            };
            // The status half written as 0 changes nothing (write-one-to-clear bits).
            cs.write(a, COMMAND, u32::from(command));
            o.irq.quiesce(cs, a);
            o.sizing = [false; 6];
        }
    }

    /// Writes `size` (1, 2 or 4) bytes of `value` at `offset` of function `a`, filtered;
    /// returns what it refused, if anything. Other sizes and misaligned accesses are
    /// ignored, as are writes to functions the sandbox does not own.
    pub fn write(
        &mut self,
        cs: &mut impl ConfigSpace,
        a: PciAddress,
        offset: u8,
        size: u8,
        value: u32,
    ) -> Option<Refusal> {
        let i = self.get(a).filter(|_| valid(offset, size))?;
        let o = self.owned[i]?;
        let f = o.function;
        let reg = offset & !3;
        let shift = 8 * u32::from(offset & 3);
        let lanes = lane_mask(size) << shift;
        let value = (value << shift) & lanes;
        if reg == COMMAND {
            if lanes & 0xffff == 0 {
                return None; // the status register: read-only here
            }
            let real = cs.read(a, COMMAND) as u16;
            let wanted = ((u32::from(real) & !lanes) | value) as u16;
            let mut writable = if o.dma {
                COMMAND_WRITABLE | COMMAND_BUS_MASTER
            } else {
                COMMAND_WRITABLE
            };
            let mut forced = 0;
            if o.irq.line.is_none() {
                writable &= !COMMAND_INTX_DISABLE;
                forced |= COMMAND_INTX_DISABLE;
            }
            // Decode may go off, but never on for a space with an unassigned BAR.
            let never_on = unassigned_decode(cs, f) & !real;
            let command = ((real & !writable) | (wanted & writable) | forced) & !never_on;
            cs.write(a, COMMAND, u32::from(command));
            return (wanted & COMMAND_BUS_MASTER != 0 && command & COMMAND_BUS_MASTER == 0)
                .then_some(Refusal::BusMaster(a));
        }
        if bar_index(f, reg).is_none() {
            let owned = self.owned[i].as_mut()?;
            return match owned.irq.write(cs, a, reg, lanes, value, &self.targets) {
                Written::Refused(why) => Some(Refusal::Msi { function: a, why }),
                Written::Done | Written::NotMine => None, // the rest is read-only
            };
        }
        let b = bar_index(f, reg)?;
        let bar = f.bars[b];
        // The dword the sandbox means: its bytes over what the register reads now.
        let current = self.read_dword(cs, i, reg);
        let meant = (current & !lanes) | value;
        let writable = if bar.kind == BarKind::None && bar.mask == 0 {
            0
        } else {
            bar.mask & !type_bits(bar)
        };
        let owned = self.owned[i].as_mut()?;
        if meant & writable == writable {
            owned.sizing[b] = writable != 0;
            return None;
        }
        owned.sizing[b] = false;
        let real = cs.read(a, reg);
        if (meant ^ real) & writable == 0 {
            return None; // its own value back: the end of a sizing
        }
        Some(Refusal::BarMove {
            function: a,
            bar: b as u8,
            value: meant,
        })
    }
}

/// The decode bits (I/O, memory) that would make an implemented BAR of `f` that firmware
/// left unassigned (base 0) decode: such a BAR is not mapped into the sandbox, and
/// hardware has no "off" for it but the command bit, so with the bit on the device
/// claims ports or addresses from 0 up (the legacy PIC, PIT and CMOS ports, low RAM).
fn unassigned_decode(cs: &mut impl ConfigSpace, f: Function) -> u16 {
    let regs: [u32; 6] = core::array::from_fn(|i| cs.read(f.address, BAR0 + 4 * i as u8));
    bar_ranges(&f, regs)
        .filter(|b| b.base == 0)
        .fold(0, |bits, b| {
            bits | match b.space {
                BarSpace::Io => COMMAND_IO,
                BarSpace::Memory => COMMAND_MEMORY,
            }
        })
}

/// Whether an access of `size` bytes at `offset` stays inside one dword and is naturally
/// aligned.
fn valid(offset: u8, size: u8) -> bool {
    matches!(size, 1 | 2 | 4) && offset % size == 0
}

/// The low `size` bytes set.
fn lane_mask(size: u8) -> u32 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        _ => u32::MAX,
    }
}

/// The BAR register `reg` of a type 0 function.
fn bar_index(f: Function, reg: u8) -> Option<usize> {
    (f.header_type == 0 && (BAR0..BAR0 + 24).contains(&reg)).then(|| usize::from((reg - BAR0) / 4))
}

/// The read-only type bits of a BAR (I/O: bits 1:0; memory: 3:0; a 64-bit upper half:
/// none).
fn type_bits(bar: Bar) -> u32 {
    match bar.kind {
        BarKind::Io => 0x3,
        BarKind::Memory32 | BarKind::Memory64 => 0xf,
        BarKind::None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::fake::{bus, FakeBus};
    use crate::pci::{enumerate, CAPABILITIES, CLASS, ID};

    fn at(b: u8, d: u8, f: u8) -> PciAddress {
        PciAddress::new(b, d, f).unwrap()
    }

    /// The test bus, and a space owning the IDE function (00:01.1) and edu (00:03.0),
    /// both with their INTx routed (lines 14 and 11), MSI not set up.
    fn setup() -> (FakeBus, VirtualConfig) {
        use crate::pci_msi::{Capabilities, FunctionIrq};
        let mut b = bus();
        let fs = enumerate(&mut b, 0, 255);
        let mut v = VirtualConfig::new();
        assert!(v.add(*fs.get(at(0, 1, 1)).unwrap()));
        assert!(v.add(*fs.get(at(0, 3, 0)).unwrap()));
        assert!(!v.add(*fs.get(at(0, 3, 0)).unwrap()), "once");
        for (f, line) in [(at(0, 1, 1), 14), (at(0, 3, 0), 11)] {
            let irq = FunctionIrq::new(Capabilities::default(), Some(line));
            assert!(v.set_interrupts(&mut b, f, irq));
        }
        b.writes.clear();
        (b, v)
    }

    #[test]
    fn only_owned_functions_are_seen() {
        let (mut b, mut v) = setup();
        assert_eq!(v.read(&mut b, at(0, 3, 0), ID, 4), 0x11e8_1234);
        assert_eq!(v.read(&mut b, at(0, 1, 1), ID, 2), 0x8086);
        assert_eq!(v.read(&mut b, at(0, 1, 1), 2, 2), 0x7010);
        for other in [
            at(0, 0, 0),
            at(0, 1, 0),
            at(0, 4, 0),
            at(1, 0, 0),
            at(255, 31, 7),
        ] {
            assert_eq!(v.read(&mut b, other, ID, 4), u32::MAX);
            assert_eq!(v.read(&mut b, other, ID, 1), 0xff);
            assert_eq!(v.write(&mut b, other, COMMAND, 2, 0x7), None);
        }
        assert!(b.writes.is_empty(), "nothing reached the bus");
        assert_eq!(
            VirtualConfig::new().read(&mut b, at(0, 3, 0), ID, 4),
            u32::MAX
        );
    }

    #[test]
    fn header_type_multi_function_bit_follows_what_the_sandbox_owns() {
        let (mut b, mut v) = setup();
        // The IDE is function 1 of a multi-function device, but its sibling is not owned.
        assert_eq!(v.read(&mut b, at(0, 1, 1), HEADER + 2, 1), 0x00);
        let fs = enumerate(&mut bus(), 0, 0);
        v.add(*fs.get(at(0, 1, 0)).unwrap());
        assert_eq!(v.read(&mut b, at(0, 1, 1), HEADER + 2, 1), 0x80);
        assert_eq!(v.read(&mut b, at(0, 1, 0), HEADER, 4) >> 16 & 0xff, 0x80);
        assert_eq!(v.read(&mut b, at(0, 3, 0), HEADER + 2, 1), 0x00);
    }

    #[test]
    fn odd_sizes_and_unaligned_offsets_read_ones_and_write_nothing() {
        let (mut b, mut v) = setup();
        let edu = at(0, 3, 0);
        assert_eq!(v.read(&mut b, edu, 1, 2), 0xffff, "word at an odd offset");
        assert_eq!(v.read(&mut b, edu, 2, 4), u32::MAX, "dword across two");
        assert_eq!(v.read(&mut b, edu, 0, 3), 0xffff_ffff, "three bytes");
        assert_eq!(v.read(&mut b, edu, 0, 0), u32::MAX);
        assert_eq!(
            v.read(&mut b, edu, 0xff, 1),
            0x00,
            "the last byte is in range"
        );
        assert_eq!(v.write(&mut b, edu, COMMAND + 1, 2, 0x0707), None);
        assert_eq!(v.write(&mut b, edu, COMMAND, 8, 0x7), None);
        assert!(b.writes.is_empty());
    }

    #[test]
    fn command_allows_decode_and_refuses_bus_mastering() {
        let (mut b, mut v) = setup();
        let edu = at(0, 3, 0);
        assert_eq!(v.write(&mut b, edu, COMMAND, 2, 0x3), None);
        assert_eq!(b.reg(edu, COMMAND) & 0xffff, 0x3);
        assert_eq!(
            v.write(&mut b, edu, COMMAND, 2, 0x7),
            Some(Refusal::BusMaster(edu))
        );
        assert_eq!(b.reg(edu, COMMAND) & 0xffff, 0x3, "bus master stays off");
        assert_eq!(v.read(&mut b, edu, COMMAND, 2), 0x3);
        // A byte write, a dword write touching the status half, other bits (SERR, 8).
        assert_eq!(
            v.write(&mut b, edu, COMMAND, 1, 0x4),
            Some(Refusal::BusMaster(edu))
        );
        assert_eq!(b.reg(edu, COMMAND) & 0xffff, 0x0, "byte 0 = 4: decode off");
        assert_eq!(v.write(&mut b, edu, COMMAND, 4, 0xffff_0501), None);
        assert_eq!(
            b.reg(edu, COMMAND),
            0x0010_0401,
            "I/O and INTx-disable; SERR and status kept"
        );
        assert_eq!(v.write(&mut b, edu, COMMAND + 2, 2, 0xffff), None, "status");
        assert_eq!(b.reg(edu, COMMAND), 0x0010_0401);
    }

    #[test]
    fn decode_stays_off_for_a_space_with_an_unassigned_bar() {
        let (mut b, mut v) = setup();
        let (edu, ide) = (at(0, 3, 0), at(0, 1, 1));
        b.functions[2].regs[8] = 0x0000_0001; // IDE BAR4: I/O, left at 0
        assert_eq!(v.write(&mut b, ide, COMMAND, 2, 0x0003), None);
        assert_eq!(b.reg(ide, COMMAND) & 0xffff, 0x0002, "memory only");
        assert_eq!(v.write(&mut b, ide, COMMAND, 1, 0x01), None);
        assert_eq!(b.reg(ide, COMMAND) & 0xffff, 0x0000);
        b.functions[3].regs[4] = 0x0000_0000; // edu BAR0: memory, left at 0
        assert_eq!(v.write(&mut b, edu, COMMAND, 4, 0x0000_0003), None);
        assert_eq!(b.reg(edu, COMMAND) & 0xffff, 0x0001, "I/O only");
        // A 64-bit BAR whose low half is 0 but lies above 4 GiB is assigned.
        let fs = enumerate(&mut bus(), 0, 0);
        let mut w = VirtualConfig::new();
        let wide = at(0, 4, 0);
        assert!(w.add(*fs.get(wide).unwrap()));
        let irq = crate::pci_msi::FunctionIrq::new(Default::default(), Some(10));
        assert!(w.set_interrupts(&mut b, wide, irq));
        b.functions[4].regs[4] = 0x0000_000c;
        b.functions[4].regs[5] = 0x0000_0001;
        assert_eq!(w.write(&mut b, wide, COMMAND, 2, 0x0002), None);
        assert_eq!(b.reg(wide, COMMAND) & 0xffff, 0x0002);
        b.functions[4].regs[5] = 0;
        assert_eq!(w.write(&mut b, wide, COMMAND, 2, 0x0000), None);
        assert_eq!(w.write(&mut b, wide, COMMAND, 2, 0x0002), None);
        assert_eq!(b.reg(wide, COMMAND) & 0xffff, 0x0000, "at 0 now");
    }

    #[test]
    fn bus_mastering_only_where_the_monitor_allows_dma() {
        let (mut b, mut v) = setup();
        let (edu, ide) = (at(0, 3, 0), at(0, 1, 1));
        assert!(!v.dma_allowed(edu));
        assert!(v.allow_dma(edu));
        assert!(!v.allow_dma(at(0, 4, 0)), "not its function");
        assert!(v.dma_allowed(edu) && !v.dma_allowed(ide));
        assert_eq!(v.write(&mut b, edu, COMMAND, 2, 0x6), None);
        assert_eq!(
            b.reg(edu, COMMAND) & 0xffff,
            0x6,
            "memory decode and bus master"
        );
        assert_eq!(v.read(&mut b, edu, COMMAND, 2), 0x6);
        assert_eq!(v.write(&mut b, edu, COMMAND, 1, 0x2), None);
        assert_eq!(b.reg(edu, COMMAND) & 0xffff, 0x2, "and off again");
        assert_eq!(
            v.write(&mut b, ide, COMMAND, 2, 0x5),
            Some(Refusal::BusMaster(ide)),
            "the other function still may not"
        );
        assert_eq!(b.reg(ide, COMMAND) & 0xffff, 0x1);
        // Bits the sandbox may never set stay as they are, DMA or not (SERR).
        assert_eq!(v.write(&mut b, edu, COMMAND, 2, 0x0106), None);
        assert_eq!(b.reg(edu, COMMAND) & 0xffff, 0x6);
    }

    #[test]
    fn bar_sizing_reads_the_mask_and_never_touches_the_real_bar() {
        let (mut b, mut v) = setup();
        let (edu, ide) = (at(0, 3, 0), at(0, 1, 1));
        let bar4 = BAR0 + 16;
        assert_eq!(v.read(&mut b, edu, BAR0, 4), 0xfea0_0000);
        assert_eq!(v.write(&mut b, edu, BAR0, 4, u32::MAX), None);
        assert_eq!(v.read(&mut b, edu, BAR0, 4), 0xfff0_0000, "1 MiB");
        assert_eq!(v.read(&mut b, edu, BAR0 + 2, 2), 0xfff0);
        assert_eq!(v.write(&mut b, edu, BAR0, 4, 0xfea0_0000), None, "restored");
        assert_eq!(v.read(&mut b, edu, BAR0, 4), 0xfea0_0000);
        assert_eq!(v.write(&mut b, ide, bar4, 4, u32::MAX), None);
        assert_eq!(v.read(&mut b, ide, bar4, 4), 0xffff_fff1, "16 I/O ports");
        assert_eq!(v.write(&mut b, ide, bar4, 4, 0xc001), None);
        // An unimplemented BAR reads 0 while "sized" too.
        assert_eq!(v.write(&mut b, edu, BAR0 + 4, 4, u32::MAX), None);
        assert_eq!(v.read(&mut b, edu, BAR0 + 4, 4), 0);
        assert!(b.writes.is_empty(), "no BAR write reached the bus");
        assert_eq!(b.reg(edu, BAR0), 0xfea0_0000);
    }

    #[test]
    fn bar_moves_are_refused() {
        let (mut b, mut v) = setup();
        let edu = at(0, 3, 0);
        assert_eq!(
            v.write(&mut b, edu, BAR0, 4, 0x1000_0000),
            Some(Refusal::BarMove {
                function: edu,
                bar: 0,
                value: 0x1000_0000
            })
        );
        assert_eq!(v.read(&mut b, edu, BAR0, 4), 0xfea0_0000);
        // A byte of a move, and a move while sizing.
        assert!(v.write(&mut b, edu, BAR0 + 3, 1, 0x10).is_some());
        v.write(&mut b, edu, BAR0, 4, u32::MAX);
        assert!(v.write(&mut b, edu, BAR0, 4, 0x2000_0000).is_some());
        assert_eq!(v.read(&mut b, edu, BAR0, 4), 0xfea0_0000, "sizing ended");
        assert!(b.writes.is_empty());
    }

    #[test]
    fn everything_else_is_read_only_and_the_rom_is_hidden() {
        let (mut b, mut v) = setup();
        let edu = at(0, 3, 0);
        assert_eq!(v.read(&mut b, edu, CAPABILITIES, 1), 0x40);
        assert_eq!(
            v.read(&mut b, edu, 0x40, 1),
            0x05,
            "the MSI capability, read through"
        );
        for (offset, size) in [
            (ID, 4),
            (CLASS, 4),
            (HEADER, 4),
            (CAPABILITIES, 1),
            (0x40, 4),
            (0x3c, 1),
            (ROM, 4),
            (0xfc, 4),
        ] {
            assert_eq!(v.write(&mut b, edu, offset, size, 0x1234_5678), None);
        }
        assert!(b.writes.is_empty());
        b.functions[3].regs[12] = 0xfff0_0001;
        assert_eq!(v.read(&mut b, edu, ROM, 4), 0);
    }

    #[test]
    fn msi_goes_through_the_translation_and_the_line_is_the_monitors() {
        use crate::pci_msi::{capabilities, FunctionIrq, MsiRefusal, Targets};
        let (mut b, mut v) = setup();
        let edu = at(0, 3, 0);
        b.functions[3].regs[15] = 0x0000_010b;
        let caps = capabilities(&mut b, edu);
        assert!(caps.msi.is_some());
        v.set_targets(Targets::of(&[5]));
        b.functions[3].regs[16] |= 1 << 16; // firmware left MSI on
        assert!(v.set_interrupts(&mut b, edu, FunctionIrq::new(caps, Some(11))));
        assert_eq!(
            b.reg(edu, 0x40) >> 16 & 1,
            0,
            "off until the sandbox enables it"
        );
        assert!(!v.set_interrupts(&mut b, at(0, 4, 0), FunctionIrq::default()));
        assert_eq!(v.read(&mut b, edu, 0x3c, 1), 11);
        assert!(v.set_interrupts(&mut b, at(0, 1, 1), FunctionIrq::default()));
        assert_eq!(v.read(&mut b, at(0, 1, 1), 0x3c, 1), 0xff, "no route: 0xff");
        // 32-bit MSI (the fake's): address at 0x44, data at 0x48.
        assert_eq!(v.write(&mut b, edu, 0x44, 4, 0xfee0_0000), None);
        assert_eq!(
            v.write(&mut b, edu, 0x48, 2, 0x0461),
            None,
            "off: not reported"
        );
        assert_eq!(
            v.write(&mut b, edu, 0x42, 2, 1),
            Some(Refusal::Msi {
                function: edu,
                why: MsiRefusal::DeliveryMode(4)
            })
        );
        assert_eq!(b.reg(edu, 0x40) >> 16 & 1, 0);
        assert_eq!(v.write(&mut b, edu, 0x49, 1, 0), None, "fixed now");
        assert_eq!(b.reg(edu, 0x40) >> 16 & 1, 1);
        assert_eq!(b.reg(edu, 0x44), 0xfee0_5000);
        assert_eq!(v.read(&mut b, edu, 0x44, 4), 0xfee0_0000);
        assert_eq!(v.write(&mut b, edu, 0x3c, 1, 3), None);
        assert_eq!(
            v.read(&mut b, edu, 0x3c, 1),
            11,
            "the line cannot be rewritten"
        );
    }

    #[test]
    fn an_unrouted_function_s_intx_stays_disabled() {
        use crate::pci_msi::{capabilities, FunctionIrq};
        let (mut b, mut v) = setup();
        let (edu, ide) = (at(0, 3, 0), at(0, 1, 1));
        let caps = capabilities(&mut b, edu);
        // The IDE's line went to another sandbox (not routed); edu's is routed.
        assert!(v.set_interrupts(&mut b, ide, FunctionIrq::new(caps, None)));
        assert!(v.set_interrupts(&mut b, edu, FunctionIrq::new(caps, Some(11))));
        assert_eq!(b.reg(ide, COMMAND) & 0xffff, 0x0400, "disabled at boot");
        assert_eq!(b.reg(edu, COMMAND) & 0xffff, 0x0000);
        // Clearing INTx-disable: a 2-byte, a 4-byte and a byte write of the upper byte.
        assert_eq!(v.write(&mut b, ide, COMMAND, 2, 0x0001), None);
        assert_eq!(v.write(&mut b, ide, COMMAND, 4, 0x0000_0000), None);
        assert_eq!(v.write(&mut b, ide, COMMAND + 1, 1, 0x00), None);
        assert_eq!(b.reg(ide, COMMAND) & 0xffff, 0x0400, "INTx stays disabled");
        assert_eq!(v.write(&mut b, ide, COMMAND, 2, 0x0001), None);
        assert_eq!(b.reg(ide, COMMAND) & 0xffff, 0x0401, "decode follows");
        assert_eq!(v.write(&mut b, edu, COMMAND, 2, 0x0000), None);
        assert_eq!(
            b.reg(edu, COMMAND) & 0xffff,
            0x0000,
            "routed: its own choice"
        );
        // A restart gives INTx back to the routed function only.
        v.quiesce(&mut b, true);
        assert_eq!(b.reg(ide, COMMAND) & 0xffff, 0x0401);
        assert_eq!(b.reg(edu, COMMAND) & 0xffff, 0x0000);
    }

    #[test]
    fn a_stopped_sandbox_s_functions_are_quiet() {
        let (mut b, mut v) = setup();
        let edu = at(0, 3, 0);
        b.functions[3].regs[1] = 0x0010_0007; // decode and bus master on (firmware)
        v.write(&mut b, edu, BAR0, 4, u32::MAX);
        v.quiesce(&mut b, false);
        assert_eq!(
            b.reg(edu, COMMAND),
            0x0010_0403,
            "bus master off, INTx disabled"
        );
        assert_eq!(
            v.read(&mut b, edu, BAR0, 4),
            0xfea0_0000,
            "sizing forgotten"
        );
        v.quiesce(&mut b, true);
        assert_eq!(b.reg(edu, COMMAND), 0x0010_0003, "INTx back for a restart");
    }
}
