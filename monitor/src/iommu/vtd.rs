//! Intel VT-d units from the ACPI DMAR table (`quest_monitor_core::vtd`): one root
//! table per unit, a context entry for each assigned function, register-based
//! invalidation, the fault event an NMI (FEDATA delivery mode 100b), faults from the
//! primary fault records.
//!
//! Interrupt remapping, when every unit of the DMAR has it (ECAP.IR and ECAP.QI): each
//! unit gets an invalidation queue and the one interrupt remapping table, compatibility
//! format stays blocked (GCMD.CFI never set), and every interrupt the monitor sets up is
//! remappable: each routed I/O APIC line (IRTE `FIRST_LINE + route`, source ID the I/O
//! APIC's from the DMAR's I/O APIC scope) and each protected function's MSI (IRTE
//! `FIRST_MSI + function`, source ID the function's, written when its sandbox's message is
//! accepted: `crate::pci_msi` via [`Units::remap_msi`]). A device that writes any other
//! message to 0xFEExxxxx (its own compatibility-format one, or another's handle) is
//! refused by the unit: a fault record with reasons 20h-27h, reported as an interrupt
//! fault. The unit's own fault event is not remapped (the unit generates it), so it stays
//! the compatibility-format NMI.
//!
//! QEMU 7.2's intel-iommu (`intremap=on`) remaps what the monitor sets up (measured:
//! `irq.toml`'s INTx and MSI and `web.toml`'s INTx arrive through the
//! entries) and drops a message naming an entry that is not present (`dma-intr.toml`),
//! but it does not enforce the rest, so tests cannot show it there: it delivers a
//! compatibility-format message although GCMD.CFI is clear (measured: `dma-probe
//! attack-compat`'s vector 0x40 reached the bystander), it checks an entry's source ID
//! only for a message that carries a requester ID (a device's MSI, not a DMA write), and
//! it records no remapping fault ("TODO: report error" in `vtd_mem_ir_write`), so the
//! interrupt-fault report is not exercised there. Hardware does all three (spec 5.1.4).
//!
//! Limits: one I/O APIC scope (with several, routed lines stay masked: which scope is
//! which I/O APIC needs the MADT IDs); a function's IRTE stays when its sandbox stops
//! (its MSI is off then, and the entry can only reach the owner's own core).

use super::{
    announce, fault_core, name, Active, DmaFault, Function, NoIommu, PoolFrames, Registers,
    Units as AnyUnits, DOMAIN_TOP, MAPPED, MAX_FUNCTIONS,
};
use crate::arch::tsc;
use crate::cores::Cores;
use crate::sandboxes::record;
use acpi::sdt::{SdtHeader, Signature};
use acpi::AcpiTable;
use quest_abi::{HostPhysAddr, PciAddress, TableView, MAX_SANDBOXES};
use quest_monitor_core::ioapic::{Route, Trigger};
use quest_monitor_core::pci_msi::Remapped;
use quest_monitor_core::sandbox_ept::HostPlacement;
use quest_monitor_core::vtd::dmar::{Dmar, ScopeKind, MAX_UNITS};
use quest_monitor_core::vtd::domain::{build_domain, RootTable};
use quest_monitor_core::vtd::intremap::{self, Irte, FIRST_LINE, FIRST_MSI};
use quest_monitor_core::vtd::regs::{self, Capability, ExtCapability, FaultRecord};

/// The DMAR table as the `acpi` crate finds it (validated header and checksum); the
/// remapping structures follow the header.
#[repr(C, packed)]
pub(super) struct DmarTable {
    header: SdtHeader,
}

// SAFETY: a packed struct that starts with the SDT header (all the crate reads), with the
// DMAR signature.
unsafe impl AcpiTable for DmarTable {
    const SIGNATURE: Signature = Signature::DMAR;
    fn header(&self) -> &SdtHeader {
        &self.header
    }
}

/// One unit Quest uses.
#[derive(Clone, Copy, Debug)]
struct Unit {
    regs: Registers,
    cap: Capability,
    ecap: ExtCapability,
}

impl Unit {
    fn new(base: u64) -> Result<Self, NoIommu> {
        if base >= MAPPED - 0x1000 {
            return Err(NoIommu::Unmapped(base));
        }
        let probe = Registers(base);
        let (cap, ecap) = (
            Capability(probe.read64(regs::CAP)),
            ExtCapability(probe.read64(regs::ECAP)),
        );
        let records_end = cap.fault_record_offset() + 16 * u64::from(cap.fault_records());
        let iotlb_end = ecap.iotlb_offset() + 16;
        if base + records_end.max(iotlb_end) > MAPPED {
            return Err(NoIommu::Unmapped(base));
        }
        Ok(Self {
            regs: probe,
            cap,
            ecap,
        })
    }

    /// Sets GCMD command `bit` and waits for its status (`set`: until the status bit is
    /// set; else until it clears).
    fn command(&self, what: &'static str, bit: u32, set: bool) -> Result<(), NoIommu> {
        let gsts = self.regs.read32(regs::GSTS);
        self.regs.write32(regs::GCMD, regs::gcmd(gsts, bit));
        self.regs
            .wait(what, |r| (r.read32(regs::GSTS) & bit != 0) == set)
    }

    /// Takes every primary fault record (clearing it), passing each fault to `each`.
    fn take_faults(&self, mut each: impl FnMut(FaultRecord)) {
        let r = self.regs;
        let fsts = r.read32(regs::FSTS);
        if fsts & (regs::FSTS_PPF | regs::FSTS_PFO) == 0 {
            return;
        }
        let n = self.cap.fault_records();
        let first = (fsts >> regs::FSTS_FRI_SHIFT) & 0xff;
        for k in 0..n {
            let at = self.cap.fault_record_offset() + 16 * u64::from((first + k) % n);
            let high = r.read64(at + 8);
            if high & regs::FAULT_F == 0 {
                continue;
            }
            let low = r.read64(at);
            // Bit 127 (F) is write-1-to-clear: the record's upper dword.
            r.write32(at + 12, 1 << 31);
            if let Some(f) = FaultRecord::decode(low, high) {
                each(f);
            }
        }
        r.write32(regs::FSTS, fsts & regs::FSTS_CLEAR);
    }

    /// Points the unit at `root`, invalidates its caches and turns translation on, the
    /// fault event an NMI to `fault_apic` (masked until the fault core first enters its
    /// guest: [`Units::arm`]).
    fn enable(&self, root: HostPhysAddr, fault_apic: Option<u32>) -> Result<(), NoIommu> {
        let r = self.regs;
        r.write64(regs::RTADDR, root.as_u64());
        self.command("setting the root table", regs::GCMD_SRTP, true)?;
        if self.cap.rwbf() {
            self.command("a write-buffer flush", regs::GCMD_WBF, false)?;
        }
        r.write64(regs::CCMD, regs::CCMD_ICC | regs::CCMD_GLOBAL);
        r.wait("the context-cache invalidation", |r| {
            r.read64(regs::CCMD) & regs::CCMD_ICC == 0
        })?;
        let iotlb = self.ecap.iotlb_offset() + 8;
        r.write64(
            iotlb,
            regs::IOTLB_IVT | regs::IOTLB_GLOBAL | self.cap.drains(),
        );
        r.wait("the IOTLB invalidation", |r| {
            r.read64(iotlb) & regs::IOTLB_IVT == 0
        })?;
        self.fault_event(fault_apic);
        self.command("enabling translation", regs::GCMD_TE, true)
    }

    /// Masks the fault event, drops the firmware's faults and makes the event an NMI to
    /// `fault_apic` ([`Units::arm`] unmasks it).
    fn fault_event(&self, fault_apic: Option<u32>) {
        let r = self.regs;
        r.write32(regs::FECTL, regs::FECTL_IM);
        self.take_faults(|_| {}); // the firmware's, if any
        if let Some((data, address)) = fault_apic.and_then(regs::fault_event_nmi) {
            r.write32(regs::FEDATA, data);
            r.write32(regs::FEADDR, address);
            r.write32(regs::FEUADDR, 0);
        }
    }
}

/// The units that translate, and interrupt remapping when it is on.
#[derive(Debug)]
pub(super) struct Units {
    units: [Option<Unit>; MAX_UNITS],
    remapping: Option<Remapping>,
}

impl Units {
    /// Unmasks every unit's fault event (none without an NMI to send: masked, polled by
    /// no one, as before remapping).
    pub(super) fn arm(&self) {
        for u in self.all() {
            u.regs.write32(regs::FECTL, 0);
        }
    }

    /// Every unit Quest programs: those that translate, and with remapping every unit.
    fn all(&self) -> impl Iterator<Item = &Unit> {
        let remapping = self.remapping.as_ref().map(|r| &r.units);
        self.units
            .iter()
            .zip(
                remapping
                    .into_iter()
                    .flatten()
                    .chain(core::iter::repeat(&None)),
            )
            .filter_map(|(t, r)| t.as_ref().or(r.as_ref()))
    }

    /// Takes every unit's fault records.
    pub(super) fn take_faults(&self, each: &mut dyn FnMut(DmaFault)) {
        for u in self.all() {
            u.take_faults(|f| {
                let interrupt = intremap::is_interrupt_fault(f.reason);
                each(DmaFault {
                    source: f.source,
                    // An interrupt fault's record holds the entry index, no address.
                    address: (!interrupt).then_some(f.address),
                    write: (!interrupt).then_some(f.write),
                    why: match f.reason {
                        4..=6 => "not its memory",
                        r if interrupt => intremap::reason_name(r),
                        _ => f.reason_name(),
                    },
                    interrupt,
                })
            });
        }
    }

    /// The remappable message function `f` (protected, at `functions[k]`) sends for an
    /// interrupt to physical APIC ID `apic_id` with `vector`: its IRTE rewritten and
    /// invalidated.
    pub(super) fn remap_msi(
        &self,
        functions: &[Option<Function>],
        f: PciAddress,
        apic_id: u32,
        vector: u8,
    ) -> Remapped {
        let Some(r) = &self.remapping else {
            return Remapped::Compatibility;
        };
        let found = super::find_function(functions, f);
        let (Some((k, g)), Ok(apic_id)) = (found, u8::try_from(apic_id)) else {
            return Remapped::Refused;
        };
        let Ok(index) = u16::try_from(k).map(|k| FIRST_MSI + k) else {
            return Remapped::Refused;
        };
        let irte = Irte {
            vector,
            apic_id,
            level: false,
            source: g.requester,
        };
        match r.set(index, irte) {
            Ok(()) => {
                let (address, data) = intremap::remappable_msi(index);
                Remapped::Message(address, data)
            }
            Err(_) => Remapped::Refused,
        }
    }
}

/// The interrupt remapping table and each unit's invalidation queue.
#[derive(Debug)]
struct Remapping {
    /// Every unit of the DMAR (all remap).
    units: [Option<Unit>; MAX_UNITS],
    /// The interrupt remapping table (one frame).
    table: u64,
    /// Whether table writes must be flushed from the cache (a unit not coherent).
    flush: bool,
    queues: spin::Mutex<Queues>,
}

/// The invalidation queues: a frame per unit, how many descriptors were written to
/// each, and a frame whose dword `i` unit `i`'s wait descriptors write.
#[derive(Debug)]
struct Queues {
    frames: [u64; MAX_UNITS],
    written: [u64; MAX_UNITS],
    status: u64,
    sequence: u32,
}

impl Remapping {
    /// Sets IRTE `index` and invalidates it in every unit.
    fn set(&self, index: u16, irte: Irte) -> Result<(), NoIommu> {
        let mut q = self.queues.lock();
        self.write(index, irte);
        self.invalidate(&mut q, intremap::iec_entry(index))
    }

    /// Writes IRTE `index` (the caller invalidates it).
    fn write(&self, index: u16, irte: Irte) {
        let [low, high] = irte.encode();
        let at = self.table + 16 * u64::from(index % intremap::IRT_ENTRIES as u16);
        // SAFETY: an entry of the table frame the monitor allocated for the units (identity
        // mapped). High first, present (in low) last: the entry is whole when the unit may
        // use it; a device's MSI is off while its entry changes (`pci_msi`).
        unsafe {
            core::ptr::write_volatile((at + 8) as *mut u64, high);
            core::ptr::write_volatile(at as *mut u64, low);
        }
        PoolFrames { flush: self.flush }.flush(at, 16);
    }

    /// Submits `descriptor` and a wait to every unit's queue and waits for each.
    fn invalidate(&self, q: &mut Queues, descriptor: [u64; 2]) -> Result<(), NoIommu> {
        for (i, u) in self.units.iter().enumerate() {
            let Some(u) = u else { continue };
            q.sequence = q.sequence.wrapping_add(1).max(1);
            let (sequence, status) = (q.sequence, q.status + 4 * i as u64);
            for d in [descriptor, intremap::wait(status, sequence)] {
                let at = q.frames[i] + 16 * (q.written[i] % intremap::QUEUE_ENTRIES);
                // SAFETY: a descriptor slot of unit `i`'s queue frame (identity mapped);
                // the unit reads slots from its head up to the tail written below only.
                unsafe {
                    core::ptr::write_volatile(at as *mut u64, d[0]);
                    core::ptr::write_volatile((at + 8) as *mut u64, d[1]);
                }
                PoolFrames { flush: self.flush }.flush(at, 16);
                q.written[i] += 1;
            }
            u.regs.write64(intremap::IQT, intremap::iqt(q.written[i]));
            u.regs.wait("an interrupt entry cache invalidation", |_| {
                // SAFETY: the status dword of the monitor's frame that the unit writes.
                unsafe { core::ptr::read_volatile(status as *const u32) == sequence }
            })?;
        }
        Ok(())
    }
}

/// Turns interrupt remapping on in every unit of `dmar` when all can (else `Ok(None)`):
/// the routed I/O APIC lines are masked, their IRTEs written, the table set, queued
/// invalidation and remapping enabled, then the lines reprogrammed remappable.
#[inline(never)]
fn enable_remapping(
    dmar: &Dmar,
    translating: &[Option<Unit>; MAX_UNITS],
    fault_apic: Option<u32>,
) -> Result<Option<Remapping>, NoIommu> {
    let mut units = [None; MAX_UNITS];
    for (i, d) in dmar.units().enumerate() {
        let u = match translating.get(i).copied().flatten() {
            Some(u) => u,
            None => Unit::new(d.register_base)?,
        };
        if !intremap::supported(u.ecap.0) {
            return Ok(None);
        }
        units[i] = Some(u);
    }
    // A unit that only remaps reports its faults like the others (masked until armed).
    for (u, t) in units.iter().zip(translating) {
        if let (Some(u), None) = (u, t) {
            u.fault_event(fault_apic);
        }
    }
    // The I/O APIC's source ID: the DMAR's I/O APIC scope (one I/O APIC supported).
    let mut ioapics = dmar
        .units()
        .flat_map(|u| u.scopes())
        .filter(|s| s.kind == ScopeKind::IoApic);
    let ioapic = match (ioapics.next(), ioapics.next()) {
        (Some(s), None) => s.resolve(crate::pci::bridge_buses).map(|a| a.to_u16()),
        _ => None,
    };
    let flush = units.iter().flatten().any(|u| !u.ecap.coherent());
    let frame = || crate::frame_pool::alloc_zeroed(1).ok_or(NoIommu::Frames);
    let table = frame()?;
    let mut queues = Queues {
        frames: [0; MAX_UNITS],
        written: [0; MAX_UNITS],
        status: frame()?,
        sequence: 0,
    };
    for (i, u) in units.iter().enumerate() {
        if u.is_some() {
            queues.frames[i] = frame()?;
        }
    }
    let r = Remapping {
        units,
        table,
        flush,
        queues: spin::Mutex::new(queues),
    };
    PoolFrames { flush }.flush(table, 4096);

    // Lines: masked (compatibility format is refused from now on), their entries written.
    crate::interrupts::mask_routed();
    let line = |k: usize, route: &Route| {
        let index = FIRST_LINE + u16::try_from(k).ok()?;
        let irte = Irte {
            vector: route.vector(),
            apic_id: u8::try_from(route.apic_id).ok()?,
            level: route.wiring.trigger == Trigger::Level,
            source: ioapic?,
        };
        Some((index, irte))
    };
    crate::interrupts::each_route(|k, route| {
        if let Some((index, irte)) = line(k, route) {
            r.write(index, irte);
        }
    });

    let mut q = r.queues.lock();
    for (i, u) in r.units.iter().enumerate() {
        let Some(u) = u else { continue };
        u.regs.write64(intremap::IQT, 0);
        u.regs.write64(intremap::IQA, intremap::iqa(q.frames[i]));
        u.command("enabling queued invalidation", intremap::GCMD_QIE, true)?;
        u.regs.write64(intremap::IRTA, intremap::irta(r.table));
        u.command(
            "setting the interrupt remapping table",
            intremap::GCMD_SIRTP,
            true,
        )?;
    }
    r.invalidate(&mut q, intremap::iec_global())?;
    for u in r.units.iter().flatten() {
        u.command("enabling interrupt remapping", intremap::GCMD_IRE, true)?;
    }
    drop(q);
    crate::interrupts::remapped(|k, route| {
        let (index, irte) = line(k, route)?;
        Some(intremap::remappable_rte(
            index,
            irte.vector,
            irte.level,
            route.wiring.polarity == quest_monitor_core::ioapic::Polarity::Low,
        ))
    });
    Ok(Some(r))
}

/// Builds the domains and context entries from the DMAR table `dmar` and turns the
/// units on.
#[inline(never)] // Its locals stay off the boot core's long-lived frames.
pub(super) fn protect(
    table: &TableView<'static>,
    dmar: &[u8],
    channel_hpas: &[HostPhysAddr],
    cores: &Cores,
) -> Result<Active, NoIommu> {
    let dmar = Dmar::parse(dmar).map_err(NoIommu::Dmar)?;
    // Which unit each function is behind (segment 0: all Quest scans).
    let mut functions = [None; MAX_FUNCTIONS];
    let mut used = [false; MAX_UNITS];
    let mut n = 0;
    crate::pci::assigned(|s, f, _| {
        if let (Some(u), Some(slot)) = (
            dmar.unit_for(0, f, crate::pci::bridge_buses),
            functions.get_mut(n),
        ) {
            *slot = Some(Function {
                address: f,
                sandbox: s,
                unit: u,
                requester: f.to_u16(),
            });
            used[u] = true;
            n += 1;
        }
    });
    let mut units = [None; MAX_UNITS];
    for (i, u) in dmar.units().enumerate() {
        if used[i] {
            units[i] = Some(Unit::new(u.register_base)?);
        }
    }
    let in_use = || units.iter().flatten();
    // Domain ID = sandbox index + 1 (0 is reserved where the unit caches not-present
    // entries).
    let top_domain = functions
        .iter()
        .flatten()
        .map(|f: &Function| f.sandbox.index() as u32 + 1)
        .max()
        .unwrap_or(0);
    let first = in_use().next().ok_or(NoIommu::NotCovered)?;
    let levels = regs::choose_levels(first.cap, DOMAIN_TOP).ok_or(NoIommu::Levels(first.regs.0))?;
    for u in in_use() {
        if u.cap.sagaw() & (1 << levels.aw()) == 0 {
            return Err(NoIommu::Levels(u.regs.0));
        }
        if u.cap.domains() <= top_domain {
            return Err(NoIommu::Domains(u.regs.0));
        }
    }
    let large = in_use().all(|u| u.cap.large_pages());
    let flush = in_use().any(|u| !u.ecap.coherent());

    // One domain per sandbox with a function, one root table per unit.
    let started = tsc::now();
    let mut roots: [Option<RootTable<PoolFrames>>; MAX_UNITS] = [const { None }; MAX_UNITS];
    let mut domains: [Option<HostPhysAddr>; MAX_SANDBOXES] = [None; MAX_SANDBOXES];
    let mut domain_count = 0;
    for f in functions.iter().flatten() {
        let s = f.sandbox;
        let failed = |e| NoIommu::VtdDomain(name(table, s), e);
        let i = s.index() % MAX_SANDBOXES;
        let sl = match domains[i] {
            Some(sl) => sl,
            None => {
                let placement = record(s).placement();
                let place = HostPlacement {
                    sandbox: &placement,
                    channel_hpas,
                    calibration_hpa: None,
                    device_memory: &[],
                };
                let d = build_domain(
                    table.raw(),
                    s.index(),
                    &place,
                    PoolFrames { flush },
                    levels,
                    large,
                )
                .map_err(failed)?;
                domain_count += 1;
                domains[i] = Some(d.root());
                d.root()
            }
        };
        let root = match &mut roots[f.unit] {
            Some(r) => r,
            slot => slot.insert(RootTable::new(PoolFrames { flush }).map_err(failed)?),
        };
        root.add(f.address, sl, levels, s.index() as u16 + 1)
            .map_err(failed)?;
    }
    let cycles = tsc::now() - started;

    let (fault_core, fault_apic) = fault_core(&functions, cores);
    for (u, root) in units.iter().zip(&roots) {
        if let (Some(u), Some(root)) = (u, root) {
            u.enable(root.root(), fault_apic)?;
        }
    }
    let remapping = enable_remapping(&dmar, &units, fault_apic)?;
    match &remapping {
        Some(r) => crate::println!(
            "quest: VT-d interrupt remapping on: {} units, compatibility format blocked",
            r.units.iter().flatten().count()
        ),
        None => crate::println!(
            "quest: VT-d without interrupt remapping: a device may send any interrupt by DMA"
        ),
    }
    let base = first.regs.0;
    let active = Active {
        units: AnyUnits::Vtd(Units { units, remapping }),
        functions,
        fault_core,
        fault_apic: fault_apic.filter(|&a| regs::fault_event_nmi(a).is_some()),
        poll_cycles: 0,
    };
    announce("VT-d", base, &active, domain_count, levels.bits(), cycles);
    Ok(active)
}
