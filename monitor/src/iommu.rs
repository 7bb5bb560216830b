//! DMA protection: at boot, the IOMMU the firmware announces (an ACPI DMAR table: Intel
//! VT-d, [`vtd`]; else an IVRS table: AMD-Vi, [`amdvi`]) gets one domain per sandbox that
//! owns PCI functions (its RAM and channel windows, guest-physical -> host-physical,
//! exactly as its EPT/NPT), translation for each assigned function only (every other
//! function's DMA is refused), its caches invalidated, and translation on. Only then may
//! a sandbox turn its function's bus mastering on (`pci::set_dma`); without an IOMMU,
//! only a function whose manifest entry says `dma = "unprotected"` may, and the boot log
//! says so.
//!
//! Faults: the unit's fault interrupt is an NMI (VT-d: FEDATA delivery mode 100b;
//! AMD-Vi: the same message in its PCI function's MSI capability) to one vCPU core, the
//! first core of the first sandbox with a protected function (the "fault core"). An NMI
//! there either exits its guest (NMI exiting / the NMI intercept, both backends) or lands
//! on the vCPU cores' NMI gate in the monitor; either way the fault core looks at the
//! unit's faults before its next entry ([`before_entry`]), or, once its own sandbox has
//! ended or while it waits for a restart, right after the NMI ends its halt ([`idle`]),
//! when any NMI arrived since it last looked. So the core that gets the NMI handles the
//! fault in every state it can be in, and the interrupt never needs retargeting. It reads
//! and clears the fault records, prints one line per fault, turns the function's bus
//! mastering off, and marks the owner: the owner's vCPUs take the mark before their next
//! entry as a fault (`FaultKind::Dma`), so the sandbox stops through the usual stop
//! protocol (`vmx::lifecycle`) and its `on_fault` policy; the owner's cores get an NMI
//! (and a doorbell, should one sleep in `WAIT`) when the owner is another sandbox. Other
//! sandboxes go on. The fault interrupt stays masked until the fault core first runs its
//! vCPU (an NMI before that would reach the platform IDT).
//!
//! AMD-Vi units are also polled, at most once a millisecond, before any vCPU's entry:
//! QEMU 7.2's amd-iommu never writes its event log nor raises its interrupt (see
//! [`amdvi`]), so there the poll is what notices a refused DMA.
//!
//! Interrupts: with VT-d units that remap interrupts, every device and I/O APIC interrupt
//! goes through the units' remapping table and compatibility-format messages are blocked
//! (see [`vtd`]); a refused interrupt is reported like a refused DMA ("interrupt fault")
//! and stops the device's owner the same way. With AMD-Vi, when the IVRS names the I/O
//! APIC, each protected function and the I/O APIC get a remapping table, every other
//! device ID's interrupts are blocked (see [`amdvi`]); QEMU 7.2 reports no refused
//! interrupt, so there they are dropped without a report.
//!
//! Limits: faults are reported per unit, in VT-d's legacy (not scalable) mode; the unit's
//! fault event is never remapped, so the fault core's APIC ID must fit 8 bits; AMD-Vi
//! without the I/O APIC in its IVRS does not remap: it blocks every interrupt of a
//! protected function (device table entry IV = 1, IntCtl = 00b) and the monitor refuses
//! their MSI, so they use INTx.

mod amdvi;
mod vtd;

use crate::arch::tsc;
use crate::bootinfo::AcpiRoot;
use crate::cores::{Cores, IdentityMapped};
use crate::sandboxes::{record, state};
use crate::system::System;
use crate::vmx::vcpu::{Action, FaultKind, Vcpu};
use acpi::{AcpiTable, AcpiTables};
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use quest_abi::layout::{CHANNEL_WINDOW_GPA, CHANNEL_WINDOW_SIZE};
use quest_abi::{CoreId, HostPhysAddr, PciAddress, SandboxId, TableView, MAX_SANDBOXES};
use quest_monitor_core::ept::EptMemory;
use quest_monitor_core::pci_msi::Remapped;

/// Most protected functions.
const MAX_FUNCTIONS: usize = 64;
/// Every address a domain may map lies below this (RAM, directory, channel windows).
const DOMAIN_TOP: u64 = CHANNEL_WINDOW_GPA + CHANNEL_WINDOW_SIZE;
/// The identity map covers at least this (`arch::paging::BOOT_MAPPED`).
const MAPPED: u64 = 4 << 30;
/// How long a unit may take to carry out a command, in microseconds.
const COMMAND_TIMEOUT_US: u64 = 100_000;
/// How often AMD-Vi units are polled, in microseconds (see the module documentation).
const POLL_US: u64 = 1000;

/// Why there is no DMA protection.
#[derive(Clone, Copy, Debug)]
enum NoIommu {
    NoAcpi,
    NoTable,
    Dmar(quest_monitor_core::vtd::dmar::DmarError),
    Ivrs(quest_monitor_core::amdvi::ivrs::IvrsError),
    NotCovered,
    Unmapped(u64),
    Levels(u64),
    Domains(u64),
    VtdDomain(&'static str, quest_monitor_core::vtd::domain::DomainError),
    AmdDomain(&'static str, quest_monitor_core::amdvi::domain::DomainError),
    OwnFunction(&'static str, PciAddress),
    Frames,
    Timeout(u64, &'static str),
}

impl fmt::Display for NoIommu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NoAcpi => f.write_str("no ACPI tables"),
            Self::NoTable => f.write_str("no DMAR or IVRS table (no Intel VT-d, no AMD-Vi)"),
            Self::Dmar(e) => write!(f, "{e}"),
            Self::Ivrs(e) => write!(f, "{e}"),
            Self::NotCovered => f.write_str("no IOMMU translates the sandboxes' functions"),
            Self::Unmapped(b) => write!(f, "unit at {b:#x}: registers above 4 GiB"),
            Self::Levels(b) => write!(
                f,
                "unit at {b:#x}: no 3- or 4-level tables for Quest's layout"
            ),
            Self::Domains(b) => write!(f, "unit at {b:#x}: too few domain IDs"),
            Self::VtdDomain(name, e) => write!(f, "sandbox '{name}': {e}"),
            Self::AmdDomain(name, e) => write!(f, "sandbox '{name}': {e}"),
            Self::OwnFunction(name, a) => {
                write!(f, "sandbox '{name}' is given the IOMMU's own function {a}")
            }
            Self::Frames => f.write_str("out of monitor frames for the IOMMU's tables"),
            Self::Timeout(b, what) => write!(f, "unit at {b:#x} did not finish {what}"),
        }
    }
}

/// A unit's register window, identity mapped.
#[derive(Clone, Copy, Debug)]
struct Registers(u64);

impl Registers {
    fn at(self, offset: u64) -> u64 {
        self.0 + offset
    }
    fn read32(self, offset: u64) -> u32 {
        // SAFETY: the unit's constructor checked that every offset Quest uses stays
        // below 4 GiB, identity mapped; these are the unit's registers (firmware-described
        // MMIO).
        unsafe { core::ptr::read_volatile(self.at(offset) as *const u32) }
    }
    fn write32(self, offset: u64, value: u32) {
        // SAFETY: as in `read32`.
        unsafe { core::ptr::write_volatile(self.at(offset) as *mut u32, value) }
    }
    fn read64(self, offset: u64) -> u64 {
        // SAFETY: as in `read32`; 64-bit registers may be read whole (VT-d 10.2, AMD-Vi
        // 3.4).
        unsafe { core::ptr::read_volatile(self.at(offset) as *const u64) }
    }
    fn write64(self, offset: u64, value: u64) {
        // SAFETY: as in `read64`.
        unsafe { core::ptr::write_volatile(self.at(offset) as *mut u64, value) }
    }

    /// Waits until `done` holds (the unit finished `what`).
    fn wait(self, what: &'static str, done: impl Fn(Self) -> bool) -> Result<(), NoIommu> {
        let deadline = tsc::now() + COMMAND_TIMEOUT_US * u64::from(tsc::khz()) / 1000;
        while !done(self) {
            if tsc::now() > deadline {
                return Err(NoIommu::Timeout(self.0, what));
            }
            core::hint::spin_loop();
        }
        Ok(())
    }
}

/// A protected function: its address, owner, the unit (index) that translates it, and
/// the device ID its requests carry there (its own, or an alias: AMD-Vi).
#[derive(Clone, Copy, Debug)]
struct Function {
    address: PciAddress,
    sandbox: SandboxId,
    unit: usize,
    requester: u16,
}

/// The protected function at `f` and its index in `functions` (the index picks its
/// interrupt remapping entries), if `f` is one.
fn find_function(functions: &[Option<Function>], f: PciAddress) -> Option<(usize, Function)> {
    functions
        .iter()
        .enumerate()
        .find_map(|(k, g)| g.filter(|g| g.address == f).map(|g| (k, g)))
}

/// A DMA a unit refused, in the words the report uses.
#[derive(Clone, Copy, Debug)]
struct DmaFault {
    /// The requester.
    source: PciAddress,
    /// The address it used (`None`: the unit did not say).
    address: Option<u64>,
    /// A write (`None`: the unit did not say).
    write: Option<bool>,
    /// Why it was refused.
    why: &'static str,
    /// An interrupt the unit refused (interrupt remapping), not a memory access.
    interrupt: bool,
}

/// The units in use.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // One value, in a static.
enum Units {
    Vtd(vtd::Units),
    AmdVi(amdvi::Units),
}

/// What the monitor keeps once the units translate.
#[derive(Debug)]
struct Active {
    units: Units,
    functions: [Option<Function>; MAX_FUNCTIONS],
    fault_core: Option<CoreId>,
    fault_apic: Option<u32>,
    /// TSC cycles between polls (0: not polled).
    poll_cycles: u64,
}

impl Active {
    fn functions(&self) -> impl Iterator<Item = &Function> {
        self.functions.iter().flatten()
    }

    fn owner(&self, f: PciAddress) -> Option<SandboxId> {
        self.functions().find(|g| g.address == f).map(|g| g.sandbox)
    }

    /// Unmasks the fault interrupt.
    fn arm(&self) {
        match &self.units {
            Units::Vtd(u) => u.arm(),
            Units::AmdVi(u) => u.arm(),
        }
    }

    /// Takes every fault the units hold (clearing them), passing each to `each`.
    fn take_faults(&self, each: &mut dyn FnMut(DmaFault)) {
        match &self.units {
            Units::Vtd(u) => u.take_faults(each),
            Units::AmdVi(u) => u.take_faults(&self.functions, each),
        }
    }
}

static ACTIVE: spin::Once<Active> = spin::Once::new();
/// The fault core unmasked the fault interrupt.
static ARMED: AtomicBool = AtomicBool::new(false);
/// NMI exits of all vCPUs ([`nmi_exit`]).
static NMI_EXITS: AtomicU64 = AtomicU64::new(0);
/// NMIs (exits and gate) when the fault core last looked at the faults.
static NMIS_SEEN: AtomicU64 = AtomicU64::new(0);
/// TSC of the next poll (polled units only).
static NEXT_POLL: AtomicU64 = AtomicU64::new(0);
/// Per sandbox: a DMA fault to stop it for (bit 0), a write (bit 1), the direction known
/// (bit 2), the address known (bit 3), the page (63:12).
static PENDING: [AtomicU64; MAX_SANDBOXES] = [const { AtomicU64::new(0) }; MAX_SANDBOXES];
/// Held while the faults are read.
static SERVICE: spin::Mutex<()> = spin::Mutex::new(());

/// IOMMU tables in identity-mapped frames of the monitor's pool; with a unit whose
/// walks do not snoop the caches (VT-d's `ExtCapability::coherent`), every written line
/// is flushed.
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
        // SAFETY: `table` is a frame of the pool allocated for these tables (identity
        // mapped), index < 512.
        unsafe { table.add(index % 512).read_volatile() }
    }
    fn write(&mut self, table: HostPhysAddr, index: usize, value: u64) {
        let entry = table.as_u64() + 8 * (index % 512) as u64;
        // SAFETY: as in `read`; a unit walks these tables only once they are complete,
        // or after the invalidation that follows a change.
        unsafe { (entry as *mut u64).write_volatile(value) };
        self.flush(entry, 8);
    }
}

/// The name of sandbox `s`.
fn name(table: &TableView<'static>, s: SandboxId) -> &'static str {
    table.sandbox(s).map_or("?", |v| v.name())
}

/// The bytes of the firmware's ACPI table `T` (`None`: there is none).
fn acpi_table<T: AcpiTable>(root: AcpiRoot) -> Result<Option<&'static [u8]>, NoIommu> {
    // SAFETY: the root comes from GRUB's copy of the firmware RSDP; the crate checks
    // signatures and checksums; the tables are identity mapped.
    let tables =
        unsafe { AcpiTables::from_rsdt(IdentityMapped, root.revision, root.address as usize) }
            .map_err(|_| NoIommu::NoAcpi)?;
    let Ok(t) = tables.find_table::<T>() else {
        return Ok(None);
    };
    let len = t.get().header().length as usize;
    // SAFETY: the crate validated `length` bytes at this identity-mapped address (its
    // checksum covers them); firmware tables are never written.
    Ok(Some(unsafe {
        core::slice::from_raw_parts(t.physical_start() as *const u8, len)
    }))
}

/// The protected functions' fault core and its APIC ID: the first core of the first
/// sandbox with a function that may start.
fn fault_core(functions: &[Option<Function>], cores: &Cores) -> (Option<CoreId>, Option<u32>) {
    let core = functions
        .iter()
        .flatten()
        .filter(|f| crate::pci::may_start(f.sandbox))
        .find_map(|f| record(f.sandbox).placement().cores.of_vcpu(0));
    let apic = core.and_then(|c| cores.apic_ids().get(c.index()).copied());
    (core, apic)
}

/// Sets up DMA protection for every PCI function given to a sandbox and prints one line
/// (boot core, after `pci::init`, the placement and the frame pool, before any AP runs).
/// Never inlined, nor is anything below that runs once or rarely: their locals (tables
/// of units and functions) would otherwise stay in the frames of the boot core's
/// long-lived callers, and its 64 KiB stack lies right above the boot page tables.
#[inline(never)]
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
        Ok(active) => {
            ACTIVE.call_once(|| active);
            true
        }
        Err(why) => {
            crate::println!("quest: no IOMMU: {why}");
            false
        }
    };
    let is_protected = |f| ACTIVE.get().is_some_and(|a| a.owner(f).is_some());
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

/// Finds the firmware's IOMMU (DMAR first, then IVRS) and turns it on.
fn protect(
    table: &TableView<'static>,
    acpi: Option<AcpiRoot>,
    channel_hpas: &[HostPhysAddr],
    cores: &Cores,
) -> Result<Active, NoIommu> {
    let root = acpi.ok_or(NoIommu::NoAcpi)?;
    if let Some(dmar) = acpi_table::<vtd::DmarTable>(root)? {
        return vtd::protect(table, dmar, channel_hpas, cores);
    }
    if let Some(ivrs) = acpi_table::<amdvi::IvrsTable>(root)? {
        return amdvi::protect(table, ivrs, channel_hpas, cores);
    }
    Err(NoIommu::NoTable)
}

/// The boot line of an IOMMU that translates.
fn announce(kind: &str, base: u64, active: &Active, domains: usize, bits: u8, cycles: u64) {
    let devices = active.functions().count();
    let faults = match (active.fault_apic, active.poll_cycles) {
        (Some(_), 0) => "faults by NMI",
        (Some(_), _) => "faults by NMI, polled every 1 ms",
        (None, 0) => "no fault interrupt",
        (None, _) => "no fault interrupt, polled every 1 ms",
    };
    crate::println!(
        "quest: IOMMU {kind} at {base:#x}: {devices} devices in {domains} domains ({bits}-bit tables built in {cycles} cycles; {faults})"
    );
}

/// The message protected function `f` sends for an interrupt to physical APIC ID
/// `apic_id` with `vector` (`quest_monitor_core::pci_msi::Remap`): the compatibility
/// format without interrupt remapping, else a remappable one (see [`vtd`]).
pub fn remap_msi(f: PciAddress, apic_id: u32, vector: u8) -> Remapped {
    match ACTIVE.get() {
        Some(Active {
            units: Units::Vtd(u),
            functions,
            ..
        }) => u.remap_msi(functions, f, apic_id, vector),
        Some(
            a @ Active {
                units: Units::AmdVi(u),
                functions,
                ..
            },
        ) if a.owner(f).is_some() => u.remap_msi(functions, f, apic_id, vector),
        _ => Remapped::Compatibility,
    }
}

/// Whether `v` runs on the fault core and an NMI came since it last looked at the
/// faults: then a `WAIT` it sleeps in returns, so that [`before_entry`] looks.
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

/// On the fault core: looks at the faults when an NMI came since the last look.
fn after_nmi(sys: &System, active: &Active, here: Option<SandboxId>) {
    // Plain loads first: only the fault core writes NMIS_SEEN.
    let nmis = NMI_EXITS.load(Ordering::Relaxed) + crate::vmx::nmis_handled();
    if NMIS_SEEN.load(Ordering::Relaxed) != nmis {
        NMIS_SEEN.store(nmis, Ordering::Release);
        let _one = SERVICE.lock();
        service(sys, active, here);
    }
}

/// Before each VM entry of `v`: on the fault core, unmask the fault interrupt once and
/// look at the faults when an NMI came since the last look; on any core, poll units that
/// need it when the time has come; for every vCPU, a DMA fault of its sandbox stops it.
pub fn before_entry(v: &Vcpu) -> Option<Action> {
    let active = ACTIVE.get()?;
    // Plain loads first: this runs before every entry; only the fault core writes the
    // first two, and a mark is rare.
    if Some(v.core) == active.fault_core {
        if !ARMED.load(Ordering::Relaxed) {
            // Under the service lock: a poll on another core may be restarting a log.
            let _one = SERVICE.lock();
            active.arm();
            ARMED.store(true, Ordering::Release);
        }
        after_nmi(v.sys, active, Some(v.sandbox));
    }
    if active.poll_cycles != 0 {
        let now = tsc::now();
        if now >= NEXT_POLL.load(Ordering::Relaxed) {
            NEXT_POLL.store(now + active.poll_cycles, Ordering::Relaxed);
            if let Some(_one) = SERVICE.try_lock() {
                service(v.sys, active, Some(v.sandbox));
            }
        }
    }
    let mark = &PENDING[v.sandbox.index() % MAX_SANDBOXES];
    if mark.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let pending = mark.swap(0, Ordering::AcqRel);
    if pending == 0 {
        return None;
    }
    let write = (pending & 4 != 0).then_some(pending & 2 != 0);
    let kind = FaultKind::Dma { write };
    Some(if pending & 8 != 0 {
        Action::fault_at(kind, pending & !0xfff)
    } else {
        Action::fault(kind)
    })
}

/// A vCPU core in one of the monitor's idle loops (parked after its sandbox ended, or
/// waiting for a restart), after an NMI ended its halt or while it spins: on the fault
/// core, once armed (it ran its vCPU, so the vCPU NMI gate is its IDT's), looks at the
/// faults when an NMI came since the last look.
#[inline(never)]
pub fn idle() {
    let Some(active) = ACTIVE.get() else {
        return;
    };
    if !ARMED.load(Ordering::Acquire)
        || NMIS_SEEN.load(Ordering::Relaxed)
            == NMI_EXITS.load(Ordering::Relaxed) + crate::vmx::nmis_handled()
        || active.fault_apic != Some(crate::arch::apic::id())
    {
        return;
    }
    if let Some(sys) = crate::smp::system() {
        after_nmi(sys, active, None);
    }
}

/// Reads and clears every fault (the caller holds [`SERVICE`]); reports each, turns its
/// function's bus mastering off and marks (and wakes) its sandbox. `here`: the sandbox
/// whose vCPU runs this (it sees the mark before its next entry without a wake-up).
#[inline(never)]
#[cold]
fn service(sys: &System, active: &Active, here: Option<SandboxId>) {
    active.take_faults(&mut |f| {
        let owner = active.owner(f.source);
        crate::pci::stop_bus_master(f.source);
        let Some(s) = owner else {
            crate::println!(
                "quest: {}: device {} of no sandbox {}; bus mastering off",
                f.kind(),
                f.source,
                Access(&f)
            );
            return;
        };
        crate::println!(
            "quest: {}: device {} of sandbox '{}' {}; sandbox stopped",
            f.kind(),
            f.source,
            name(&sys.table, s),
            Access(&f)
        );
        let mut mark = 1;
        if let Some(w) = f.write {
            mark |= 4 | if w { 2 } else { 0 };
        }
        if let Some(a) = f.address {
            mark |= 8 | (a & !0xfff);
        }
        PENDING[s.index() % MAX_SANDBOXES].store(mark, Ordering::Release);
        if Some(s) != here {
            wake(sys, s);
        }
    });
}

/// What a fault did, for its report line: `wrote 0x400000 (not its memory)`.
struct Access<'a>(&'a DmaFault);

impl DmaFault {
    /// The report's first words.
    fn kind(&self) -> &'static str {
        if self.interrupt {
            "interrupt fault"
        } else {
            "DMA fault"
        }
    }
}

impl fmt::Display for Access<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.interrupt {
            return write!(f, "sent an interrupt it may not ({})", d.why);
        }
        match (d.write, d.address) {
            (Some(w), Some(a)) => {
                let verb = if w { "wrote" } else { "read" };
                write!(f, "{verb} {a:#x} ({})", d.why)
            }
            (_, Some(a)) => write!(f, "accessed {a:#x} ({})", d.why),
            (_, None) => write!(f, "made a DMA the IOMMU refused ({})", d.why),
        }
    }
}

/// Gets every vCPU of sandbox `s` to its next entry check: an NMI each, and a doorbell
/// for one asleep in `WAIT` (it returns to its run loop, which stops it before the guest
/// sees the wake-up).
fn wake(sys: &System, s: SandboxId) {
    let st = state(s);
    for (i, &core) in record(s).placement().cores.as_slice().iter().enumerate() {
        if let Some(p) = st.doorbell_pending.get(i) {
            p.store(1, Ordering::SeqCst);
        }
        if let Some(apic_id) = sys.apic_id(core) {
            // SAFETY: a vCPU core of sandbox `s`: in its guest the NMI exits, in the
            // monitor the vCPU NMI gate ends a sleep or just returns.
            unsafe { crate::arch::apic::send_nmi(apic_id) };
        }
    }
}
