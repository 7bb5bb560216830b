//! Where the BARs of a sandbox's PCI functions appear to it. BARs keep the address
//! firmware gave them (the virtual configuration space refuses moves), and a memory BAR
//! is mapped guest-physical == host-physical, uncached, into its owner's EPT/NPT; an I/O
//! BAR's ports are passed through in its I/O bitmap / IOPM.
//!
//! A BAR is never mapped over what else the sandbox's guest-physical space holds (its
//! RAM, the channel window, the calibration page) nor over the interrupt controllers'
//! range, nor over host RAM or the ECAM window (a BAR there is firmware's mistake or an
//! attack), and a
//! memory BAR smaller than a page (mapped as its whole page) never shares that page with
//! another function's BAR. I/O BARs never cover the configuration ports (0xCF8-0xCFF),
//! the console's, another sandbox's port devices or another function's I/O BAR. A
//! function with a BAR that breaks a rule is not given (the monitor logs which rule).
//!
//! BAR encoding: PCI Local Bus Specification 3.0, 6.2.5.1.

use crate::ept::GPA_LIMIT;
use crate::pci::{BarKind, Function};
use crate::placement::Range;
use quest_abi::layout::{
    CALIBRATION_GPA, CALIBRATION_SIZE, CHANNEL_WINDOW_GPA, CHANNEL_WINDOW_SIZE,
};
use quest_abi::{PciAddress, PCI_CONFIG_PORTS};

/// A page: the granule of a memory window.
pub const PAGE: u64 = 0x1000;
/// Most memory windows one sandbox has.
pub const MAX_MEMORY_WINDOWS: usize = 16;
/// Most I/O windows one sandbox has.
pub const MAX_IO_WINDOWS: usize = 16;
/// The local APIC's and I/O APICs' (and HPET's) range on x86: never a sandbox's.
pub const INTERRUPT_CONTROLLERS: (u64, u64) = (0xfec0_0000, 0xff00_0000);

/// What a BAR decodes, where firmware put it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarSpace {
    /// Memory space.
    Memory,
    /// I/O space.
    Io,
}

/// One implemented BAR at its current address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarRange {
    /// Which register (a 64-bit BAR: its lower half).
    pub bar: u8,
    /// Memory or I/O.
    pub space: BarSpace,
    /// Its base address (0: firmware did not assign it).
    pub base: u64,
    /// Its size in bytes (a power of two from the boot-time probe).
    pub size: u64,
}

impl BarRange {
    /// `[start, end)` of the pages a memory BAR touches; `None` if it wraps.
    pub fn pages(&self) -> Option<(u64, u64)> {
        let end = self.base.checked_add(self.size)?.checked_add(PAGE - 1)? & !(PAGE - 1);
        Some((self.base & !(PAGE - 1), end))
    }
}

/// The implemented BARs of `f` at the values `regs` its six BAR registers read now
/// (64-bit BARs joined, upper halves skipped).
pub fn bar_ranges(f: &Function, regs: [u32; 6]) -> impl Iterator<Item = BarRange> + '_ {
    (0..6usize).filter_map(move |i| {
        let bar = f.bars[i];
        let (space, base) = match bar.kind {
            BarKind::None => return None,
            BarKind::Io => (BarSpace::Io, u64::from(regs[i] & !3)),
            BarKind::Memory32 => (BarSpace::Memory, u64::from(regs[i] & !0xf)),
            BarKind::Memory64 => {
                let high = regs.get(i + 1).copied().unwrap_or(0);
                (
                    BarSpace::Memory,
                    u64::from(high) << 32 | u64::from(regs[i] & !0xf),
                )
            }
        };
        let size = bar.size(f.bars.get(i + 1));
        (size != 0).then_some(BarRange {
            bar: i as u8,
            space,
            base,
            size,
        })
    })
}

/// Why a BAR is not mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Its range wraps or leaves the 48-bit guest-physical (or 16-bit port) space.
    OutOfRange,
    /// It overlaps the sandbox's RAM.
    OverRam,
    /// It overlaps the channel window.
    OverChannels,
    /// It overlaps the calibration page.
    OverCalibration,
    /// It overlaps the interrupt controllers' range.
    OverInterruptControllers,
    /// It overlaps host RAM in the firmware's memory map.
    OverHostRam,
    /// It overlaps MMIO of the monitor's (the ECAM window).
    OverMonitorMmio,
    /// Its page (or ports) holds a BAR of another function.
    Shared(PciAddress),
    /// Its ports include the configuration ports 0xCF8-0xCFF.
    ConfigPorts,
    /// Its ports include the console's.
    Console,
    /// Its ports include another sandbox's port device.
    OtherSandboxPorts,
    /// Not an endpoint: a bridge (header type 1), a CardBus bridge (2) or unknown.
    NotEndpoint(u8),
}

impl core::fmt::Display for Refusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::OutOfRange => f.write_str("it is out of range"),
            Self::OverRam => f.write_str("it would lie over the sandbox's RAM"),
            Self::OverChannels => f.write_str("it would lie over the channel window"),
            Self::OverCalibration => f.write_str("it would lie over the calibration page"),
            Self::OverInterruptControllers => {
                f.write_str("it would lie over the interrupt controllers (0xfec00000-0xfeffffff)")
            }
            Self::OverHostRam => f.write_str("it lies over host RAM"),
            Self::OverMonitorMmio => {
                f.write_str("it lies over the monitor's MMIO (the ECAM configuration window)")
            }
            Self::Shared(other) => write!(f, "it shares a page or ports with a BAR of {other}"),
            Self::ConfigPorts => f.write_str("its ports include 0xcf8-0xcff"),
            Self::Console => f.write_str("its ports include the console's"),
            Self::OtherSandboxPorts => f.write_str("its ports include another sandbox's device"),
            Self::NotEndpoint(t) => write!(
                f,
                "header type {t} is a bridge's, whose decode and bus mastering reach every device behind it"
            ),
        }
    }
}

/// Whether `[a0, a1)` and `[b0, b1)` overlap.
fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// What a sandbox's BAR must not meet.
#[derive(Clone, Copy, Debug)]
pub struct Keepout<'a> {
    /// The sandbox's RAM size (RAM is guest-physical `[0, ram_size)`).
    pub ram_size: u64,
    /// Host RAM (usable areas of the firmware's map).
    pub host_ram: &'a [Range],
    /// MMIO only the monitor reaches, outside [`INTERRUPT_CONTROLLERS`] (the ECAM
    /// window: every function's configuration space).
    pub monitor_mmio: &'a [Range],
    /// The console's first port (it has 8).
    pub console_port: u16,
    /// Other sandboxes' port devices, `[first, last]` each.
    pub foreign_ports: &'a [(u16, u16)],
}

/// Whether `f` may be given to a sandbox at all: endpoints (header type 0) only. A
/// bridge forwards its secondary side's memory and I/O windows, configuration cycles and
/// DMA; the one command register a sandbox may write would turn decode and bus mastering
/// off (or on) for every device behind it, other sandboxes' included.
pub fn endpoint(f: &Function) -> Result<(), Refusal> {
    match f.header_type {
        0 => Ok(()),
        t => Err(Refusal::NotEndpoint(t)),
    }
}

/// Checks BAR `b` of function `owner` against `keepout` and against `others`: every BAR
/// of every function on the bus (those of `owner` are skipped). Returns the window to
/// map: memory pages `[start, end)` or ports `[first, last + 1)`.
pub fn check(
    owner: PciAddress,
    b: &BarRange,
    keepout: &Keepout<'_>,
    others: impl Iterator<Item = (PciAddress, BarRange)>,
) -> Result<(u64, u64), Refusal> {
    match b.space {
        BarSpace::Memory => check_memory(owner, b, keepout, others),
        BarSpace::Io => check_io(owner, b, keepout, others),
    }
}

fn check_memory(
    owner: PciAddress,
    b: &BarRange,
    keepout: &Keepout<'_>,
    others: impl Iterator<Item = (PciAddress, BarRange)>,
) -> Result<(u64, u64), Refusal> {
    let pages = b.pages().ok_or(Refusal::OutOfRange)?;
    if pages.1 > GPA_LIMIT {
        return Err(Refusal::OutOfRange);
    }
    let fixed = [
        ((0, keepout.ram_size), Refusal::OverRam),
        (
            (CHANNEL_WINDOW_GPA, CHANNEL_WINDOW_GPA + CHANNEL_WINDOW_SIZE),
            Refusal::OverChannels,
        ),
        (
            (CALIBRATION_GPA, CALIBRATION_GPA + CALIBRATION_SIZE),
            Refusal::OverCalibration,
        ),
        (INTERRUPT_CONTROLLERS, Refusal::OverInterruptControllers),
    ];
    if let Some((_, why)) = fixed.iter().find(|(r, _)| overlaps(pages, *r)) {
        return Err(*why);
    }
    if keepout
        .host_ram
        .iter()
        .any(|r| overlaps(pages, (r.start, r.end)))
    {
        return Err(Refusal::OverHostRam);
    }
    if keepout
        .monitor_mmio
        .iter()
        .any(|r| overlaps(pages, (r.start, r.end)))
    {
        return Err(Refusal::OverMonitorMmio);
    }
    for (f, o) in others.filter(|(f, o)| *f != owner && o.space == BarSpace::Memory) {
        // An unassigned BAR (0) decodes nothing until moved, and moves are refused.
        if o.base != 0 && o.pages().is_none_or(|p| overlaps(pages, p)) {
            return Err(Refusal::Shared(f));
        }
    }
    Ok(pages)
}

fn check_io(
    owner: PciAddress,
    b: &BarRange,
    keepout: &Keepout<'_>,
    others: impl Iterator<Item = (PciAddress, BarRange)>,
) -> Result<(u64, u64), Refusal> {
    let end = b
        .base
        .checked_add(b.size)
        .filter(|&e| e <= 0x1_0000)
        .ok_or(Refusal::OutOfRange)?;
    let ports = (b.base, end);
    let span = |first: u16, last: u16| (u64::from(first), u64::from(last) + 1);
    if overlaps(ports, span(PCI_CONFIG_PORTS.0, PCI_CONFIG_PORTS.1)) {
        return Err(Refusal::ConfigPorts);
    }
    let console = keepout.console_port;
    if overlaps(ports, span(console, console.saturating_add(7))) {
        return Err(Refusal::Console);
    }
    if keepout
        .foreign_ports
        .iter()
        .any(|&(first, last)| overlaps(ports, span(first, last)))
    {
        return Err(Refusal::OtherSandboxPorts);
    }
    for (f, o) in others.filter(|(f, o)| *f != owner && o.space == BarSpace::Io) {
        if o.base != 0 && overlaps(ports, (o.base, o.base.saturating_add(o.size))) {
            return Err(Refusal::Shared(f));
        }
    }
    Ok(ports)
}

/// A sandbox's memory window: `[base, base + size)`, page aligned, guest-physical ==
/// host-physical, uncached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryWindow {
    /// First byte (page aligned).
    pub base: u64,
    /// Size (whole pages).
    pub size: u64,
}

/// A sandbox's I/O window: ports `first..=last`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoWindow {
    /// First port.
    pub first: u16,
    /// Last port (inclusive).
    pub last: u16,
}

/// Every window of one sandbox.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeviceWindows {
    memory: [MemoryWindow; MAX_MEMORY_WINDOWS],
    memory_count: usize,
    io: [IoWindow; MAX_IO_WINDOWS],
    io_count: usize,
}

impl DeviceWindows {
    /// None.
    pub const fn new() -> Self {
        Self {
            memory: [MemoryWindow { base: 0, size: 0 }; MAX_MEMORY_WINDOWS],
            memory_count: 0,
            io: [IoWindow { first: 0, last: 0 }; MAX_IO_WINDOWS],
            io_count: 0,
        }
    }

    /// The memory windows (disjoint).
    pub fn memory(&self) -> &[MemoryWindow] {
        &self.memory[..self.memory_count]
    }

    /// The I/O windows.
    pub fn io(&self) -> &[IoWindow] {
        &self.io[..self.io_count]
    }

    /// Whether the windows `new` (from [`check`]; `space` each) fit beside these; all of
    /// them are added or none. Memory windows that overlap one already here (two BARs of
    /// one function in one page) are joined.
    pub fn add(&mut self, new: &[(BarSpace, (u64, u64))]) -> bool {
        let mut next = *self;
        for &(space, (start, end)) in new {
            let added = match space {
                BarSpace::Memory => next.add_memory(start, end),
                BarSpace::Io => next.add_io(start, end),
            };
            if !added {
                return false;
            }
        }
        *self = next;
        true
    }

    fn add_memory(&mut self, mut start: u64, mut end: u64) -> bool {
        // Join every window this one meets, then insert the union.
        let mut i = 0;
        while i < self.memory_count {
            let w = self.memory[i];
            if overlaps((start, end), (w.base, w.base + w.size)) {
                start = start.min(w.base);
                end = end.max(w.base + w.size);
                self.memory_count -= 1;
                self.memory[i] = self.memory[self.memory_count];
            } else {
                i += 1;
            }
        }
        let Some(slot) = self.memory.get_mut(self.memory_count) else {
            return false;
        };
        *slot = MemoryWindow {
            base: start,
            size: end - start,
        };
        self.memory_count += 1;
        true
    }

    fn add_io(&mut self, start: u64, end: u64) -> bool {
        let (Ok(first), Ok(last)) = (u16::try_from(start), u16::try_from(end - 1)) else {
            return false;
        };
        let Some(slot) = self.io.get_mut(self.io_count) else {
            return false;
        };
        *slot = IoWindow { first, last };
        self.io_count += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::enumerate;
    use crate::pci::fake::bus;
    use crate::pci::BarKind;
    use std::vec::Vec;

    fn at(b: u8, d: u8, f: u8) -> PciAddress {
        PciAddress::new(b, d, f).unwrap()
    }

    const KEEPOUT: Keepout<'static> = Keepout {
        ram_size: 64 << 20,
        host_ram: &[
            Range {
                start: 0,
                end: 0x8000_0000,
            },
            Range {
                start: 0x1_0000_0000,
                end: 0x2_0000_0000,
            },
        ],
        monitor_mmio: &[Range {
            start: 0xb000_0000,
            end: 0xc000_0000,
        }],
        console_port: 0x3f8,
        foreign_ports: &[(0x2f8, 0x2ff)],
    };

    fn mem(bar: u8, base: u64, size: u64) -> BarRange {
        BarRange {
            bar,
            space: BarSpace::Memory,
            base,
            size,
        }
    }

    fn io(bar: u8, base: u64, size: u64) -> BarRange {
        BarRange {
            bar,
            space: BarSpace::Io,
            base,
            size,
        }
    }

    fn check_alone(b: BarRange) -> Result<(u64, u64), Refusal> {
        check(at(0, 3, 0), &b, &KEEPOUT, core::iter::empty())
    }

    #[test]
    fn ranges_come_from_the_registers_and_the_boot_masks() {
        let mut b = bus();
        let fs = enumerate(&mut b, 0, 255);
        let regs =
            |a: PciAddress| -> [u32; 6] { core::array::from_fn(|i| b.reg(a, 0x10 + 4 * i as u8)) };
        let edu = fs.get(at(0, 3, 0)).unwrap();
        let r: Vec<_> = bar_ranges(edu, regs(edu.address)).collect();
        assert_eq!(r, [mem(0, 0xfea0_0000, 1 << 20)]);
        let ide = fs.get(at(0, 1, 1)).unwrap();
        let r: Vec<_> = bar_ranges(ide, regs(ide.address)).collect();
        assert_eq!(r, [io(4, 0xc000, 16)]);
        // A 64-bit BAR above 4 GiB: the upper half is part of the base, not a BAR.
        let wide = fs.get(at(0, 4, 0)).unwrap();
        let r: Vec<_> = bar_ranges(wide, [0x0000_400c, 0x8, 0, 0, 0, 0]).collect();
        assert_eq!(r, [mem(0, 0x8_0000_4000, 16 << 10)]);
    }

    #[test]
    fn memory_bars_map_whole_pages_outside_everything_else() {
        assert_eq!(
            check_alone(mem(0, 0xfebf_0000, 0x1000)),
            Ok((0xfebf_0000, 0xfebf_1000))
        );
        // Small and unaligned: its page.
        assert_eq!(
            check_alone(mem(1, 0xfebf_1800, 0x100)),
            Ok((0xfebf_1000, 0xfebf_2000))
        );
        // Across a page boundary: both pages.
        assert_eq!(
            check_alone(mem(1, 0xfebf_1f80, 0x100)),
            Ok((0xfebf_1000, 0xfebf_3000))
        );
        // Above 4 GiB (not in host RAM).
        assert_eq!(
            check_alone(mem(0, 0x8_0000_0000, 0x10_0000)),
            Ok((0x8_0000_0000, 0x8_0010_0000))
        );
        for (b, why) in [
            (mem(0, 0x10_0000, 0x1000), Refusal::OverRam),
            (mem(0, 0x3ff_f000, 0x2000), Refusal::OverRam),
            (
                mem(0, CHANNEL_WINDOW_GPA + 0x1000, 0x1000),
                Refusal::OverChannels,
            ),
            (mem(0, CALIBRATION_GPA, 0x1000), Refusal::OverCalibration),
            (
                mem(0, 0xfee0_0000, 0x1000),
                Refusal::OverInterruptControllers,
            ),
            (
                mem(0, 0xfe00_0000, 0x100_0000),
                Refusal::OverInterruptControllers,
            ),
            (mem(0, 0x7fff_f000, 0x1000), Refusal::OverHostRam),
            (mem(0, 0xbfff_f000, 0x1000), Refusal::OverMonitorMmio),
            (mem(0, 0xa000_0000, 0x1000_0001), Refusal::OverMonitorMmio),
            (mem(0, 0x1_8000_0000, 0x1000), Refusal::OverHostRam),
            (mem(0, GPA_LIMIT - 0x1000, 0x2000), Refusal::OutOfRange),
            (mem(0, u64::MAX - 0xfff, 0x1000), Refusal::OutOfRange),
        ] {
            assert_eq!(check_alone(b), Err(why), "{b:x?}");
        }
    }

    #[test]
    fn a_page_shared_with_another_function_is_refused() {
        let owner = at(0, 3, 0);
        let other = at(0, 4, 0);
        let small = mem(0, 0xfebf_1000, 0x100);
        let neighbour = mem(2, 0xfebf_1800, 0x100);
        let far = mem(0, 0xfebf_2000, 0x1000);
        let own_second = mem(1, 0xfebf_1100, 0x100);
        let list = [
            (owner, own_second),
            (other, far),
            (owner, small),
            (at(0, 5, 0), mem(0, 0, 0x1000)),
        ];
        let all = || list.iter().copied();
        assert_eq!(
            check(owner, &small, &KEEPOUT, all()),
            Ok((0xfebf_1000, 0xfebf_2000)),
            "its own BAR and an unassigned one do not count"
        );
        let with_neighbour = [(other, neighbour)];
        assert_eq!(
            check(owner, &small, &KEEPOUT, with_neighbour.iter().copied()),
            Err(Refusal::Shared(other))
        );
        // A bogus size that wraps counts as overlapping.
        let wraps = [(other, mem(0, !0xfff, 0x2000))];
        assert_eq!(
            check(owner, &small, &KEEPOUT, wraps.iter().copied()),
            Err(Refusal::Shared(other))
        );
    }

    #[test]
    fn io_bars_keep_off_the_config_ports_the_console_and_others() {
        assert_eq!(check_alone(io(4, 0xc000, 16)), Ok((0xc000, 0xc010)));
        assert_eq!(check_alone(io(4, 0xfff0, 16)), Ok((0xfff0, 0x1_0000)));
        for (b, why) in [
            (io(0, 0xcf8, 8), Refusal::ConfigPorts),
            (io(0, 0xcf0, 16), Refusal::ConfigPorts),
            (io(0, 0xcfc, 4), Refusal::ConfigPorts),
            (io(0, 0x3f8, 8), Refusal::Console),
            (io(0, 0x3f0, 16), Refusal::Console),
            (io(0, 0x2f8, 8), Refusal::OtherSandboxPorts),
            (io(0, 0xfff8, 16), Refusal::OutOfRange),
        ] {
            assert_eq!(check_alone(b), Err(why), "{b:x?}");
        }
        let other = [(at(0, 1, 1), io(4, 0xc008, 8))];
        assert_eq!(
            check(
                at(0, 3, 0),
                &io(0, 0xc000, 16),
                &KEEPOUT,
                other.iter().copied()
            ),
            Err(Refusal::Shared(at(0, 1, 1)))
        );
    }

    #[test]
    fn bridges_are_never_given() {
        let mut b = bus();
        b.add((0, 5, 0), 0x0001_1b36, 1, [(0, 0); 6]); // a PCI-PCI bridge
        b.add((0, 6, 0), 0x0002_1b36, 0x82, [(0, 0); 6]); // CardBus, multi-function
        let fs = enumerate(&mut b, 0, 0);
        assert_eq!(endpoint(fs.get(at(0, 3, 0)).unwrap()), Ok(()));
        assert_eq!(
            endpoint(fs.get(at(0, 5, 0)).unwrap()),
            Err(Refusal::NotEndpoint(1))
        );
        assert_eq!(
            endpoint(fs.get(at(0, 6, 0)).unwrap()),
            Err(Refusal::NotEndpoint(2))
        );
    }

    #[test]
    fn a_page_shared_with_a_bridge_s_own_bar_is_refused() {
        let mut b = bus();
        // A PCI-PCI bridge with a 256-byte memory BAR0 (as QEMU's pci-bridge, SHPC) in
        // the page of a small BAR of edu's, and a 64-bit BAR of another bridge that
        // must not run into the bridge's registers after BAR1.
        b.add(
            (0, 5, 0),
            0x0001_1b36,
            1,
            [
                (0xffff_ff00, 0xfebf_1100),
                (0, 0),
                (0, 0),
                (0, 0),
                (0, 0),
                (0, 0),
            ],
        );
        b.add(
            (0, 6, 0),
            0x0001_1b36,
            1,
            [
                (0, 0),
                (0xffff_c00c, 0xfeb8_000c),
                (0, 0),
                (0, 0),
                (0, 0),
                (0, 0),
            ],
        );
        b.functions[3].bar_masks[0] = 0xffff_ff00;
        b.functions[3].regs[4] = 0xfebf_1000;
        let fs = enumerate(&mut b, 0, 0);
        let bridge = fs.get(at(0, 5, 0)).unwrap();
        assert_eq!(bridge.bars[0].kind, BarKind::Memory32);
        let other = fs.get(at(0, 6, 0)).unwrap();
        assert_eq!(
            other.bars[1].kind,
            BarKind::Memory32,
            "no upper half in 0x18"
        );
        assert_eq!(other.bars[2].kind, BarKind::None, "bus numbers are no BAR");
        let regs =
            |a: PciAddress| -> [u32; 6] { core::array::from_fn(|i| b.reg(a, 0x10 + 4 * i as u8)) };
        let all: Vec<_> = fs
            .iter()
            .flat_map(|g| bar_ranges(g, regs(g.address)).map(move |r| (g.address, r)))
            .collect();
        let edu = at(0, 3, 0);
        let small = mem(0, 0xfebf_1000, 0x100);
        assert_eq!(
            check(edu, &small, &KEEPOUT, all.iter().copied()),
            Err(Refusal::Shared(at(0, 5, 0)))
        );
    }

    #[test]
    fn windows_join_within_a_function_and_are_all_or_nothing() {
        let mut w = DeviceWindows::new();
        assert!(w.add(&[
            (BarSpace::Memory, (0xfebf_1000, 0xfebf_2000)),
            (BarSpace::Memory, (0xfebf_1000, 0xfebf_2000)),
            (BarSpace::Io, (0xc000, 0xc010)),
        ]));
        assert_eq!(
            w.memory(),
            [MemoryWindow {
                base: 0xfebf_1000,
                size: 0x1000
            }]
        );
        assert_eq!(
            w.io(),
            [IoWindow {
                first: 0xc000,
                last: 0xc00f
            }]
        );
        assert!(w.add(&[(BarSpace::Memory, (0xfebf_0000, 0xfebf_1800))]));
        assert_eq!(
            w.memory(),
            [MemoryWindow {
                base: 0xfebf_0000,
                size: 0x2000
            }],
            "joined"
        );
        let too_many: Vec<_> = (0..MAX_MEMORY_WINDOWS as u64)
            .map(|i| {
                (
                    BarSpace::Memory,
                    (0x1_0000_0000 + 2 * i * PAGE, 0x1_0000_1000 + 2 * i * PAGE),
                )
            })
            .collect();
        assert!(!w.add(&too_many), "one more than fits");
        assert_eq!(w.memory().len(), 1, "nothing of it added");
        assert!(!w.add(&[(BarSpace::Io, (0xfff0, 0x1_0001))]));
    }
}
