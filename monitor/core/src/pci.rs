//! PCI at boot: the configuration-space accessor ([`ConfigSpace`]; the monitor has one for
//! mechanism #1, ports 0xCF8/0xCFC, and one for ECAM from the ACPI MCFG table), the bus
//! scan ([`enumerate`]), each function's BAR sizes (probed once, before any sandbox runs,
//! so a sandbox's sizing never touches a real BAR), and matching the table's PCI devices
//! to the functions found ([`assign`]). The per-sandbox view is `crate::pci_virtual`.
//!
//! Register offsets and bits: PCI Local Bus Specification 3.0, 6.1 (the type 0 header)
//! and 6.2.5 (base address registers); mechanism #1: 3.2.2.3.2.

use quest_abi::{PciAddress, PciId, PciSelector};

pub use quest_abi::pci::{
    BAR0, CAPABILITIES, CLASS, COMMAND, COMMAND_BUS_MASTER, COMMAND_INTX_DISABLE, COMMAND_IO,
    COMMAND_MEMORY, HEADER, ID, MULTI_FUNCTION, ROM,
};

/// Most functions the monitor keeps track of (the scan stops recording beyond them).
pub const MAX_FUNCTIONS: usize = 128;

/// Reads and writes configuration space, one aligned dword at a time.
pub trait ConfigSpace {
    /// The dword at `offset` (a multiple of 4, below 256) of function `f`.
    fn read(&mut self, f: PciAddress, offset: u8) -> u32;
    /// Writes the dword at `offset` (a multiple of 4, below 256) of function `f`.
    fn write(&mut self, f: PciAddress, offset: u8, value: u32);
}

/// The ECAM address of function `f`'s register `offset` (its dword) in the MCFG window
/// at `base` for buses `first..=last`, if `f`'s bus is in range. The MCFG base address
/// is bus 0's: the window of a range that starts at bus N begins N MiB above it (as
/// Linux's `mcfg_ioremap` maps it).
pub fn ecam_address(base: u64, first: u8, last: u8, f: PciAddress, offset: u8) -> Option<u64> {
    (first..=last).contains(&f.bus).then(|| {
        base + (u64::from(f.bus) << 20)
            + (u64::from(f.device) << 15)
            + (u64::from(f.function) << 12)
            + u64::from(offset & 0xfc)
    })
}

/// The part of an MCFG window at `base` that buses `first..=last` use: `[start, end)`.
pub fn ecam_window(base: u64, first: u8, last: u8) -> (u64, u64) {
    (
        base + (u64::from(first) << 20),
        base + ((u64::from(last) + 1) << 20),
    )
}

/// What a base address register decodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BarKind {
    /// Not implemented (reads 0 after sizing), or the upper half of a 64-bit BAR.
    #[default]
    None,
    /// I/O space.
    Io,
    /// 32-bit memory space.
    Memory32,
    /// The lower half of a 64-bit memory BAR (the next BAR is its upper half).
    Memory64,
}

/// One BAR as probed at boot: its kind and the value it read back after all ones were
/// written (the size mask, type bits included), which a sandbox's sizing reads back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bar {
    /// What it decodes.
    pub kind: BarKind,
    /// The read-back mask of this register (for a 64-bit BAR's upper half: its own).
    pub mask: u32,
}

impl Bar {
    /// Its size in bytes (`0` when not implemented); a 64-bit BAR's from both halves.
    pub fn size(&self, upper: Option<&Bar>) -> u64 {
        match self.kind {
            BarKind::None => 0,
            BarKind::Io => u64::from((!(self.mask & !3)).wrapping_add(1) & 0xffff),
            BarKind::Memory32 => u64::from((!(self.mask & !0xf)).wrapping_add(1)),
            BarKind::Memory64 => {
                let high = upper.map_or(u32::MAX, |u| u.mask);
                let mask = u64::from(high) << 32 | u64::from(self.mask & !0xf);
                (!mask).wrapping_add(1)
            }
        }
    }
}

/// One function found on the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function {
    /// Where it is.
    pub address: PciAddress,
    /// Its vendor and device ID.
    pub id: PciId,
    /// Header type (bit 7 cleared: the device's multi-function bit is in `multi`).
    pub header_type: u8,
    /// Whether its device has more than one function (bit 7 of function 0's header).
    pub multi: bool,
    /// Its BARs (a type 0 header's six; a bridge's two, CardBus' one, the rest `None`).
    pub bars: [Bar; 6],
}

/// The functions of one scan, in bus order.
#[derive(Clone, Debug)]
pub struct Functions {
    list: [Option<Function>; MAX_FUNCTIONS],
    count: usize,
    /// Functions beyond [`MAX_FUNCTIONS`], not recorded.
    pub dropped: usize,
}

impl Functions {
    /// None yet.
    pub const fn new() -> Self {
        Self {
            list: [None; MAX_FUNCTIONS],
            count: 0,
            dropped: 0,
        }
    }
    /// The functions, in bus order.
    pub fn iter(&self) -> impl Iterator<Item = &Function> {
        self.list[..self.count].iter().flatten()
    }
    /// The function at `address`.
    pub fn get(&self, address: PciAddress) -> Option<&Function> {
        self.iter().find(|f| f.address == address)
    }
    fn push(&mut self, f: Function) {
        match self.list.get_mut(self.count) {
            Some(slot) => {
                *slot = Some(f);
                self.count += 1;
            }
            None => self.dropped += 1,
        }
    }
}

impl Default for Functions {
    fn default() -> Self {
        Self::new()
    }
}

/// Scans buses `first_bus..=last_bus`: every device's function 0, and functions 1-7 of a
/// multi-function device, probing each function's BARs (decode off meanwhile, every
/// register restored).
pub fn enumerate(cs: &mut impl ConfigSpace, first_bus: u8, last_bus: u8) -> Functions {
    let mut out = Functions::new();
    for bus in first_bus..=last_bus {
        for device in 0..32u8 {
            let mut multi = false;
            for function in 0..8u8 {
                if function > 0 && !multi {
                    break;
                }
                let Some(address) = PciAddress::new(bus, device, function) else {
                    continue;
                };
                let id = cs.read(address, ID);
                if id & 0xffff == 0xffff || id & 0xffff == 0 {
                    if function == 0 {
                        break;
                    }
                    continue;
                }
                let header = (cs.read(address, HEADER) >> 16) as u8;
                if function == 0 {
                    multi = header & MULTI_FUNCTION != 0;
                }
                let header_type = header & !MULTI_FUNCTION;
                // A bridge's own BARs are probed too (never given, but a sandbox's small
                // BAR must not share a page with them): type 1 has two, CardBus one.
                let bars = match header_type {
                    0 => probe_bars(cs, address, 6),
                    1 => probe_bars(cs, address, 2),
                    2 => probe_bars(cs, address, 1),
                    _ => [Bar::default(); 6],
                };
                out.push(Function {
                    address,
                    id: PciId::from_u32(id.rotate_left(16)),
                    header_type,
                    multi,
                    bars,
                });
            }
        }
    }
    out
}

/// Sizes the first `count` BARs of `f` (PCI 3.0, 6.2.5.1): decode off, all ones written
/// to each, the mask read back, the original restored, decode back as it was.
fn probe_bars(cs: &mut impl ConfigSpace, f: PciAddress, count: usize) -> [Bar; 6] {
    let command = cs.read(f, COMMAND);
    let decode = u32::from(COMMAND_IO | COMMAND_MEMORY);
    // Writing the status half with zeros clears nothing (its bits are write-one-to-clear).
    cs.write(f, COMMAND, command & 0xffff & !decode);
    let mut bars = [Bar::default(); 6];
    let mut i = 0;
    while i < count.min(6) {
        let offset = BAR0 + 4 * i as u8;
        let original = cs.read(f, offset);
        cs.write(f, offset, u32::MAX);
        let mask = cs.read(f, offset);
        cs.write(f, offset, original);
        if mask == 0 {
            i += 1;
            continue;
        }
        if mask & 1 == 1 {
            bars[i] = Bar {
                kind: BarKind::Io,
                mask,
            };
        } else if (mask >> 1) & 3 == 2 && i + 1 < count.min(6) {
            let upper = offset + 4;
            let original_high = cs.read(f, upper);
            cs.write(f, upper, u32::MAX);
            let high = cs.read(f, upper);
            cs.write(f, upper, original_high);
            bars[i] = Bar {
                kind: BarKind::Memory64,
                mask,
            };
            bars[i + 1] = Bar {
                kind: BarKind::None,
                mask: high,
            };
            i += 1;
        } else {
            bars[i] = Bar {
                kind: BarKind::Memory32,
                mask,
            };
        }
        i += 1;
    }
    cs.write(f, COMMAND, command & 0xffff);
    bars
}

/// What became of one of the table's PCI devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assignment {
    /// The function found for it.
    Found(Function),
    /// No such function on the bus.
    Absent,
    /// Found, but not given (its BARs cannot be mapped safely; the monitor says why).
    Refused,
    /// The function is an earlier device's (another entry named it differently).
    Taken {
        /// The function.
        address: PciAddress,
        /// The sandbox it went to.
        owner: usize,
    },
}

/// Finds the function `select` names among `functions`.
pub fn find(functions: &Functions, select: PciSelector) -> Option<Function> {
    match select {
        PciSelector::Address(a) => functions.get(a).copied(),
        PciSelector::Id { id, index } => functions
            .iter()
            .filter(|f| f.id == id)
            .nth(usize::try_from(index).unwrap_or(usize::MAX))
            .copied(),
    }
}

/// Matches each of `devices` (its sandbox index and selector, table order) to a function;
/// `out[i]` is device `i`'s fate. A function named twice (by address and by ID) goes to
/// the first device that names it; the later one is [`Assignment::Taken`].
pub fn assign(
    functions: &Functions,
    devices: impl Iterator<Item = (usize, PciSelector)>,
    out: &mut [Option<(usize, Assignment)>],
) {
    let capacity = out.len();
    for (n, (sandbox, select)) in devices.take(capacity).enumerate() {
        let result = match find(functions, select) {
            None => Assignment::Absent,
            Some(f) => match out[..n].iter().flatten().find_map(|(owner, a)| match a {
                Assignment::Found(g) if g.address == f.address => Some(*owner),
                _ => None,
            }) {
                Some(owner) => Assignment::Taken {
                    address: f.address,
                    owner,
                },
                None => Assignment::Found(f),
            },
        };
        out[n] = Some((sandbox, result));
    }
}

/// Whether sandbox `s` may be started: none of its devices that must be there is missing.
/// `assignments` is [`assign`]'s output, `start_without[i]` device `i`'s `if_absent`.
pub fn may_start(
    s: usize,
    assignments: &[Option<(usize, Assignment)>],
    start_without: impl Fn(usize) -> bool,
) -> bool {
    assignments.iter().enumerate().all(|(i, a)| match a {
        Some((owner, result)) if *owner == s => {
            matches!(result, Assignment::Found(_)) || start_without(i)
        }
        _ => true,
    })
}

/// A configuration space in memory, for tests: functions with their registers and the
/// BAR masks real hardware would show.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use std::vec::Vec;

    /// One fake function.
    pub struct FakeFunction {
        pub address: PciAddress,
        pub regs: [u32; 64],
        /// The writable bits of each BAR (all ones reads back these).
        pub bar_masks: [u32; 6],
    }

    /// A fake bus; every write is logged.
    #[derive(Default)]
    pub struct FakeBus {
        pub functions: Vec<FakeFunction>,
        pub writes: Vec<(PciAddress, u8, u32)>,
        pub reads: usize,
    }

    impl FakeBus {
        /// Adds a function with `id` (vendor, device), header type, BAR masks and values.
        pub fn add(&mut self, a: (u8, u8, u8), id: u32, header: u8, bars: [(u32, u32); 6]) {
            let mut regs = [0u32; 64];
            regs[0] = id;
            regs[1] = 0x0010_0000; // status: capability list
            regs[2] = 0x0101_8000;
            regs[3] = u32::from(header) << 16;
            regs[13] = 0x40; // capabilities at 0x40
            regs[16] = 0x0000_0005; // MSI capability, end of list
            let mut bar_masks = [0; 6];
            for (i, (mask, value)) in bars.into_iter().enumerate() {
                bar_masks[i] = mask;
                regs[4 + i] = value;
            }
            self.functions.push(FakeFunction {
                address: PciAddress::new(a.0, a.1, a.2).unwrap(),
                regs,
                bar_masks,
            });
        }
        pub fn reg(&self, a: PciAddress, offset: u8) -> u32 {
            self.functions.iter().find(|f| f.address == a).unwrap().regs[usize::from(offset / 4)]
        }
    }

    impl ConfigSpace for FakeBus {
        fn read(&mut self, f: PciAddress, offset: u8) -> u32 {
            assert_eq!(offset % 4, 0, "aligned dwords only");
            self.reads += 1;
            self.functions
                .iter()
                .find(|x| x.address == f)
                .map_or(u32::MAX, |x| x.regs[usize::from(offset / 4)])
        }
        fn write(&mut self, f: PciAddress, offset: u8, value: u32) {
            assert_eq!(offset % 4, 0, "aligned dwords only");
            self.writes.push((f, offset, value));
            if let Some(x) = self.functions.iter_mut().find(|x| x.address == f) {
                let r = usize::from(offset / 4);
                if (4..10).contains(&r) {
                    let m = x.bar_masks[r - 4];
                    x.regs[r] = (value & m) | (x.regs[r] & !m & 0xf);
                    if m == 0 {
                        x.regs[r] = 0;
                    }
                } else if r == 1 {
                    // Command read-write; status write-one-to-clear.
                    let status = (x.regs[1] >> 16) & !(value >> 16);
                    x.regs[1] = status << 16 | (value & 0xffff);
                } else {
                    x.regs[r] = value;
                }
            }
        }
    }

    /// The test bus: 00:00.0 host bridge (8086:1237), 00:01.0-1 a two-function device
    /// (ISA 8086:7000 and IDE 8086:7010 with an I/O BAR4 of 16 bytes), 00:03.0 edu
    /// (1234:11e8, 1 MiB 32-bit memory BAR0), 00:04.0 a device with a 64-bit 16 KiB BAR0,
    /// 01:00.0 a second edu.
    pub fn bus() -> FakeBus {
        let mut b = FakeBus::default();
        let none = [(0, 0); 6];
        b.add((0, 0, 0), 0x1237_8086, 0, none);
        b.add((0, 1, 0), 0x7000_8086, 0x80, none);
        let mut ide = none;
        ide[4] = (0xffff_fff1, 0xc001);
        b.add((0, 1, 1), 0x7010_8086, 0, ide);
        let mut edu = none;
        edu[0] = (0xfff0_0000, 0xfea0_0000);
        b.add((0, 3, 0), 0x11e8_1234, 0, edu);
        let mut wide = none;
        wide[0] = (0xffff_c00c, 0xfeb0_000c);
        wide[1] = (0xffff_ffff, 0);
        b.add((0, 4, 0), 0x0001_1af4, 0, wide);
        b.add((1, 0, 0), 0x11e8_1234, 0, edu);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::fake::bus;
    use super::*;

    fn at(b: u8, d: u8, f: u8) -> PciAddress {
        PciAddress::new(b, d, f).unwrap()
    }

    const EDU: PciId = PciId {
        vendor: 0x1234,
        device: 0x11e8,
    };

    #[test]
    fn enumeration_finds_every_function_and_sizes_bars_then_restores_them() {
        let mut b = bus();
        let before: std::vec::Vec<[u32; 64]> = b.functions.iter().map(|f| f.regs).collect();
        let fs = enumerate(&mut b, 0, 255);
        let found: std::vec::Vec<_> = fs.iter().map(|f| (f.address, f.id.to_u32())).collect();
        assert_eq!(
            found,
            [
                (at(0, 0, 0), 0x8086_1237),
                (at(0, 1, 0), 0x8086_7000),
                (at(0, 1, 1), 0x8086_7010),
                (at(0, 3, 0), 0x1234_11e8),
                (at(0, 4, 0), 0x1af4_0001),
                (at(1, 0, 0), 0x1234_11e8),
            ]
        );
        let ide = fs.get(at(0, 1, 1)).unwrap();
        assert!(ide.multi && fs.get(at(0, 1, 0)).unwrap().multi);
        assert_eq!(
            (ide.bars[4].kind, ide.bars[4].size(None)),
            (BarKind::Io, 16)
        );
        let edu = fs.get(at(0, 3, 0)).unwrap();
        assert_eq!(
            (edu.bars[0].kind, edu.bars[0].size(None)),
            (BarKind::Memory32, 1 << 20)
        );
        assert!(!edu.multi);
        let wide = fs.get(at(0, 4, 0)).unwrap();
        assert_eq!(wide.bars[0].kind, BarKind::Memory64);
        assert_eq!(wide.bars[0].size(Some(&wide.bars[1])), 16 << 10);
        let after: std::vec::Vec<[u32; 64]> = b.functions.iter().map(|f| f.regs).collect();
        assert_eq!(before, after, "every register restored");
        // Bus numbers beyond the range are not scanned.
        let fs = enumerate(&mut bus(), 0, 0);
        assert_eq!(fs.iter().count(), 5);
    }

    #[test]
    fn sizing_turns_decode_off_meanwhile() {
        let mut b = bus();
        let edu = at(0, 3, 0);
        b.functions[3].regs[1] = 0x0010_0007; // I/O, memory, bus master on
        enumerate(&mut b, 0, 0);
        let writes: std::vec::Vec<_> = b.writes.iter().filter(|w| w.0 == edu).collect();
        assert_eq!(*writes[0], (edu, COMMAND, 0x0004), "decode off first");
        assert_eq!(*writes[1], (edu, BAR0, u32::MAX));
        assert_eq!(*writes.last().unwrap(), &(edu, COMMAND, 0x0007));
    }

    #[test]
    fn devices_match_by_address_or_nth_id_and_once() {
        let fs = enumerate(&mut bus(), 0, 255);
        let by_id = |index| PciSelector::Id { id: EDU, index };
        let mut out = [None; 8];
        let devices = [
            (0, PciSelector::Address(at(0, 3, 0))),
            (1, by_id(1)),
            (1, by_id(2)),
            (2, by_id(0)),
            (2, PciSelector::Address(at(0, 9, 0))),
        ];
        assign(&fs, devices.into_iter(), &mut out);
        let found = |i: usize| match out[i] {
            Some((_, Assignment::Found(f))) => Some(f.address),
            _ => None,
        };
        assert_eq!(found(0), Some(at(0, 3, 0)));
        assert_eq!(found(1), Some(at(1, 0, 0)), "the second edu in bus order");
        assert_eq!(out[2], Some((1, Assignment::Absent)), "there is no third");
        assert_eq!(
            out[3],
            Some((
                2,
                Assignment::Taken {
                    address: at(0, 3, 0),
                    owner: 0
                }
            )),
            "the first edu is sandbox 0's by address"
        );
        assert_eq!(out[4], Some((2, Assignment::Absent)));
        assert!(may_start(0, &out, |_| false));
        assert!(!may_start(1, &out, |_| false));
        assert!(may_start(1, &out, |i| i == 2));
        assert!(
            !may_start(2, &out, |i| i == 4),
            "device 3 is taken and must be there"
        );
        assert!(may_start(3, &out, |_| false), "no devices");
    }

    #[test]
    fn ecam_addresses_count_from_bus_0() {
        let base = 0xb000_0000;
        assert_eq!(
            ecam_address(base, 0, 255, at(0, 3, 0), 0x10),
            Some(0xb001_8010)
        );
        assert_eq!(
            ecam_address(base, 0, 255, at(1, 31, 7), 0xff),
            Some(0xb01f_f0fc)
        );
        // A window for buses 0x80-0xff: bus 0x80 is 0x80 MiB above the base, never
        // bus 0's place (which another function's registers would be).
        assert_eq!(
            ecam_address(base, 0x80, 0xff, at(0x80, 0, 0), 0),
            Some(0xb800_0000)
        );
        assert_eq!(ecam_address(base, 0x80, 0xff, at(0x7f, 0, 0), 0), None);
        assert_eq!(ecam_window(base, 0, 255), (0xb000_0000, 0xc000_0000));
        assert_eq!(ecam_window(base, 0x80, 0x81), (0xb800_0000, 0xb820_0000));
    }

    #[test]
    fn a_full_list_counts_what_it_drops() {
        let mut b = fake::FakeBus::default();
        for bus in 0..=200u8 {
            b.add((bus, 0, 0), 0x0001_8086, 0, [(0, 0); 6]);
        }
        let fs = enumerate(&mut b, 0, 255);
        assert_eq!(
            (fs.iter().count(), fs.dropped),
            (MAX_FUNCTIONS, 201 - MAX_FUNCTIONS)
        );
    }
}
