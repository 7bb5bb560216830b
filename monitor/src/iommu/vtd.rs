//! Intel VT-d units from the ACPI DMAR table (`quest_monitor_core::vtd`): one root
//! table per unit, a context entry for each assigned function, register-based
//! invalidation, the fault event an NMI (FEDATA delivery mode 100b), faults from the
//! primary fault records.

use super::{
    announce, fault_core, name, Active, DmaFault, Function, NoIommu, PoolFrames, Registers,
    Units as AnyUnits, DOMAIN_TOP, MAPPED, MAX_FUNCTIONS,
};
use crate::arch::tsc;
use crate::cores::Cores;
use crate::sandboxes::record;
use acpi::sdt::{SdtHeader, Signature};
use acpi::AcpiTable;
use quest_abi::{HostPhysAddr, TableView, MAX_SANDBOXES};
use quest_monitor_core::sandbox_ept::HostPlacement;
use quest_monitor_core::vtd::dmar::{Dmar, MAX_UNITS};
use quest_monitor_core::vtd::domain::{build_domain, RootTable};
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
        r.write32(regs::FECTL, regs::FECTL_IM);
        self.take_faults(|_| {}); // the firmware's, if any
        if let Some((data, address)) = fault_apic.and_then(regs::fault_event_nmi) {
            r.write32(regs::FEDATA, data);
            r.write32(regs::FEADDR, address);
            r.write32(regs::FEUADDR, 0);
        }
        self.command("enabling translation", regs::GCMD_TE, true)
    }
}

/// The units that translate.
#[derive(Debug)]
pub(super) struct Units([Option<Unit>; MAX_UNITS]);

impl Units {
    /// Unmasks every unit's fault event.
    pub(super) fn arm(&self) {
        for u in self.0.iter().flatten() {
            u.regs.write32(regs::FECTL, 0);
        }
    }

    /// Takes every unit's fault records.
    pub(super) fn take_faults(&self, each: &mut dyn FnMut(DmaFault)) {
        for u in self.0.iter().flatten() {
            u.take_faults(|f| {
                each(DmaFault {
                    source: f.source,
                    address: Some(f.address),
                    write: Some(f.write),
                    why: match f.reason {
                        4..=6 => "not its memory",
                        _ => f.reason_name(),
                    },
                })
            });
        }
    }
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
    let base = first.regs.0;
    let active = Active {
        units: AnyUnits::Vtd(Units(units)),
        functions,
        fault_core,
        fault_apic: fault_apic.filter(|&a| regs::fault_event_nmi(a).is_some()),
        poll_cycles: 0,
    };
    announce("VT-d", base, &active, domain_count, levels.bits(), cycles);
    Ok(active)
}
