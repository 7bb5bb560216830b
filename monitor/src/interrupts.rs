//! Device interrupts, set up once at boot (after `crate::pci::init`, before any vCPU
//! runs): the I/O APICs from the ACPI MADT, every pin masked, then each sandbox's lines
//! routed to its first core (`quest_monitor_core::ioapic`): a PCI function's INTx by the
//! Interrupt Line firmware wrote, a port device's `irq = N`. A function whose line is not
//! routed keeps INTx disabled (the line may be another sandbox's). Each function's virtual
//! configuration space learns its routed line, its MSI capability (messages translated
//! from virtual to physical APIC IDs) and hides its MSI-X (`quest_monitor_core::pci_msi`).
//! With VT-d interrupt remapping (`crate::iommu`, which runs after this), the lines are
//! masked, given remapping entries and reprogrammed in remappable format ([`remapped`]),
//! and each accepted MSI becomes a remappable message (`crate::iommu::remap_msi`). With
//! AMD-Vi interrupt remapping the lines keep their entries (their vector names the I/O
//! APIC's remapping entry) and an accepted MSI names the function's entry
//! ([`level_lines_untagged`] says what QEMU needs for level lines).
//!
//! The Interrupt Line is the ISA IRQ the firmware routed the function's INTx pin to. On
//! QEMU (SeaBIOS, i440FX and q35) that ISA IRQ is also wired to the I/O APIC pin of the
//! same number (the MADT's overrides say level, active high for PCI lines), so line N is
//! I/O APIC input N. Real hardware wires PCI INTx to other I/O APIC inputs (16-23 and up)
//! that only the ACPI _PRT method tells; that needs an AML interpreter, which the monitor
//! does not have: there, an MSI-capable device is the way.
//!
//! Interrupts reach the guest without the monitor: VT-x does not exit on external
//! interrupts and SVM does not intercept INTR, so the vector goes through the guest's own
//! IDT. The guest's EOI goes to the real local APIC (x2APIC passthrough on VT-x; on an
//! xAPIC host the monitor's x2APIC emulation writes the xAPIC EOI register), which for a
//! level-triggered vector broadcasts the EOI to the I/O APICs.

use crate::bootinfo::AcpiRoot;
use crate::cores::IdentityMapped;
use acpi::madt::{Madt, MadtEntry};
use acpi::AcpiTables;
use core::sync::atomic::{AtomicBool, Ordering};
use quest_abi::{console_irq, DeviceKind, SandboxId, TableView};
use quest_monitor_core::ioapic::{
    mask_all, pin_of, pins, program, redirection, IoApic, IoApicRegisters, Override, Polarity,
    Route, Routes, Source, Trigger, IOREGSEL, IOWIN, MASKED, MAX_ROUTES,
};
use quest_monitor_core::pci::ConfigSpace;
use quest_monitor_core::pci_msi::{capabilities, FunctionIrq, Targets, INTERRUPT};
use quest_monitor_core::pci_virtual::MAX_FUNCTIONS_PER_SANDBOX;
use spin::Mutex;

/// Most I/O APICs the monitor drives.
const MAX_IOAPICS: usize = 8;
/// Most interrupt source overrides it reads.
const MAX_OVERRIDES: usize = 16;

/// One I/O APIC's registers through its memory-mapped IOREGSEL/IOWIN (identity mapped;
/// the I/O APICs live below 4 GiB, at 0xfec00000 on PCs). Used by the boot core before
/// any vCPU runs, later under [`ROUTED`]'s lock.
struct Mmio(u64);

impl IoApicRegisters for Mmio {
    fn read(&mut self, reg: u8) -> u32 {
        // SAFETY: the MADT's I/O APIC address, identity mapped; IOREGSEL then IOWIN,
        // 32-bit accesses as the I/O APIC requires; one core at a time (see `Mmio`).
        unsafe {
            core::ptr::write_volatile((self.0 + IOREGSEL) as *mut u32, u32::from(reg));
            core::ptr::read_volatile((self.0 + IOWIN) as *const u32)
        }
    }
    fn write(&mut self, reg: u8, value: u32) {
        // SAFETY: as in `read`.
        unsafe {
            core::ptr::write_volatile((self.0 + IOREGSEL) as *mut u32, u32::from(reg));
            core::ptr::write_volatile((self.0 + IOWIN) as *mut u32, value);
        }
    }
}

/// The MADT's I/O APICs and ISA overrides.
#[derive(Clone, Copy, Debug)]
struct MadtInterrupts {
    ioapics: [IoApic; MAX_IOAPICS],
    ioapic_count: usize,
    overrides: [Override; MAX_OVERRIDES],
    override_count: usize,
}

impl MadtInterrupts {
    /// None of either.
    const EMPTY: Self = Self {
        ioapics: [IoApic {
            address: 0,
            gsi_base: 0,
            pins: 0,
        }; MAX_IOAPICS],
        ioapic_count: 0,
        overrides: [Override {
            irq: 0,
            gsi: 0,
            flags: 0,
        }; MAX_OVERRIDES],
        override_count: 0,
    };
}

/// Reads the MADT (`None`: no ACPI or no MADT).
fn madt(root: Option<AcpiRoot>) -> Option<MadtInterrupts> {
    let root = root?;
    // SAFETY: the root comes from GRUB's copy of the firmware RSDP; the crate checks
    // signatures and checksums; the tables are identity mapped.
    let tables =
        unsafe { AcpiTables::from_rsdt(IdentityMapped, root.revision, root.address as usize) }
            .ok()?;
    let madt = tables.find_table::<Madt>().ok()?;
    let mut out = MadtInterrupts::EMPTY;
    for entry in madt.get().entries() {
        match entry {
            MadtEntry::IoApic(e) => {
                let address = u64::from(e.io_apic_address);
                let pins = pins(&mut Mmio(address));
                match out.ioapics.get_mut(out.ioapic_count) {
                    Some(slot) if pins > 0 => {
                        *slot = IoApic {
                            address,
                            gsi_base: e.global_system_interrupt_base,
                            pins,
                        };
                        out.ioapic_count += 1;
                    }
                    _ => crate::println!("quest: I/O APIC at {address:#x} not used"),
                }
            }
            MadtEntry::InterruptSourceOverride(e) if e.bus == 0 => {
                if let Some(slot) = out.overrides.get_mut(out.override_count) {
                    *slot = Override {
                        irq: e.irq,
                        gsi: e.global_system_interrupt,
                        flags: e.flags,
                    };
                    out.override_count += 1;
                }
            }
            _ => {}
        }
    }
    Some(out)
}

/// Whether the table gives any sandbox a PCI function or an IRQ line.
fn any_interrupts(table: &TableView<'static>) -> bool {
    table.sandboxes().any(|s| {
        s.devices()
            .any(|d| d.pci().is_some() || (d.kind() == DeviceKind::IoPorts && d.irq().is_some()))
    })
}

/// Masks every I/O APIC pin and routes each sandbox's lines; gives each sandbox's
/// virtual configuration space its functions' interrupt registers. `apic_ids` is the
/// physical APIC ID per logical core. Boot core, after `crate::pci::init`.
pub fn init(table: &TableView<'static>, acpi: Option<AcpiRoot>, apic_ids: &[u32]) {
    if !any_interrupts(table) {
        return;
    }
    // Without a MADT no line is routed (each says why), but MSI still works.
    let m = madt(acpi).unwrap_or_else(|| {
        crate::println!("quest: no MADT: no I/O APIC to route device interrupt lines");
        MadtInterrupts::EMPTY
    });
    let ioapics = &m.ioapics[..m.ioapic_count];
    let overrides = &m.overrides[..m.override_count];
    for a in ioapics {
        mask_all(&mut Mmio(a.address));
        crate::println!(
            "quest: I/O APIC at {:#x}: {} pins (GSI {}-{}), all masked",
            a.address,
            a.pins,
            a.gsi_base,
            a.gsi_base.saturating_add(u32::from(a.pins) - 1)
        );
    }
    let mut routes = Routes::new(console_irq(table.console_port()) as u8);
    for sandbox in table.sandboxes() {
        let s = sandbox.id();
        let name = sandbox.name();
        let mut ids = [0u32; quest_monitor_core::pci_msi::MAX_TARGETS];
        let mut count = 0;
        for (slot, v) in ids.iter_mut().zip(sandbox.vcpus()) {
            *slot = apic_ids.get(v.core().index()).copied().unwrap_or(u32::MAX);
            count += 1;
        }
        let first_core = sandbox.vcpus().next().map(|v| v.core().index());
        let apic_id = ids[0];
        crate::pci::with_space(s, |space, cs| {
            space.set_targets(Targets::of(&ids[..count]).with_remap(crate::iommu::remap_msi));
            let mut functions = [None; MAX_FUNCTIONS_PER_SANDBOX];
            for (slot, f) in functions.iter_mut().zip(space.functions()) {
                *slot = Some(f.address);
            }
            for f in functions.into_iter().flatten() {
                let interrupt = cs.read(f, INTERRUPT);
                let (line, pin) = (interrupt as u8, (interrupt >> 8) as u8);
                let caps = capabilities(cs, f);
                let mut routed = None;
                if (1..=4).contains(&pin) {
                    let intx = (b'A' + pin - 1) as char;
                    match routes.add(line, Source::Pci, s.index(), apic_id, overrides, ioapics) {
                        Ok(r) => {
                            routed = Some(line);
                            crate::println!(
                                "quest: IRQ {line} (device {f} INT{intx}, {}) -> sandbox '{name}' core {} (APIC ID {apic_id}) vector {}",
                                describe(r.wiring.trigger, r.wiring.polarity),
                                first_core.unwrap_or(0),
                                r.vector()
                            );
                        }
                        Err(why) => crate::println!(
                            "quest: device {f} INT{intx} (line {line}) of sandbox '{name}' is not routed: {why}; its INTx stays disabled"
                        ),
                    }
                }
                if caps.msix.is_some() {
                    crate::println!(
                        "quest: device {f}: MSI-X hidden from sandbox '{name}' (it can use {})",
                        if caps.msi.is_some() {
                            "MSI or INTx"
                        } else {
                            "INTx"
                        }
                    );
                }
                space.set_interrupts(cs, f, FunctionIrq::new(caps, routed));
            }
        });
        for d in sandbox
            .devices()
            .filter(|d| d.kind() == DeviceKind::IoPorts)
        {
            let Some(line) = d.irq() else { continue };
            let ports = d.ports();
            match routes.add(line, Source::Isa, s.index(), apic_id, overrides, ioapics) {
                Ok(r) => crate::println!(
                    "quest: IRQ {line} (ports {:#x}-{:#x}, {}) -> sandbox '{name}' core {} (APIC ID {apic_id}) vector {}",
                    ports.start(),
                    ports.end(),
                    describe(r.wiring.trigger, r.wiring.polarity),
                    first_core.unwrap_or(0),
                    r.vector()
                ),
                Err(why) => crate::println!(
                    "quest: IRQ {line} (ports {:#x}-{:#x}) of sandbox '{name}' is not routed: {why}",
                    ports.start(),
                    ports.end()
                ),
            }
        }
    }
    for r in routes.iter() {
        if let Some((i, pin)) = pin_of(ioapics, r.wiring.gsi) {
            // `Routes::add` refused APIC IDs above 255.
            program(
                &mut Mmio(ioapics[i].address),
                pin,
                redirection(r.vector(), r.apic_id as u8, &r.wiring),
            );
        }
    }
    *ROUTED.lock() = Some(Routed {
        routes,
        madt: m,
        remapped: None,
    });
}

/// The routes programmed at boot and the I/O APICs they use.
struct Routed {
    routes: Routes,
    madt: MadtInterrupts,
    /// With interrupt remapping: each route's remappable entry (`None`: masked for good,
    /// it could not be remapped), by route index.
    remapped: Option<[Option<u64>; MAX_ROUTES]>,
}

impl Routed {
    /// Writes `entry(k, route)` into each route's pin (`None`: leaves it).
    fn program_each(&self, mut entry: impl FnMut(usize, &Route) -> Option<u64>) {
        let ioapics = &self.madt.ioapics[..self.madt.ioapic_count];
        for (k, r) in self.routes.iter().enumerate() {
            if let (Some((i, pin)), Some(e)) = (pin_of(ioapics, r.wiring.gsi), entry(k, r)) {
                program(&mut Mmio(ioapics[i].address), pin, e);
            }
        }
    }

    /// Route `k`'s entry, unmasked (remappable with remapping on).
    fn entry(&self, k: usize, r: &Route) -> Option<u64> {
        match &self.remapped {
            Some(remapped) => remapped.get(k).copied().flatten(),
            // `Routes::add` refused APIC IDs above 255.
            None => Some(redirection(r.vector(), r.apic_id as u8, &r.wiring)),
        }
    }
}

/// The routes; the lock also orders every later IOREGSEL/IOWIN pair.
static ROUTED: Mutex<Option<Routed>> = Mutex::new(None);

/// Passes each routed line (its index below `MAX_ROUTES`, its route) to `each`.
pub fn each_route(mut each: impl FnMut(usize, &Route)) {
    if let Some(routed) = ROUTED.lock().as_ref() {
        for (k, r) in routed.routes.iter().enumerate() {
            each(k, r);
        }
    }
}

/// Interrupt remapping (`crate::iommu`): before it is enabled, masks every routed line
/// (a compatibility-format message would be refused once it is on).
pub fn mask_routed() {
    if let Some(routed) = ROUTED.lock().as_ref() {
        routed.program_each(|k, r| routed.entry(k, r).map(|e| e | MASKED));
    }
}

/// Interrupt remapping is on: route `k` now uses the remappable redirection entry
/// `entry(k, route)` (`None`: it cannot be remapped and stays masked).
pub fn remapped(mut entry: impl FnMut(usize, &Route) -> Option<u64>) {
    let mut routed = ROUTED.lock();
    let Some(routed) = routed.as_mut() else {
        return;
    };
    let mut remapped = [None; MAX_ROUTES];
    for (k, r) in routed.routes.iter().enumerate() {
        if let Some(slot) = remapped.get_mut(k) {
            *slot = entry(k, r);
            if slot.is_none() {
                crate::println!(
                    "quest: IRQ {} of sandbox {} cannot be remapped: masked",
                    r.line,
                    r.sandbox
                );
            }
        }
    }
    routed.remapped = Some(remapped);
    routed.program_each(|k, r| routed.entry(k, r));
}

/// Set when interrupt remapping delivers the I/O APIC's level-triggered lines as edge
/// interrupts ([`level_lines_untagged`]).
static UNTAGGED: AtomicBool = AtomicBool::new(false);

/// Interrupt remapping (`crate::iommu`'s AMD-Vi) may deliver a level-triggered line's
/// message as an edge interrupt: QEMU 7.2's amd-iommu builds the remapped message
/// without the trigger mode (its `amdvi_int_remap_legacy` leaves it 0; the 32-bit entry
/// has no such field). The local APIC then does not set the vector's TMR bit, so the
/// guest's EOI is not broadcast to the I/O APIC and the line's Remote IRR stays set: one
/// interrupt, then no more. From now on an EOI the monitor performs for a guest
/// (`arch::apic::guest_write`, xAPIC hosts) of a vector without its TMR bit also goes to
/// the I/O APIC's EOI register when the vector is a routed level line's, as Linux's
/// `ioapic_ack_level` does. Where the remapped message keeps its trigger mode the TMR
/// bit is set and nothing changes.
pub fn level_lines_untagged() {
    UNTAGGED.store(true, Ordering::Release);
}

/// Whether a guest's EOI must say which vector it ends ([`eoi_untagged`]).
pub fn eoi_needs_vector() -> bool {
    UNTAGGED.load(Ordering::Relaxed)
}

/// A guest's EOI ended `vector`, which the local APIC took as edge triggered: a routed
/// level line with that vector gets the EOI at its I/O APIC (register 0x40, I/O APIC
/// version 0x20 and later), which clears its Remote IRR.
pub fn eoi_untagged(vector: u8) {
    let routed = ROUTED.lock();
    let Some(routed) = routed.as_ref() else {
        return;
    };
    let ioapics = &routed.madt.ioapics[..routed.madt.ioapic_count];
    for r in routed.routes.iter() {
        if r.vector() != vector || r.wiring.trigger != Trigger::Level {
            continue;
        }
        if let Some((i, _)) = pin_of(ioapics, r.wiring.gsi) {
            let eoi = (ioapics[i].address + IOAPIC_EOI) as *mut u32;
            // SAFETY: the EOI register of an I/O APIC from the MADT (identity mapped),
            // under ROUTED's lock like every other access to it; it only clears the
            // Remote IRR of the entries with this vector.
            unsafe { core::ptr::write_volatile(eoi, u32::from(vector)) };
        }
    }
}

/// The I/O APIC's EOI register (version 0x20 and later).
const IOAPIC_EOI: u64 = 0x40;

/// Masks the lines routed to sandbox `s`, which stopped for good (exited or halted):
/// its devices no longer interrupt the core it leaves. A restarting sandbox keeps them.
pub fn quiesce(s: SandboxId) {
    let routed = ROUTED.lock();
    let Some(routed) = routed.as_ref() else {
        return;
    };
    routed.program_each(|k, r| {
        (r.sandbox == s.index())
            .then(|| routed.entry(k, r))
            .flatten()
            .map(|e| e | MASKED)
    });
}

/// "level, active high" and the like.
fn describe(trigger: Trigger, polarity: Polarity) -> &'static str {
    match (trigger, polarity) {
        (Trigger::Level, Polarity::High) => "level, active high",
        (Trigger::Level, Polarity::Low) => "level, active low",
        (Trigger::Edge, Polarity::High) => "edge, active high",
        (Trigger::Edge, Polarity::Low) => "edge, active low",
    }
}
