//! DMA protection with Intel VT-d: at boot, the unit(s) of the ACPI DMAR table get one
//! domain per sandbox that owns PCI functions (its RAM and channel windows, guest-physical
//! -> host-physical, exactly as its EPT/NPT: `quest_monitor_core::vtd::domain`), a
//! context entry for each assigned function only (every other function's DMA faults),
//! register-based invalidation, and translation on. Only then may a sandbox turn its
//! function's bus mastering on (`pci::set_dma`); without an IOMMU, only a function whose
//! manifest entry says `dma = "unprotected"` may, and the boot log says so.
//!
//! Faults: the unit's fault event is an NMI (FEDATA delivery mode 100b) to one vCPU core,
//! the first core of the first sandbox with a protected function (the "fault core"). An
//! NMI there either exits its guest (NMI exiting / the NMI intercept, both backends) or
//! lands on the vCPU cores' NMI gate in the monitor; either way the fault core looks at
//! the fault status before its next entry ([`before_entry`]) when any NMI arrived since
//! it last looked. It reads and clears the primary fault records, prints one line per
//! fault, turns the function's bus mastering off, and marks the owner: the owner's vCPUs
//! take the mark before their next entry as a fault (`FaultKind::Dma`), so the sandbox
//! stops through the usual stop protocol (`vmx::lifecycle`) and its `on_fault` policy;
//! the owner's cores get an NMI (and a doorbell, should one sleep in `WAIT`) when the
//! owner is another sandbox. Other sandboxes go on. The fault event stays masked until
//! the fault core runs its vCPU (an NMI before that would reach the platform IDT).
//!
//! Limits: the fault core must run (an owner whose fault core's sandbox has ended learns
//! of its faults only when that core runs again); faults are reported per unit, in
//! legacy (not scalable) mode; interrupt remapping is not used (QEMU runs with
//! `intremap=off`), so the fault core's APIC ID must fit 8 bits.

use crate::arch::tsc;
use crate::bootinfo::AcpiRoot;
use crate::cores::{Cores, IdentityMapped};
use crate::sandboxes::{record, state};
use crate::vmx::vcpu::{Action, FaultKind, Vcpu};
use acpi::sdt::{SdtHeader, Signature};
use acpi::{AcpiTable, AcpiTables};
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use quest_abi::layout::{CHANNEL_WINDOW_GPA, CHANNEL_WINDOW_SIZE};
use quest_abi::{CoreId, HostPhysAddr, PciAddress, SandboxId, TableView, MAX_SANDBOXES};
use quest_monitor_core::ept::EptMemory;
use quest_monitor_core::sandbox_ept::HostPlacement;
use quest_monitor_core::vtd::dmar::{Dmar, MAX_UNITS};
use quest_monitor_core::vtd::domain::{build_domain, DomainError, RootTable};
use quest_monitor_core::vtd::regs::{self, Capability, ExtCapability, FaultRecord};

/// Most protected functions.
const MAX_FUNCTIONS: usize = 64;
/// Every address a domain may map lies below this (RAM, directory, channel windows).
const DOMAIN_TOP: u64 = CHANNEL_WINDOW_GPA + CHANNEL_WINDOW_SIZE;
/// The identity map covers at least this (`arch::paging::BOOT_MAPPED`).
const MAPPED: u64 = 4 << 30;
/// How long a unit may take to carry out a command, in microseconds.
const COMMAND_TIMEOUT_US: u64 = 100_000;

/// The DMAR table as the `acpi` crate finds it (validated header and checksum); the
/// remapping structures follow the header.
#[repr(C, packed)]
struct DmarTable {
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

/// A unit's register page(s), identity mapped.
#[derive(Clone, Copy, Debug)]
struct Registers(u64);

impl Registers {
    fn at(self, offset: u64) -> u64 {
        self.0 + offset
    }
    fn read32(self, offset: u64) -> u32 {
        // SAFETY: `Unit::new` checked that every offset Quest uses stays below 4 GiB,
        // identity mapped; these are the unit's registers (firmware-described MMIO).
        unsafe { core::ptr::read_volatile(self.at(offset) as *const u32) }
    }
    fn write32(self, offset: u64, value: u32) {
        // SAFETY: as in `read32`.
        unsafe { core::ptr::write_volatile(self.at(offset) as *mut u32, value) }
    }
    fn read64(self, offset: u64) -> u64 {
        // SAFETY: as in `read32`; 64-bit registers may be read whole (VT-d 10.2).
        unsafe { core::ptr::read_volatile(self.at(offset) as *const u64) }
    }
    fn write64(self, offset: u64, value: u64) {
        // SAFETY: as in `read64`.
        unsafe { core::ptr::write_volatile(self.at(offset) as *mut u64, value) }
    }
}

/// One unit Quest uses.
#[derive(Clone, Copy, Debug)]
struct Unit {
    regs: Registers,
    cap: Capability,
    ecap: ExtCapability,
}

/// Why there is no DMA protection.
#[derive(Clone, Copy, Debug)]
enum NoIommu {
    NoAcpi,
    NoDmar,
    Dmar(quest_monitor_core::vtd::dmar::DmarError),
    NotCovered,
    Unmapped(u64),
    Levels(u64),
    Domains(u64),
    Domain(&'static str, DomainError),
    Timeout(u64, &'static str),
}

impl fmt::Display for NoIommu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NoAcpi => f.write_str("no ACPI tables"),
            Self::NoDmar => f.write_str("no DMAR table (no Intel VT-d)"),
            Self::Dmar(e) => write!(f, "{e}"),
            Self::NotCovered => f.write_str("no DMAR unit translates the sandboxes' functions"),
            Self::Unmapped(b) => write!(f, "unit at {b:#x}: registers above 4 GiB"),
            Self::Levels(b) => write!(
                f,
                "unit at {b:#x}: no 3- or 4-level tables for Quest's layout"
            ),
            Self::Domains(b) => write!(f, "unit at {b:#x}: too few domain IDs"),
            Self::Domain(name, e) => write!(f, "sandbox '{name}': {e}"),
            Self::Timeout(b, what) => write!(f, "unit at {b:#x} did not finish {what}"),
        }
    }
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

    /// Waits until `done` holds (the unit finished `what`).
    fn wait(&self, what: &'static str, done: impl Fn(Registers) -> bool) -> Result<(), NoIommu> {
        let deadline = tsc::now() + COMMAND_TIMEOUT_US * u64::from(tsc::khz()) / 1000;
        while !done(self.regs) {
            if tsc::now() > deadline {
                return Err(NoIommu::Timeout(self.regs.0, what));
            }
            core::hint::spin_loop();
        }
        Ok(())
    }

    /// Sets GCMD command `bit` and waits for its status (`set`: until the status bit is
    /// set; else until it clears).
    fn command(&self, what: &'static str, bit: u32, set: bool) -> Result<(), NoIommu> {
        let gsts = self.regs.read32(regs::GSTS);
        self.regs.write32(regs::GCMD, regs::gcmd(gsts, bit));
        self.wait(what, |r| (r.read32(regs::GSTS) & bit != 0) == set)
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
    /// fault event an NMI to `fault_apic` (masked until the fault core first enters its guest:
    /// [`before_entry`]).
    fn enable(&self, root: HostPhysAddr, fault_apic: Option<u32>) -> Result<(), NoIommu> {
        let r = self.regs;
        r.write64(regs::RTADDR, root.as_u64());
        self.command("setting the root table", regs::GCMD_SRTP, true)?;
        if self.cap.rwbf() {
            self.command("a write-buffer flush", regs::GCMD_WBF, false)?;
        }
        r.write64(regs::CCMD, regs::CCMD_ICC | regs::CCMD_GLOBAL);
        self.wait("the context-cache invalidation", |r| {
            r.read64(regs::CCMD) & regs::CCMD_ICC == 0
        })?;
        let iotlb = self.ecap.iotlb_offset() + 8;
        r.write64(
            iotlb,
            regs::IOTLB_IVT | regs::IOTLB_GLOBAL | self.cap.drains(),
        );
        self.wait("the IOTLB invalidation", |r| {
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

/// What the monitor keeps once the units translate.
#[derive(Debug)]
struct Active {
    units: [Option<Unit>; MAX_UNITS],
    functions: [Option<(PciAddress, SandboxId)>; MAX_FUNCTIONS],
    fault_core: Option<CoreId>,
}

static ACTIVE: spin::Once<Active> = spin::Once::new();
/// The fault core unmasked the fault event.
static ARMED: AtomicBool = AtomicBool::new(false);
/// NMI exits of all vCPUs ([`nmi_exit`]).
static NMI_EXITS: AtomicU64 = AtomicU64::new(0);
/// NMIs (exits and gate) when the fault core last looked at the fault status.
static NMIS_SEEN: AtomicU64 = AtomicU64::new(0);
/// Per sandbox: a DMA fault to stop it for (bit 0), a write (bit 1), the page (63:12).
static PENDING: [AtomicU64; MAX_SANDBOXES] = [const { AtomicU64::new(0) }; MAX_SANDBOXES];
/// Held while the fault records are read.
static SERVICE: spin::Mutex<()> = spin::Mutex::new(());

/// Domain tables in identity-mapped frames of the monitor's pool; with a unit whose
/// walks do not snoop the caches (`ExtCapability::coherent`), every written line is
/// flushed.
struct PoolFrames {
    flush: bool,
}

impl PoolFrames {
    fn flush(&self, addr: u64, len: u64) {
        if !self.flush {
            return;
        }
        for line in (addr..addr + len).step_by(64) {
            // SAFETY: CLFLUSH of an identity-mapped frame of the monitor's pool.
            unsafe { core::arch::x86_64::_mm_clflush(line as *const u8) };
        }
        // SAFETY: MFENCE orders the flushes before the unit is told to look.
        unsafe { core::arch::x86_64::_mm_mfence() };
    }
}

impl EptMemory for PoolFrames {
    fn alloc_table(&mut self) -> Option<HostPhysAddr> {
        let frame = crate::frame_pool::alloc_zeroed(1)?;
        self.flush(frame, 4096);
        Some(HostPhysAddr::new(frame))
    }
    fn read(&self, table: HostPhysAddr, index: usize) -> u64 {
        let table = table.as_u64() as *const u64;
        // SAFETY: `table` is a frame allocated above (identity mapped), index < 512.
        unsafe { table.add(index % 512).read_volatile() }
    }
    fn write(&mut self, table: HostPhysAddr, index: usize, value: u64) {
        let entry = table.as_u64() + 8 * (index % 512) as u64;
        // SAFETY: as in `read`; no unit walks these tables before they are complete.
        unsafe { (entry as *mut u64).write_volatile(value) };
        self.flush(entry, 8);
    }
}

/// The name of sandbox `s`.
fn name(table: &TableView<'static>, s: SandboxId) -> &'static str {
    table.sandbox(s).map_or("?", |v| v.name())
}

/// Sets up DMA protection for every PCI function given to a sandbox and prints one line
/// (boot core, after `pci::init`, the placement and the frame pool, before any AP runs).
pub fn init(
    table: &TableView<'static>,
    acpi: Option<AcpiRoot>,
    channel_hpas: &[HostPhysAddr],
    cores: &Cores,
) {
    let mut any = false;
    crate::pci::assigned(|_, _, _| any = true);
    if !any {
        return;
    }
    let protected = match protect(table, acpi, channel_hpas, cores) {
        Ok(()) => true,
        Err(why) => {
            crate::println!("quest: no IOMMU: {why}");
            false
        }
    };
    let is_protected = |f| {
        ACTIVE
            .get()
            .is_some_and(|a| a.functions.iter().flatten().any(|&(g, _)| g == f))
    };
    crate::pci::assigned(|s, f, unprotected_ok| {
        let safe = protected && is_protected(f);
        crate::pci::set_dma(s, f, safe || unprotected_ok);
        if !safe && unprotected_ok {
            crate::println!(
                "quest: device {f} of sandbox '{}' may master the bus without DMA protection (dma = \"unprotected\")",
                name(table, s)
            );
        }
    });
}

/// Builds the domains and context entries and turns the units on.
fn protect(
    table: &TableView<'static>,
    acpi: Option<AcpiRoot>,
    channel_hpas: &[HostPhysAddr],
    cores: &Cores,
) -> Result<(), NoIommu> {
    let dmar = Dmar::parse(dmar_bytes(acpi.ok_or(NoIommu::NoAcpi)?)?).map_err(NoIommu::Dmar)?;
    // Which unit each function is behind (segment 0: all Quest scans).
    let mut functions = [None; MAX_FUNCTIONS];
    let mut used = [false; MAX_UNITS];
    let mut n = 0;
    crate::pci::assigned(|s, f, _| {
        if let (Some(u), Some(slot)) = (
            dmar.unit_for(0, f, crate::pci::bridge_buses),
            functions.get_mut(n),
        ) {
            *slot = Some((f, s, u));
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
        .map(|&(_, s, _)| s.index() as u32 + 1)
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
    for &(f, s, u) in functions.iter().flatten() {
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
                .map_err(|e| NoIommu::Domain(name(table, s), e))?;
                domain_count += 1;
                domains[i] = Some(d.root());
                d.root()
            }
        };
        let root = match &mut roots[u] {
            Some(r) => r,
            slot => slot.insert(
                RootTable::new(PoolFrames { flush })
                    .map_err(|e| NoIommu::Domain(name(table, s), e))?,
            ),
        };
        root.add(f, sl, levels, s.index() as u16 + 1)
            .map_err(|e| NoIommu::Domain(name(table, s), e))?;
    }
    let cycles = tsc::now() - started;

    // The fault event goes to the first core of the first sandbox with a function.
    let fault_core = functions
        .iter()
        .flatten()
        .find_map(|&(_, s, _)| record(s).placement().cores.of_vcpu(0));
    let fault_apic = fault_core.and_then(|c| cores.apic_ids().get(c.index()).copied());
    for (u, root) in units.iter().zip(&roots) {
        if let (Some(u), Some(root)) = (u, root) {
            u.enable(root.root(), fault_apic)?;
        }
    }
    let devices = functions.iter().flatten().count();
    ACTIVE.call_once(|| Active {
        units,
        functions: functions.map(|f| f.map(|(f, s, _)| (f, s))),
        fault_core,
    });
    let base = first.regs.0;
    let width = levels.bits();
    let faults = match fault_apic.and_then(regs::fault_event_nmi) {
        Some(_) => "faults by NMI",
        None => "no fault interrupt (APIC ID above 255)",
    };
    crate::println!(
        "quest: IOMMU VT-d at {base:#x}: {devices} devices in {domain_count} domains ({width}-bit tables built in {cycles} cycles; {faults})"
    );
    Ok(())
}

/// The DMAR table's bytes.
fn dmar_bytes(root: AcpiRoot) -> Result<&'static [u8], NoIommu> {
    // SAFETY: the root comes from GRUB's copy of the firmware RSDP; the crate checks
    // signatures and checksums; the tables are identity mapped.
    let tables =
        unsafe { AcpiTables::from_rsdt(IdentityMapped, root.revision, root.address as usize) }
            .map_err(|_| NoIommu::NoAcpi)?;
    let dmar = tables
        .find_table::<DmarTable>()
        .map_err(|_| NoIommu::NoDmar)?;
    let len = dmar.header.length as usize;
    // SAFETY: the crate validated `length` bytes at this identity-mapped address (its
    // checksum covers them); firmware tables are never written.
    Ok(unsafe { core::slice::from_raw_parts(dmar.physical_start() as *const u8, len) })
}

/// Whether `v` runs on the fault core and an NMI came since it last looked at the fault
/// records: then a `WAIT` it sleeps in returns, so that [`before_entry`] looks.
pub fn fault_signalled(v: &Vcpu) -> bool {
    ACTIVE.get().is_some_and(|a| {
        Some(v.core) == a.fault_core
            && NMIS_SEEN.load(Ordering::Acquire)
                != NMI_EXITS.load(Ordering::Relaxed) + crate::vmx::nmis_handled()
    })
}

/// Counts an NMI exit (`VcpuOps::nmi_taken`, both backends).
pub fn nmi_exit() {
    NMI_EXITS.fetch_add(1, Ordering::Relaxed);
}

/// Before each VM entry of `v`: on the fault core, unmask the fault event once and look
/// at the fault records when an NMI came since the last look; for every vCPU, a DMA fault
/// of its sandbox stops it.
pub fn before_entry(v: &Vcpu) -> Option<Action> {
    let active = ACTIVE.get()?;
    // Plain loads first: this runs before every entry; only the fault core writes the
    // first two, and a mark is rare.
    if Some(v.core) == active.fault_core {
        if !ARMED.load(Ordering::Relaxed) {
            ARMED.store(true, Ordering::Relaxed);
            for u in active.units.iter().flatten() {
                u.regs.write32(regs::FECTL, 0);
            }
        }
        let nmis = NMI_EXITS.load(Ordering::Relaxed) + crate::vmx::nmis_handled();
        if NMIS_SEEN.load(Ordering::Relaxed) != nmis {
            NMIS_SEEN.store(nmis, Ordering::Release);
            service(v, active);
        }
    }
    let mark = &PENDING[v.sandbox.index() % MAX_SANDBOXES];
    if mark.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let pending = mark.swap(0, Ordering::AcqRel);
    (pending != 0).then(|| {
        Action::fault_at(
            FaultKind::Dma {
                write: pending & 2 != 0,
            },
            pending & !0xfff,
        )
    })
}

/// Reads and clears every fault; reports each, turns its function's bus mastering off
/// and marks (and wakes) its sandbox.
fn service(v: &Vcpu, active: &Active) {
    let _one = SERVICE.lock();
    for u in active.units.iter().flatten() {
        u.take_faults(|f| {
            let owner = active.functions.iter().flatten().find(|&&(g, _)| g == f.source).map(|&(_, s)| s);
            crate::pci::stop_bus_master(f.source);
            let access = if f.write { "wrote" } else { "read" };
            let why = match f.reason {
                4..=6 => "not its memory",
                _ => f.reason_name(),
            };
            let Some(s) = owner else {
                crate::println!(
                    "quest: DMA fault: device {} of no sandbox {access} {:#x} ({why}); bus mastering off",
                    f.source, f.address
                );
                return;
            };
            crate::println!(
                "quest: DMA fault: device {} of sandbox '{}' {access} {:#x} ({why}); sandbox stopped",
                f.source,
                name(&v.sys.table, s),
                f.address
            );
            let mark = f.address | 1 | if f.write { 2 } else { 0 };
            PENDING[s.index() % MAX_SANDBOXES].store(mark, Ordering::Release);
            if s != v.sandbox {
                wake(v, s);
            }
        });
    }
}

/// Gets every vCPU of sandbox `s` to its next entry check: an NMI each, and a doorbell
/// for one asleep in `WAIT` (it returns to its run loop, which stops it before the guest
/// sees the wake-up).
fn wake(v: &Vcpu, s: SandboxId) {
    let st = state(s);
    for (i, &core) in record(s).placement().cores.as_slice().iter().enumerate() {
        if let Some(p) = st.doorbell_pending.get(i) {
            p.store(1, Ordering::SeqCst);
        }
        if let Some(apic_id) = v.sys.apic_id(core) {
            // SAFETY: a vCPU core of sandbox `s`: in its guest the NMI exits, in the
            // monitor the vCPU NMI gate ends a sleep or just returns.
            unsafe { crate::arch::apic::send_nmi(apic_id) };
        }
    }
}
