//! The I/O APIC programming that routes device interrupt lines to sandboxes (Intel
//! 82093AA I/O APIC datasheet, 3.2.4 "I/O Redirection Table Registers"; ACPI 6.5,
//! 5.2.12.5 "Interrupt Source Override Structure" and its MPS INTI flags).
//!
//! A line is an ISA IRQ number: a port device's `irq = N`, or the Interrupt Line a PCI
//! function's firmware wrote. Line N is global system interrupt N unless the MADT
//! overrides it; trigger and polarity come from the override, else the bus default
//! (ISA: edge, active high; PCI: level, active low). A PCI line is level whatever an
//! override says. Each routed line goes to one core (the owner's first vCPU's core,
//! physical APIC ID) with vector `32 + line`, fixed delivery, physical destination; no
//! line is shared between sandboxes. The monitor masks every pin it does not route.

/// The register select (index) register, at the I/O APIC's base.
pub const IOREGSEL: u64 = 0x00;
/// The data window, at base + 0x10.
pub const IOWIN: u64 = 0x10;
/// Version register: bits 23:16 hold the highest redirection entry.
const REG_VERSION: u8 = 0x01;
/// First redirection register (each entry is two: low, high).
const REG_REDIRECTION: u8 = 0x10;
/// Entry bit 16: masked.
pub const MASKED: u64 = 1 << 16;
/// Entry bit 15: level triggered.
const LEVEL: u64 = 1 << 15;
/// Entry bit 13: active low.
const ACTIVE_LOW: u64 = 1 << 13;
/// The vector of line N is `VECTOR_BASE + N` (Hermit's and quest-rt's convention).
pub const VECTOR_BASE: u8 = 32;
/// Most routes the monitor keeps.
pub const MAX_ROUTES: usize = 16;
/// The highest ISA line.
pub const MAX_LINE: u8 = 15;

/// Reads and writes one I/O APIC's registers (through IOREGSEL / IOWIN).
pub trait IoApicRegisters {
    /// Register `reg`.
    fn read(&mut self, reg: u8) -> u32;
    /// Writes register `reg`.
    fn write(&mut self, reg: u8, value: u32);
}

/// Most pins an I/O APIC may have: its 240 redirection entries fill registers
/// 0x10-0xff.
pub const MAX_PINS: u8 = 120;

/// How many pins (redirection entries) the I/O APIC has (0 for a register that reads
/// all ones: no I/O APIC there).
pub fn pins(r: &mut impl IoApicRegisters) -> u8 {
    let version = r.read(REG_VERSION);
    if version == u32::MAX {
        return 0;
    }
    (((version >> 16) & 0xff) as u8)
        .saturating_add(1)
        .min(MAX_PINS)
}

/// Masks every pin.
pub fn mask_all(r: &mut impl IoApicRegisters) {
    for pin in 0..pins(r) {
        r.write(REG_REDIRECTION + 2 * pin, MASKED as u32);
        r.write(REG_REDIRECTION + 2 * pin + 1, 0);
    }
}

/// Programs pin `pin` with `entry`: masked while the destination changes, then the
/// low half (unmasking it) last.
pub fn program(r: &mut impl IoApicRegisters, pin: u8, entry: u64) {
    let low = REG_REDIRECTION + 2 * pin;
    r.write(low, MASKED as u32);
    r.write(low + 1, (entry >> 32) as u32);
    r.write(low, entry as u32);
}

/// Pin `pin`'s entry as it reads now.
pub fn entry(r: &mut impl IoApicRegisters, pin: u8) -> u64 {
    let low = REG_REDIRECTION + 2 * pin;
    u64::from(r.read(low + 1)) << 32 | u64::from(r.read(low))
}

/// One MADT interrupt source override (ISA bus).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Override {
    /// The ISA IRQ.
    pub irq: u8,
    /// The global system interrupt it is wired to.
    pub gsi: u32,
    /// MPS INTI flags: polarity in bits 1:0, trigger in bits 3:2.
    pub flags: u16,
}

/// Where a line comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A legacy (ISA) device: a port device's `irq`.
    Isa,
    /// A PCI function's INTx, by its Interrupt Line.
    Pci,
}

/// Edge or level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Edge triggered.
    Edge,
    /// Level triggered.
    Level,
}

/// Active high or low.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polarity {
    /// Active high.
    High,
    /// Active low.
    Low,
}

/// Where a line arrives and how it signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wiring {
    /// The global system interrupt.
    pub gsi: u32,
    /// Edge or level.
    pub trigger: Trigger,
    /// Active high or low.
    pub polarity: Polarity,
}

/// The wiring of `line` from `source`, given the MADT's `overrides`.
pub fn wiring(line: u8, source: Source, overrides: &[Override]) -> Wiring {
    let (trigger, polarity) = match source {
        Source::Isa => (Trigger::Edge, Polarity::High),
        Source::Pci => (Trigger::Level, Polarity::Low),
    };
    let Some(o) = overrides.iter().find(|o| o.irq == line) else {
        return Wiring {
            gsi: u32::from(line),
            trigger,
            polarity,
        };
    };
    let polarity = match o.flags & 3 {
        1 => Polarity::High,
        3 => Polarity::Low,
        _ => polarity,
    };
    let trigger = match (source, (o.flags >> 2) & 3) {
        (Source::Pci, _) => Trigger::Level,
        (_, 1) => Trigger::Edge,
        (_, 3) => Trigger::Level,
        _ => trigger,
    };
    Wiring {
        gsi: o.gsi,
        trigger,
        polarity,
    }
}

/// The redirection entry sending `wiring`'s pin as `vector` to physical APIC ID
/// `apic_id` (fixed delivery, physical destination, unmasked).
pub fn redirection(vector: u8, apic_id: u8, wiring: &Wiring) -> u64 {
    let level = if wiring.trigger == Trigger::Level {
        LEVEL
    } else {
        0
    };
    let low = if wiring.polarity == Polarity::Low {
        ACTIVE_LOW
    } else {
        0
    };
    u64::from(apic_id) << 56 | level | low | u64::from(vector)
}

/// One routed line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// The ISA line (the vector is `VECTOR_BASE + line`).
    pub line: u8,
    /// Where it comes from.
    pub source: Source,
    /// The sandbox it goes to (index).
    pub sandbox: usize,
    /// The physical APIC ID of that sandbox's first core.
    pub apic_id: u32,
    /// Its wiring.
    pub wiring: Wiring,
}

impl Route {
    /// The vector it arrives with.
    pub fn vector(&self) -> u8 {
        VECTOR_BASE + self.line
    }
}

/// Why a line is not routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteRefusal {
    /// No line (PCI: Interrupt Line 0xff or above 15) or the timer (0).
    NoLine(u8),
    /// The cascade line (2) or the console's.
    Reserved(u8),
    /// Another sandbox has the line (index).
    Shared(usize),
    /// The sandbox has it already, with another trigger (an ISA device and a PCI one).
    Trigger,
    /// No I/O APIC pin takes the line's global system interrupt.
    NoPin(u32),
    /// The physical APIC ID does not fit an I/O APIC entry (above 255).
    WideApicId(u32),
    /// More than [`MAX_ROUTES`] lines.
    Full,
}

impl core::fmt::Display for RouteRefusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::NoLine(l) => write!(f, "line {l:#x} is not an interrupt line"),
            Self::Reserved(l) => write!(f, "line {l} is the monitor's"),
            Self::Shared(_) => f.write_str("another sandbox has that line"),
            Self::Trigger => f.write_str("the sandbox has that line with another trigger mode"),
            Self::NoPin(g) => write!(f, "no I/O APIC takes GSI {g}"),
            Self::WideApicId(id) => write!(f, "APIC ID {id} does not fit an I/O APIC entry"),
            Self::Full => write!(f, "more than {MAX_ROUTES} routed lines"),
        }
    }
}

/// An I/O APIC from the MADT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoApic {
    /// Its MMIO base.
    pub address: u64,
    /// The first global system interrupt it takes.
    pub gsi_base: u32,
    /// How many pins it has.
    pub pins: u8,
}

/// The I/O APIC and pin of global system interrupt `gsi`.
pub fn pin_of(ioapics: &[IoApic], gsi: u32) -> Option<(usize, u8)> {
    ioapics.iter().enumerate().find_map(|(i, a)| {
        let pin = gsi.checked_sub(a.gsi_base)?;
        (pin < u32::from(a.pins)).then_some((i, pin as u8))
    })
}

/// Every routed line.
#[derive(Clone, Copy, Debug)]
pub struct Routes {
    routes: [Option<Route>; MAX_ROUTES],
    /// The console's line (never routed).
    console_line: u8,
}

impl Routes {
    /// None yet; `console_line` is never given.
    pub const fn new(console_line: u8) -> Self {
        Self {
            routes: [None; MAX_ROUTES],
            console_line,
        }
    }

    /// The routes.
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter().flatten()
    }

    /// Routes `line` from `source` to sandbox `sandbox`'s core with physical APIC ID
    /// `apic_id`. A line the sandbox has already (another function on it) is its route
    /// again.
    pub fn add(
        &mut self,
        line: u8,
        source: Source,
        sandbox: usize,
        apic_id: u32,
        overrides: &[Override],
        ioapics: &[IoApic],
    ) -> Result<Route, RouteRefusal> {
        if line == 0 || line > MAX_LINE {
            return Err(RouteRefusal::NoLine(line));
        }
        if line == 2 || line == self.console_line {
            return Err(RouteRefusal::Reserved(line));
        }
        let wiring = wiring(line, source, overrides);
        if let Some(r) = self.iter().find(|r| r.line == line) {
            return if r.sandbox != sandbox {
                Err(RouteRefusal::Shared(r.sandbox))
            } else if r.wiring.trigger != wiring.trigger {
                Err(RouteRefusal::Trigger)
            } else {
                Ok(*r)
            };
        }
        // Two lines on one GSI (an override onto another's pin) cannot both be routed.
        if let Some(r) = self.iter().find(|r| r.wiring.gsi == wiring.gsi) {
            return Err(RouteRefusal::Shared(r.sandbox));
        }
        pin_of(ioapics, wiring.gsi).ok_or(RouteRefusal::NoPin(wiring.gsi))?;
        if apic_id > 0xff {
            return Err(RouteRefusal::WideApicId(apic_id));
        }
        let slot = self
            .routes
            .iter_mut()
            .find(|r| r.is_none())
            .ok_or(RouteRefusal::Full)?;
        let route = Route {
            line,
            source,
            sandbox,
            apic_id,
            wiring,
        };
        *slot = Some(route);
        Ok(route)
    }

    /// The route of `line`, if any.
    pub fn of_line(&self, line: u8) -> Option<&Route> {
        self.iter().find(|r| r.line == line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// An I/O APIC in memory: 24 pins, every write logged.
    struct Fake {
        select: u8,
        regs: [u32; 0x40],
        writes: Vec<(u8, u32)>,
    }

    impl Fake {
        fn new() -> Self {
            let mut regs = [0; 0x40];
            regs[1] = 0x0017_0020; // 24 entries, version 0x20
            for pin in 0..24 {
                regs[0x10 + 2 * pin] = 0x0001_0000;
            }
            Self {
                select: 0,
                regs,
                writes: Vec::new(),
            }
        }
    }

    impl IoApicRegisters for Fake {
        fn read(&mut self, reg: u8) -> u32 {
            self.select = reg;
            self.regs[usize::from(reg)]
        }
        fn write(&mut self, reg: u8, value: u32) {
            self.select = reg;
            self.writes.push((reg, value));
            if reg != REG_VERSION {
                self.regs[usize::from(reg)] = value;
            }
        }
    }

    /// QEMU's MADT: IRQ 0 on GSI 2; PCI lines 5, 9, 10, 11 level, active high.
    const QEMU: [Override; 5] = [
        Override {
            irq: 0,
            gsi: 2,
            flags: 0,
        },
        Override {
            irq: 5,
            gsi: 5,
            flags: 0xd,
        },
        Override {
            irq: 9,
            gsi: 9,
            flags: 0xd,
        },
        Override {
            irq: 10,
            gsi: 10,
            flags: 0xd,
        },
        Override {
            irq: 11,
            gsi: 11,
            flags: 0xd,
        },
    ];

    const ONE: [IoApic; 1] = [IoApic {
        address: 0xfec0_0000,
        gsi_base: 0,
        pins: 24,
    }];

    #[test]
    fn wiring_follows_the_overrides_then_the_bus() {
        let w = |line, source, o: &[Override]| wiring(line, source, o);
        use Polarity::*;
        use Trigger::*;
        assert_eq!(
            w(11, Source::Pci, &QEMU),
            Wiring {
                gsi: 11,
                trigger: Level,
                polarity: High
            }
        );
        assert_eq!(
            w(3, Source::Isa, &QEMU),
            Wiring {
                gsi: 3,
                trigger: Edge,
                polarity: High
            }
        );
        assert_eq!(w(0, Source::Isa, &QEMU).gsi, 2);
        assert_eq!(
            w(7, Source::Pci, &[]),
            Wiring {
                gsi: 7,
                trigger: Level,
                polarity: Low
            },
            "PCI default"
        );
        // An override saying edge does not make a PCI line edge; "conforms" is the bus's.
        let edge = [Override {
            irq: 7,
            gsi: 17,
            flags: 0x4,
        }];
        assert_eq!(
            w(7, Source::Pci, &edge),
            Wiring {
                gsi: 17,
                trigger: Level,
                polarity: Low
            }
        );
        assert_eq!(w(7, Source::Isa, &edge).trigger, Edge);
        let level_low = [Override {
            irq: 9,
            gsi: 9,
            flags: 0xf,
        }];
        assert_eq!(
            w(9, Source::Isa, &level_low),
            Wiring {
                gsi: 9,
                trigger: Level,
                polarity: Low
            }
        );
    }

    #[test]
    fn entries_are_fixed_physical_with_the_wiring() {
        let w = wiring(11, Source::Pci, &QEMU);
        assert_eq!(redirection(43, 1, &w), 0x0100_0000_0000_802b);
        let w = wiring(3, Source::Isa, &[]);
        assert_eq!(redirection(35, 0xff, &w), 0xff00_0000_0000_0023);
        let w = wiring(7, Source::Pci, &[]);
        assert_eq!(redirection(39, 2, &w), 0x0200_0000_0000_a027);
    }

    #[test]
    fn masking_and_programming_touch_the_registers_in_order() {
        let mut a = Fake::new();
        assert_eq!(pins(&mut a), 24);
        a.regs[0x10 + 2 * 5] = 0x0000_0035; // firmware left pin 5 unmasked
        mask_all(&mut a);
        assert!((0..24).all(|p| entry(&mut a, p) == MASKED));
        a.writes.clear();
        program(&mut a, 11, 0x0100_0000_0000_802b);
        assert_eq!(
            a.writes,
            [
                (0x26, 0x0001_0000),
                (0x27, 0x0100_0000),
                (0x26, 0x0000_802b)
            ],
            "masked, destination, then unmasked"
        );
        assert_eq!(entry(&mut a, 11), 0x0100_0000_0000_802b);
        a.regs[1] = u32::MAX;
        assert_eq!(pins(&mut a), 0, "nothing there");
        a.regs[1] = 0x00ff_0020;
        assert_eq!(pins(&mut a), MAX_PINS, "no entry beyond register 0xff");
    }

    #[test]
    fn routes_keep_lines_apart() {
        let mut r = Routes::new(4);
        let got = r.add(11, Source::Pci, 0, 1, &QEMU, &ONE).unwrap();
        assert_eq!((got.vector(), got.wiring.gsi, got.apic_id), (43, 11, 1));
        assert_eq!(
            r.add(11, Source::Pci, 0, 1, &QEMU, &ONE),
            Ok(got),
            "same sandbox"
        );
        assert_eq!(
            r.add(11, Source::Pci, 1, 2, &QEMU, &ONE),
            Err(RouteRefusal::Shared(0))
        );
        assert!(r.add(7, Source::Pci, 0, 1, &QEMU, &ONE).is_ok());
        assert_eq!(
            r.add(7, Source::Isa, 0, 1, &QEMU, &ONE),
            Err(RouteRefusal::Trigger),
            "an edge device on the sandbox's level line"
        );
        assert!(
            r.add(11, Source::Isa, 0, 1, &QEMU, &ONE).is_ok(),
            "QEMU's line 11 is level for ISA too"
        );
        for (line, why) in [
            (0, RouteRefusal::NoLine(0)),
            (0xff, RouteRefusal::NoLine(0xff)),
            (16, RouteRefusal::NoLine(16)),
            (2, RouteRefusal::Reserved(2)),
            (4, RouteRefusal::Reserved(4)),
        ] {
            assert_eq!(r.add(line, Source::Isa, 1, 2, &QEMU, &ONE), Err(why));
        }
        assert_eq!(
            r.add(3, Source::Isa, 1, 256, &QEMU, &ONE),
            Err(RouteRefusal::WideApicId(256))
        );
        let small = [IoApic {
            address: 0xfec0_0000,
            gsi_base: 0,
            pins: 3,
        }];
        assert_eq!(
            r.add(3, Source::Isa, 1, 2, &QEMU, &small),
            Err(RouteRefusal::NoPin(3))
        );
        // Overridden onto GSI 11, which line 11 has.
        let onto = [Override {
            irq: 5,
            gsi: 11,
            flags: 0,
        }];
        assert_eq!(
            r.add(5, Source::Isa, 1, 2, &onto, &ONE),
            Err(RouteRefusal::Shared(0))
        );
        assert!(r.add(3, Source::Isa, 1, 2, &QEMU, &ONE).is_ok());
        assert_eq!(r.iter().count(), 3);
        assert_eq!(r.of_line(3).unwrap().sandbox, 1);
    }

    #[test]
    fn pins_are_found_across_ioapics() {
        let two = [
            ONE[0],
            IoApic {
                address: 0xfec0_1000,
                gsi_base: 24,
                pins: 8,
            },
        ];
        assert_eq!(pin_of(&two, 11), Some((0, 11)));
        assert_eq!(pin_of(&two, 25), Some((1, 1)));
        assert_eq!(pin_of(&two, 32), None);
    }
}
