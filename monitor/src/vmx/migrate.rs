//! Migrating a sandbox to its standby placement (`quest_abi::hypercall::Hypercall::Migrate`).
//!
//! Protocol (the park protocol of `lifecycle`, with its own stop value):
//! 1. The requester (a vCPU of the sandbox itself or of a controller) decides
//!    (`quest_monitor_core::migration::admit`) and takes the sandbox's `busy` flag.
//! 2. Pre-copy ([`precopy`], when the RAM moves, the CPU has EPT dirty flags and the
//!    request did not ask for a stop-and-copy, `MIGRATE_STOP_AND_COPY`): the
//!    requester hands the job to the first standby core, which waits in [`stand_by`]
//!    and copies the RAM to the standby region while the sandbox runs, in rounds
//!    (`quest_monitor_core::precopy`): each round marks the dirty pages in the EPT
//!    (clearing their dirty bits), has every vCPU drop its cached translations
//!    ([`flush`]: a vCPU in its guest gets an NMI, leaves it and does INVEPT before its
//!    next entry, [`entering`]; one outside its guest will do so before it enters), then
//!    copies the marked pages. When what was dirtied during a round can be copied within
//!    `max_downtime`, it stops the sandbox (step 3); when that does not happen within
//!    the rounds allowed, or the sandbox stops or relaunches meanwhile, the migration is
//!    abandoned: the destination region is scrubbed, the sandbox runs on untouched.
//!    A requester of the sandbox itself waits in the monitor meanwhile (its other vCPUs
//!    run).
//! 3. The stop: whoever stops (the pre-copy core, or the requester without pre-copy)
//!    notes the TSC, sets `stop` to [`STOP_MIGRATE`] and sends NMIs until every vCPU of
//!    the sandbox has left its core.
//! 4. Each vCPU, before its next VM entry, sees the stop and hands itself off
//!    ([`hand_off`]): the state the VMCS does not hold (XCR0 and the XSAVE area, the
//!    syscall MSRs, CR2, the local x2APIC timer and LVTs) is saved, its VMCS cleared, and
//!    the whole `Vcpu` (registers, console line, VMCS address) put in its standby core's
//!    arrival slot. Its old core then stands by itself.
//! 5. A standby core ([`stand_by`]) takes the arrival, makes the VMCS current, rewrites
//!    its host state for this core, restores the saved state, keeps the guest's TSC
//!    continuous (VMCS TSC offset, `moved_tsc_offset`), and waits for the other vCPUs.
//!    The last to arrive finishes: with a separate standby region it copies what is still
//!    dirty (all of RAM without pre-copy) there; it swaps the placement with the standby
//!    placement (the EPT is rebuilt for the new region), measures the downtime and
//!    releases the stop, which ends the migration (`busy`; a controller's request
//!    returns). vCPU 0's old core then prints the `migrated` record (a console line
//!    takes longer than the rest of the pause on a 115200 baud UART, so it is not part
//!    of it) and scrubs the old region if the RAM moved; until it has (`settling`), it
//!    does not stand by, so a request for the next migration, whose destination is this
//!    old placement, is refused as `DestinationNotFree`. A scrubbed region must stay all zero: [`check_scrubbed`] looks
//!    right before the next copy into it (out of the pause) and at summary time, and
//!    reports one found written (a stray write after the move, or a short scrub).
//!
//! Interrupts: the guest owns its cores' local APICs, so what is pending there is guest
//! state too. [`hand_off`] saves the source core's IRR and ends its in-service vectors
//! (EOI: a guest stopped inside a handler would otherwise leave the vector in service on
//! that core, blocking every vector of its priority class there should the vCPU come
//! back); the destination asks for the pending ones again with self-IPIs. IPIs the other
//! vCPUs send while the sandbox moves also reach the standby cores ([`ipi_cores`]).
//! The source core's IRR cannot be cleared: a vCPU that returns there later may see one
//! stale, spurious interrupt of a vector it uses.
//!
//! Both backends: the protocol, admission, round policy and records are the same; what
//! differs sits behind small functions. On SVM a VMCB is plain memory (no VMCLEAR or
//! VMPTRLD, no host state in it: each core keeps its own), so moving a vCPU moves its
//! VMCB address; the VMCB holds the guest's CR2, STAR, LSTAR, CSTAR, SFMASK and kernel
//! GS base (VMSAVE/VMLOAD), so of [`MOVED_MSRS`] only TSC_AUX moves ([`moves_msr`]); its
//! TSC offset is the VMCB's; the destination points the VMCB at the new nested page
//! tables and maps, clears its clean bits and flushes the TLB at the first VMRUN
//! (`svm::use_structures`). The guest's local APIC is the core's own on both, reached
//! through the x2APIC MSRs or, where the SVM backend emulates the x2APIC over an xAPIC,
//! the memory-mapped registers they stand for ([`apic_read`], [`apic_write`]). Pre-copy
//! tracks dirty pages in the nested page tables' own A/D bits (`precopy::Format::Npt`;
//! QEMU 7.2's software emulation sets them too), and a round's flush is TLB_CONTROL at
//! each vCPU's next VMRUN instead of INVEPT ([`entering`]).
//!
//! Known limits: debug registers do not move; every core's TSC is assumed to agree with
//! the others (the calibration page measures channel core pairs only, and reports 0 on
//! Bochs).

use super::instructions::{self as vmx, reg};
use super::vcpu::Vcpu;
use crate::sandboxes::{record, SandboxRecord, SandboxVmx, STATUS_RUNNING, STOP_MIGRATE};
use crate::slot::Slot;
use core::arch::asm;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use quest_abi::calibration::CalibrationView;
use quest_abi::console::{CoreList, Migrated, Record};
use quest_abi::hypercall::budget_cycles;
use quest_abi::hypercall::{
    migrate_request, stop_fixed_cycles, MigrateRefusal, MigrationCosts, ERR_INVALID, OK,
};
use quest_abi::{CoreId, HostPhysAddr, SandboxId, MAX_CORES, MAX_SANDBOXES};
use quest_monitor_core::migration::{admit, hidden_cycles, moved_tsc_offset, target, Request};
use quest_monitor_core::precopy::{
    DirtyTracker, EptEntries, Format, Next, RoundPolicy, CAP_ACCESSED_DIRTY, EPTP_ACCESSED_DIRTY,
    MAX_ROUNDS,
};
use quest_monitor_core::sandbox_place::SandboxPlacement;
use quest_monitor_core::vmcs_fields::field64;
use x86_64::registers::model_specific::Msr;

const CORES: usize = MAX_CORES as usize;
/// TSC cycles to wait for a vCPU to leave before sending the NMI again.
const NMI_RETRY_CYCLES: u64 = 100_000;

/// Per core: it waits in [`stand_by`] (1) for a vCPU to arrive.
static STANDING_BY: [AtomicU32; CORES] = [const { AtomicU32::new(0) }; CORES];
/// Per core: the frame its arriving vCPU's XSAVE area is written to (0: none yet).
static XSAVE_AREA: [AtomicU64; CORES] = [const { AtomicU64::new(0) }; CORES];
/// Per core: 1 + the index of a sandbox whose pre-copy it is to run (0: none).
static PRECOPY: [AtomicU32; CORES] = [const { AtomicU32::new(0) }; CORES];
/// Per core: 1 + the index of a sandbox whose old RAM region it scrubs once the
/// migration count leaves [`SCRUB_EPOCH`] (0: none).
static SCRUB: [AtomicU32; CORES] = [const { AtomicU32::new(0) }; CORES];
/// Per core: the migration count of the migration whose old region it scrubs.
static SCRUB_EPOCH: [AtomicU64; CORES] = [const { AtomicU64::new(0) }; CORES];
/// Per sandbox: the largest fixed part (all but the copy) of its pre-copy stops so far,
/// TSC cycles (0: none yet): what the round policy and the admission test count for the
/// next stop (`quest_abi::hypercall::stop_fixed_cycles`).
static STOP_FIXED: [AtomicU64; MAX_SANDBOXES] = [const { AtomicU64::new(0) }; MAX_SANDBOXES];
/// Per sandbox: the VMX structures its last move dropped, to be freed ([`free_dropped`]).
static DROPPED: [spin::Mutex<Slot<SandboxVmx>>; MAX_SANDBOXES] =
    [const { spin::Mutex::new(Slot::Empty) }; MAX_SANDBOXES];
/// Per sandbox: 1 while its standby region was scrubbed and not checked since
/// ([`check_scrubbed`]).
static SCRUBBED: [AtomicU32; MAX_SANDBOXES] = [const { AtomicU32::new(0) }; MAX_SANDBOXES];
/// Per sandbox: scrubs of its standby region found all zero when checked.
static SCRUBS_ZERO: [AtomicU64; MAX_SANDBOXES] = [const { AtomicU64::new(0) }; MAX_SANDBOXES];
/// Per sandbox: scrubs of its standby region found written when checked.
static SCRUBS_WRITTEN: [AtomicU64; MAX_SANDBOXES] = [const { AtomicU64::new(0) }; MAX_SANDBOXES];
/// Per core: the vCPU on its way there.
static ARRIVALS: [spin::Mutex<Slot<Arrival>>; CORES] =
    [const { spin::Mutex::new(Slot::Empty) }; CORES];

/// MSRs the guest writes directly and VMX does not switch (STAR, LSTAR, CSTAR, FMASK,
/// kernel GS base, TSC_AUX). On SVM only TSC_AUX: the others are in the VMCB
/// (VMSAVE/VMLOAD, `svm::host`), see [`moves_msr`].
const MOVED_MSRS: [u32; 6] = [
    0xC000_0081,
    0xC000_0082,
    0xC000_0083,
    0xC000_0084,
    0xC000_0102,
    0xC000_0103,
];
const TSC_AUX: u32 = 0xC000_0103;
const TSC_DEADLINE: u32 = 0x6E0;
const APIC_TPR: u32 = 0x808;
const APIC_EOI: u32 = 0x80B;
/// First of the eight in-service (ISR) and request (IRR) registers, 32 vectors each.
const APIC_ISR: u32 = 0x810;
const APIC_IRR: u32 = 0x820;
const APIC_SELF_IPI: u32 = 0x83F;
const APIC_SVR: u32 = 0x80F;
const APIC_LVT_TIMER: u32 = 0x832;
const APIC_LVT_LINT0: u32 = 0x835;
const APIC_LVT_LINT1: u32 = 0x836;
const APIC_LVT_ERROR: u32 = 0x837;
const APIC_TIMER_INITIAL: u32 = 0x838;
const APIC_TIMER_CURRENT: u32 = 0x839;
const APIC_TIMER_DIVIDE: u32 = 0x83E;
/// LVT registers restored before the timer is armed again, in this order.
const APIC_REGS: [u32; 7] = [
    APIC_TIMER_DIVIDE,
    APIC_LVT_LINT0,
    APIC_LVT_LINT1,
    APIC_LVT_ERROR,
    APIC_SVR,
    APIC_TPR,
    APIC_LVT_TIMER,
];
const LVT_MASKED: u64 = 1 << 16;
const LVT_TIMER_MODE: u64 = 3 << 17;
const LVT_TSC_DEADLINE: u64 = 2 << 17;

/// What moves with a vCPU besides its VMCS and `Vcpu`.
#[derive(Clone, Copy, Debug)]
struct Saved {
    xcr0: u64,
    cr2: u64,
    msrs: [u64; MOVED_MSRS.len()],
    apic: [u64; APIC_REGS.len()],
    tsc_deadline: u64,
    timer_remaining: u64,
    tsc_offset: u64,
    /// Interrupts pending on the source core (IRR), 32 vectors per word.
    irr: [u32; 8],
}

struct Arrival {
    v: Vcpu,
    saved: Saved,
}

fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Whether `msr` (of [`MOVED_MSRS`]) holds guest state on the core, not in the VMCS or
/// VMCB.
fn moves_msr(msr: u32) -> bool {
    !crate::svm::active() || msr == TSC_AUX
}

/// The guest's local APIC register `msr` (an x2APIC MSR number) on this core: the
/// x2APIC itself, or, where the SVM backend emulates the x2APIC over the xAPIC, the
/// memory-mapped register it stands for (`arch::apic::guest_read`).
fn apic_read(msr: u32) -> u64 {
    if crate::arch::apic::emulates_x2apic() {
        return crate::arch::apic::guest_read(msr).unwrap_or(0);
    }
    rdmsr(msr)
}

/// Writes the guest's local APIC register `msr` on this core (see [`apic_read`]).
fn apic_write(msr: u32, value: u64) {
    if crate::arch::apic::emulates_x2apic() {
        // SAFETY: as in `wrmsr`: the guest's own register values, EOIs and self-IPIs on
        // its own cores, each a write the x2APIC policy passes through.
        unsafe { crate::arch::apic::guest_write(msr, value) };
        return;
    }
    wrmsr(msr, value)
}

/// The vCPU's TSC offset (VMCS or VMCB; its VMCS is current on this core).
fn tsc_offset(v: &Vcpu) -> u64 {
    if crate::svm::active() {
        return crate::svm::tsc_offset(v);
    }
    // SAFETY: this vCPU's VMCS is current on this core.
    unsafe { vmx::read64(field64::TSC_OFFSET) }
}

/// Sets the vCPU's TSC offset (VMCS or VMCB, as [`tsc_offset`]).
fn set_tsc_offset(v: &Vcpu, offset: u64) {
    if crate::svm::active() {
        return crate::svm::set_tsc_offset(v, offset);
    }
    // SAFETY: as in `tsc_offset`; the callers keep the guest's TSC monotonic.
    if let Err(e) = unsafe { vmx::write64(field64::TSC_OFFSET, offset) } {
        super::fatal(format_args!("sandbox '{}': TSC offset: {e:?}", v.name));
    }
}

/// The guest-physical tables of sandbox `rec` as the dirty tracker reads them (their
/// format and root pointer), when its migrations can pre-copy with them: an EPT with
/// accessed and dirty flags (VT-x), or nested page tables (SVM: A/D always kept).
fn dirty_tables(rec: &SandboxRecord) -> Option<(Format, u64)> {
    let pointer = rec.eptp()?;
    if crate::svm::active() {
        Some((Format::Npt, pointer))
    } else {
        (pointer & EPTP_ACCESSED_DIRTY != 0).then_some((Format::Ept, pointer))
    }
}

fn rdmsr(index: u32) -> u64 {
    // SAFETY: every index used here is an MSR or x2APIC register this CPU has (the
    // guest may access the same ones, see `msr_policy`); reading has no side effect.
    unsafe { Msr::new(index).read() }
}

fn wrmsr(index: u32, value: u64) {
    // SAFETY: values the guest itself wrote to the same registers on its source core
    // (read back there), written to this core's copy of them while the guest is out; or
    // the guest's own interrupts ended (EOI) or requested again (self-IPI) on its cores.
    unsafe { Msr::new(index).write(value) }
}

fn xgetbv0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: CR4.OSXSAVE is set on every vCPU core (`host::enable_vmx`).
    unsafe {
        asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nomem, nostack))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

fn xsetbv0(value: u64) {
    // SAFETY: `value` is an XCR0 the guest set (checked by the XSETBV handler) with at
    // most the SSE bit added, which x87 being set always allows.
    unsafe {
        asm!("xsetbv", in("ecx") 0u32, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nomem, nostack));
    }
}

/// XCR0 while saving or restoring: the guest's, with SSE so the XMM registers move even
/// when the guest never enabled it in XCR0.
fn save_mask(xcr0: u64) -> u64 {
    xcr0 | 0b11
}

/// The largest XSAVE area this CPU may need fits in one frame.
fn xsave_fits() -> bool {
    // CPUID.(EAX=0DH,ECX=0):ECX: the size for every component the CPU supports.
    core::arch::x86_64::__cpuid_count(0xD, 0).ecx <= 4096
}

/// The calibrated costs of the stop phase (the boot calibration page).
fn costs() -> MigrationCosts {
    let Some(page) = crate::calibrate::page_hpa() else {
        return MigrationCosts::default();
    };
    // SAFETY: the calibration page is CALIBRATION_SIZE bytes of identity-mapped monitor
    // memory, filled before any vCPU ran and read-only since.
    let bytes = unsafe {
        core::slice::from_raw_parts(
            page.as_u64() as *const u8,
            quest_abi::calibration::CALIBRATION_SIZE,
        )
    };
    CalibrationView::new(bytes).map_or(MigrationCosts::default(), |view| {
        let c = view.constants();
        MigrationCosts::from_max(
            c.ipi.max,
            c.vm_exit_entry.max,
            c.copy_cold_per_kib.max,
            c.copy_warm_per_kib.max,
        )
    })
}

/// Whether this CPU keeps EPT accessed and dirty flags: then sandboxes that move their
/// RAM get them (`sandboxes::EPT_DIRTY_FLAGS`) and migrate with pre-copy. Called once,
/// on the boot core, once VMX support is checked and before any EPT is built.
pub fn note_dirty_tracking() {
    // IA32_VMX_EPT_VPID_CAP exists: EPT support was checked.
    if rdmsr(0x48C) & CAP_ACCESSED_DIRTY != 0 {
        crate::sandboxes::EPT_DIRTY_FLAGS.store(EPTP_ACCESSED_DIRTY, Ordering::Release);
    }
}

/// Whether sandbox `rec`'s migrations pre-copy (its RAM moves, its EPT has dirty flags
/// or it runs on nested page tables).
fn precopies(rec: &SandboxRecord) -> bool {
    rec.moves_memory() && dirty_tables(rec).is_some()
}

/// `MIGRATE(rdi)` from `v`: the result for RAX. When `v`'s own sandbox migrates, `v`
/// leaves its core right after this returns (the run loop sees the stop).
pub fn request(v: &mut Vcpu, rdi: u64) -> u64 {
    let table = &v.sys.table;
    let (rdi, stop_and_copy) = migrate_request(rdi);
    let Some(s) = target(rdi, v.sandbox, table.sandbox_count()) else {
        return ERR_INVALID;
    };
    let Some(view) = table.sandbox(s) else {
        return ERR_INVALID;
    };
    let rec = record(s);
    let st = &rec.state;
    let terms = view.migration();
    let allowed = terms.is_some_and(|t| t.allows(v.sandbox));
    let took = allowed
        && rec
            .migration
            .busy
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
    let idle = took
        && st.status.load(Ordering::Acquire) == STATUS_RUNNING
        && st.generation.load(Ordering::Acquire) > 0
        && st.stop.load(Ordering::Acquire) == 0;
    let standby = rec.standby();
    let destination_free = xsave_fits()
        && !standby.cores.is_empty()
        && standby.cores.as_slice().iter().all(|c| {
            STANDING_BY[c.index() % CORES].load(Ordering::Acquire) == 1
                && ARRIVALS[c.index() % CORES].lock().is_empty()
        });
    let vcpus = view.vcpus().len();
    let precopy = precopies(rec) && !stop_and_copy;
    let decision = admit(&Request {
        caller: v.sandbox,
        terms,
        vcpus: vcpus as u64,
        ram: view.ram_size(),
        moves_memory: terms.is_some_and(|t| t.separate_memory),
        precopy,
        owns_devices: view
            .devices()
            .any(|d| d.pci().is_some() || d.irq().is_some()),
        idle_for_migration: idle,
        destination_free,
        costs: costs(),
        measured_stop: STOP_FIXED[s.index() % MAX_SANDBOXES].load(Ordering::Acquire),
        tsc_khz: v.sys.tsc_khz.into(),
    });
    let own = s == v.sandbox;
    let decision = decision.and_then(|()| {
        let m = &rec.migration;
        m.arrived.store(0, Ordering::Relaxed);
        m.left.store(0, Ordering::Relaxed);
        m.rounds.store(0, Ordering::Relaxed);
        m.pages.store(0, Ordering::Relaxed);
        m.full_copy.store(0, Ordering::Relaxed);
        m.abandoned.store(0, Ordering::Relaxed);
        let requester = if own { v.index as u32 + 1 } else { 0 };
        m.own_requester.store(requester, Ordering::Relaxed);
        if precopy {
            let leader = standby.cores.as_slice()[0];
            PRECOPY[leader.index() % CORES].store(s.index() as u32 + 1, Ordering::Release);
            Ok(())
        } else {
            if rec.moves_memory() {
                // The destination's EPT and bitmaps, built before the stop as pre-copy
                // does (not part of the pause; on failure the pause builds them).
                free_dropped(s);
                let _ = super::sandbox::prebuild_standby(v.sys, s);
            }
            // Before anything is copied into the standby region (not part of the pause).
            check_scrubbed(v.sys, s);
            stop_for_migration(rec)
        }
    });
    if let Err(refusal) = decision {
        if took {
            rec.migration.busy.store(0, Ordering::Release);
        }
        crate::println!(
            "{}",
            Record::MigrationRefused {
                sandbox: view.name(),
                by: v.name,
                reason: refusal.as_str(),
            }
        );
        return refusal.code();
    }
    let mine = crate::sandboxes::state(v.sandbox);
    if own {
        if precopy {
            // This vCPU waits here (out of its guest, so pre-copy's flushes pass it by)
            // until the sandbox stops to move, or the migration is abandoned.
            while st.stop.load(Ordering::Acquire) == 0
                && rec.migration.busy.load(Ordering::Acquire) != 0
            {
                core::hint::spin_loop();
            }
            if st.stop.load(Ordering::Acquire) != STOP_MIGRATE {
                return MigrateRefusal::Abandoned.code();
            }
        } else {
            nudge_out(v.sys, rec, vcpus as u32 - 1, Some(v.index));
        }
        return OK;
    }
    if !precopy {
        nudge_out(v.sys, rec, vcpus as u32, None);
    }
    // A controller waits until the sandbox runs at its new placement, or the migration
    // was abandoned (or its own sandbox stops: then its answer no longer matters).
    while rec.migration.busy.load(Ordering::Acquire) != 0 && mine.stop.load(Ordering::Acquire) == 0
    {
        core::hint::spin_loop();
    }
    if rec.migration.abandoned.load(Ordering::Acquire) != 0 {
        return MigrateRefusal::Abandoned.code();
    }
    v.regs.0[reg::RDX] = rec.migration.last_downtime.load(Ordering::Acquire);
    OK
}

/// Notes the TSC and stops the sandbox for its move (fails if an exit or fault won the
/// stop first).
fn stop_for_migration(rec: &SandboxRecord) -> Result<(), MigrateRefusal> {
    rec.migration.last_exit.store(0, Ordering::Relaxed);
    rec.migration.started.store(rdtsc(), Ordering::Relaxed);
    rec.state
        .stop
        .compare_exchange(0, STOP_MIGRATE, Ordering::AcqRel, Ordering::Acquire)
        .map(|_| ())
        .map_err(|_| MigrateRefusal::Busy)
}

/// Sends NMIs to the sandbox's vCPU cores (but `skip`'s) until `count` vCPUs have left
/// them: each leaves before its next entry; the NMI nudges the ones in their guest (NMI
/// exiting) or asleep in WAIT (the stop wakes them).
fn nudge_out(sys: &crate::system::System, rec: &SandboxRecord, count: u32, skip: Option<usize>) {
    let placement = rec.placement();
    while rec.migration.left.load(Ordering::Acquire) < count {
        for (i, core) in placement.cores.as_slice().iter().enumerate() {
            if skip == Some(i) {
                continue;
            }
            if let Some(apic_id) = sys.apic_id(*core) {
                // SAFETY: a vCPU core of the sandbox, or (once its vCPU left) a standby
                // core waiting in the monitor: both only re-check their state on an NMI.
                unsafe { super::host::send_nmi(apic_id) };
            }
        }
        let at = rdtsc();
        while rec.migration.left.load(Ordering::Acquire) < count
            && rdtsc().wrapping_sub(at) < NMI_RETRY_CYCLES
        {
            core::hint::spin_loop();
        }
    }
}

/// A live EPT's entries, in identity-mapped frames of the monitor's pool, changed with
/// atomic read-modify-writes (the CPU sets the accessed and dirty flags with locked
/// operations meanwhile).
struct LiveEpt;

impl LiveEpt {
    fn at(table: HostPhysAddr, index: usize) -> &'static AtomicU64 {
        // SAFETY: `table` is a frame of a sandbox's EPT (from the pool, identity mapped,
        // 4 KiB aligned, never freed while its sandbox can use it), and index < 512, so
        // the word is in it and 8-byte aligned; the monitor only ever accesses EPT
        // entries atomically or volatilely.
        unsafe { &*((table.as_u64() + 8 * (index % 512) as u64) as *const AtomicU64) }
    }
}

impl EptEntries for LiveEpt {
    fn entry(&self, table: HostPhysAddr, index: usize) -> u64 {
        Self::at(table, index).load(Ordering::Acquire)
    }
    fn modify(&mut self, table: HostPhysAddr, index: usize, clear: u64, set: u64) -> u64 {
        let e = Self::at(table, index);
        let mut old = e.load(Ordering::Acquire);
        loop {
            match e.compare_exchange_weak(
                old,
                (old & !clear) | set,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(v) => return v,
                Err(now) => old = now,
            }
        }
    }
}

/// The dirty set of sandbox `s`'s RAM in its tables (`dirty_tables`).
fn tracker(
    sys: &crate::system::System,
    s: SandboxId,
    (format, pointer): (Format, u64),
) -> DirtyTracker<LiveEpt> {
    let ram = sys.table.sandbox(s).map_or(0, |v| v.ram_size());
    DirtyTracker::new(LiveEpt, format, pointer, 0, ram)
}

/// `v` is about to enter its guest: it drops its cached translations if pre-copy asked
/// since its last entry (see [`flush`] for the order of the two stores and loads).
pub fn entering(v: &Vcpu) {
    let m = &record(v.sandbox).migration;
    let i = v.index % quest_abi::MAX_VCPUS_PER_SANDBOX;
    m.in_guest[i].store(1, Ordering::SeqCst);
    let epoch = m.flush.load(Ordering::SeqCst);
    if m.flushed[i].load(Ordering::Relaxed) != epoch {
        if crate::svm::active() {
            // At the VMRUN that follows: nothing of the guest runs before it.
            crate::svm::flush_translations(v);
        } else {
            // SAFETY: this vCPU's VMCS is current; INVEPT single-context is supported
            // (checked at boot) and drops only translations of this EPT.
            unsafe {
                let _ = vmx::invept_single(vmx::read64(field64::EPT_POINTER));
            }
        }
        m.flushed[i].store(epoch, Ordering::Release);
    }
}

/// `v` is back in the monitor.
pub fn left_guest(v: &Vcpu) {
    let m = &record(v.sandbox).migration;
    m.in_guest[v.index % quest_abi::MAX_VCPUS_PER_SANDBOX].store(0, Ordering::SeqCst);
}

/// Makes every vCPU of sandbox `s` drop its cached translations of the EPT before it
/// writes guest memory again. A vCPU in its guest gets NMIs until it did (its exit
/// returns to [`entering`]); one outside it needs nothing: it stored `in_guest = 0`
/// before this bumped the epoch, or it reads the new epoch in [`entering`] after its
/// `in_guest = 1` (all sequentially consistent). False when `aborted` says to give up.
fn flush(sys: &crate::system::System, s: SandboxId, aborted: &dyn Fn() -> bool) -> bool {
    let rec = record(s);
    let m = &rec.migration;
    let epoch = m.flush.fetch_add(1, Ordering::SeqCst).wrapping_add(1);
    let placement = rec.placement();
    for (i, core) in placement.cores.as_slice().iter().enumerate() {
        let i = i % quest_abi::MAX_VCPUS_PER_SANDBOX;
        let done = || {
            m.in_guest[i].load(Ordering::SeqCst) == 0
                || m.flushed[i].load(Ordering::Acquire) == epoch
        };
        while !done() {
            if aborted() {
                return false;
            }
            if let Some(apic_id) = sys.apic_id(*core) {
                // SAFETY: a vCPU core of the sandbox: in its guest the NMI exits, in the
                // monitor the NMI gate just returns.
                unsafe { super::host::send_nmi(apic_id) };
            }
            let at = rdtsc();
            while !done() && rdtsc().wrapping_sub(at) < NMI_RETRY_CYCLES {
                core::hint::spin_loop();
            }
        }
    }
    true
}

/// The monitor wrote `[gpa, gpa + len)` of sandbox `s`'s RAM (after the write): during
/// pre-copy those pages count as dirty.
pub fn monitor_wrote(s: SandboxId, gpa: u64, len: u64) {
    let rec = record(s);
    if rec.migration.precopy.load(Ordering::SeqCst) == 0 {
        return;
    }
    if let Some((format, pointer)) = dirty_tables(rec) {
        let ram = u64::MAX;
        DirtyTracker::new(LiveEpt, format, pointer, 0, ram).set_dirty(gpa, len);
    }
}

/// Copies `len` bytes at RAM offset `off` from the region at `from` to the one at `to`.
fn copy_ram(from: HostPhysAddr, to: HostPhysAddr, off: u64, len: u64) {
    // SAFETY: both regions are the migrating sandbox's own (placed apart at boot), at
    // least `off + len` bytes long (the tracker only yields pages of its RAM), identity
    // mapped; nobody else writes the destination.
    unsafe {
        core::ptr::copy_nonoverlapping(
            (from.as_u64() + off) as *const u8,
            (to.as_u64() + off) as *mut u8,
            len as usize,
        );
    }
}

/// Zeroes `len` bytes at `region` (a sandbox region nobody runs on).
fn zero(region: HostPhysAddr, len: u64) {
    // SAFETY: a RAM region of a sandbox that no vCPU uses (its old or unused standby
    // region), `len` = its RAM size, identity mapped.
    unsafe { core::ptr::write_bytes(region.as_u64() as *mut u8, 0, len as usize) };
}

/// Zeroes sandbox `s`'s standby region (`len` bytes, its RAM size: nobody runs there),
/// and notes that it is to stay zero until [`check_scrubbed`] looks.
fn scrub(s: SandboxId, region: HostPhysAddr, len: u64) {
    zero(region, len);
    SCRUBBED[s.index() % MAX_SANDBOXES].store(1, Ordering::Release);
}

/// The OR of sixteen words.
fn or16(w: &[u64; 16]) -> u64 {
    (w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7])
        | (w[8] | w[9] | w[10] | w[11] | w[12] | w[13] | w[14] | w[15])
}

/// The offset of the first non-zero byte of the `len` bytes at `region`, if any.
fn first_nonzero(region: HostPhysAddr, len: u64) -> Option<u64> {
    const PAGE: u64 = 4096;
    (0..len / PAGE).find_map(|page| {
        let at = region.as_u64() + page * PAGE;
        // SAFETY: a page of a sandbox's standby region (identity mapped, 4 KiB aligned,
        // `len` = its RAM size) that nobody may write now: `check_scrubbed`'s caller holds
        // the sandbox's migration, so no copy goes there; a stray writer would be the bug
        // this looks for, and any bit pattern is a valid u64.
        let words = unsafe { core::slice::from_raw_parts(at as *const u64, PAGE as usize / 8) };
        // Sixteen words at a time: the monitor is built for size, and a word-by-word
        // loop costs several instructions per word (too slow under Bochs).
        let any = words
            .chunks_exact(16)
            .fold(0, |acc, c| acc | or16(c.try_into().unwrap_or(&[1; 16])));
        if any == 0 {
            return None;
        }
        let (i, w) = words.iter().enumerate().find(|(_, w)| **w != 0)?;
        Some(page * PAGE + 8 * i as u64 + u64::from(w.trailing_zeros() / 8))
    })
}

/// If sandbox `s`'s standby region was scrubbed since it was last checked, checks that it
/// still holds nothing but zeros (a stray write after the move, or a skipped or short
/// scrub, would leave data of `s` there), counts the result and reports a region found
/// written (then zeroes it again). The caller holds `s`'s migration (`busy`), before
/// anything is copied into the region: this is not part of any pause.
fn check_scrubbed(sys: &crate::system::System, s: SandboxId) {
    let i = s.index() % MAX_SANDBOXES;
    if SCRUBBED[i].swap(0, Ordering::AcqRel) == 0 {
        return;
    }
    let Some(view) = sys.table.sandbox(s) else {
        return;
    };
    let (region, len) = (record(s).standby().ram_hpa, view.ram_size());
    match first_nonzero(region, len) {
        None => {
            SCRUBS_ZERO[i].fetch_add(1, Ordering::AcqRel);
        }
        Some(offset) => {
            SCRUBS_WRITTEN[i].fetch_add(1, Ordering::AcqRel);
            crate::println!(
                "{}",
                Record::StandbyWritten {
                    sandbox: view.name(),
                    region: region.as_u64(),
                    offset,
                }
            );
            zero(region, len);
        }
    }
}

/// For the summary: sandbox `s`'s [`Record::StandbyScrubs`], if its standby placement
/// has its own RAM, after checking the last scrub (unless a migration of it is still
/// under way: then its region is in use). Takes the sandbox's migration for good: the
/// system is ending.
pub fn standby_scrubs(sys: &crate::system::System, s: SandboxId) -> Option<Record<'_>> {
    let rec = record(s);
    if !rec.moves_memory() {
        return None;
    }
    // The last migration's old region may still be being scrubbed.
    while rec.migration.settling.load(Ordering::Acquire) != 0 {
        core::hint::spin_loop();
    }
    let took = rec
        .migration
        .busy
        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
        .is_ok();
    if took {
        check_scrubbed(sys, s);
    }
    let i = s.index() % MAX_SANDBOXES;
    Some(Record::StandbyScrubs {
        sandbox: sys.table.sandbox(s)?.name(),
        region: rec.standby().ram_hpa.as_u64(),
        zero: SCRUBS_ZERO[i].load(Ordering::Acquire),
        written: SCRUBS_WRITTEN[i].load(Ordering::Acquire),
    })
}

/// Pre-copy of sandbox `s` on the first of its standby cores (see the module
/// documentation): ends by stopping the sandbox for its move, or by abandoning.
fn precopy(sys: &crate::system::System, s: SandboxId) {
    let rec = record(s);
    let st = &rec.state;
    let m = &rec.migration;
    let Some(view) = sys.table.sandbox(s) else {
        return;
    };
    let generation = st.generation.load(Ordering::Acquire);
    let aborted = || {
        st.stop.load(Ordering::Acquire) != 0
            || st.generation.load(Ordering::Acquire) != generation
            || st.status.load(Ordering::Acquire) != STATUS_RUNNING
    };
    // The destination's EPT and bitmaps, built while the sandbox still runs (in the
    // frames the last move's dropped structures give back).
    free_dropped(s);
    if let Err(e) = super::sandbox::prebuild_standby(sys, s) {
        crate::println!(
            "quest: sandbox '{}': cannot build its standby structures: {e}",
            view.name()
        );
    }
    let (from, to) = (rec.placement().ram_hpa, rec.standby().ram_hpa);
    let Some(tables) = dirty_tables(rec) else {
        return abandon(sys, s, "no EPT", None);
    };
    let costs = costs();
    let policy = RoundPolicy {
        budget: budget_cycles(
            view.migration().map_or(0, |t| t.max_downtime_ns),
            sys.tsc_khz.into(),
        ),
        park: stop_fixed_cycles(
            view.vcpus().len() as u64,
            &costs,
            STOP_FIXED[s.index() % MAX_SANDBOXES].load(Ordering::Acquire),
        ),
        costs,
        max_rounds: MAX_ROUNDS,
    };
    let mut t = tracker(sys, s, tables);
    m.precopy.store(1, Ordering::SeqCst);
    t.mark(true);
    let mut rounds = 0u32;
    loop {
        if !flush(sys, s, &aborted) {
            return abandon(sys, s, "the sandbox stopped", Some(&mut t));
        }
        let pages = t.take(|| !aborted(), |off, len| copy_ram(from, to, off, len));
        if aborted() {
            return abandon(sys, s, "the sandbox stopped", Some(&mut t));
        }
        rounds += 1;
        m.rounds.store(rounds, Ordering::Relaxed);
        m.pages.fetch_add(pages, Ordering::Relaxed);
        match policy.next(rounds, t.dirty_pages()) {
            Next::Stop => break,
            Next::Abandon => {
                return abandon(sys, s, "pre-copy did not converge", Some(&mut t));
            }
            Next::Copy => {
                t.mark(false);
            }
        }
    }
    if stop_for_migration(rec).is_err() {
        return abandon(sys, s, "the sandbox stopped", Some(&mut t));
    }
    if st.generation.load(Ordering::Acquire) != generation {
        // It relaunched (new RAM contents) just before the stop: copy all of it.
        m.full_copy.store(1, Ordering::Release);
    }
    nudge_out(sys, rec, view.vcpus().len() as u32, None);
}

/// Gives up the migration of `s` before anything stopped: the destination region is
/// scrubbed, the EPT's marks cleared; the requester gets [`MigrateRefusal::Abandoned`].
fn abandon(
    sys: &crate::system::System,
    s: SandboxId,
    reason: &str,
    t: Option<&mut DirtyTracker<LiveEpt>>,
) {
    let rec = record(s);
    let m = &rec.migration;
    m.precopy.store(0, Ordering::SeqCst);
    if let Some(t) = t {
        t.unmark();
    }
    let ram = sys.table.sandbox(s).map_or(0, |v| v.ram_size());
    scrub(s, rec.standby().ram_hpa, ram);
    crate::println!(
        "{}",
        Record::MigrationAbandoned {
            sandbox: sys.table.sandbox(s).map_or("?", |v| v.name()),
            reason,
            rounds: m.rounds.load(Ordering::Relaxed),
            pages: m.pages.load(Ordering::Relaxed),
        }
    );
    m.abandoned.store(1, Ordering::Release);
    m.busy.store(0, Ordering::Release);
}

/// Sends `v` (which saw [`STOP_MIGRATE`] before its next entry) to its standby core;
/// this core no longer runs it.
pub fn hand_off(mut v: Vcpu, generation: u32) {
    let rec = record(v.sandbox);
    let Some(dest) = rec.standby().cores.of_vcpu(v.index) else {
        super::fatal(format_args!(
            "sandbox '{}' vCPU {} has no standby core",
            v.name, v.index
        ))
    };
    let area = XSAVE_AREA[dest.index() % CORES].load(Ordering::Acquire);
    let xcr0 = xgetbv0();
    xsetbv0(save_mask(xcr0));
    // SAFETY: `area` is the destination's 4 KiB, 4 KiB-aligned frame (allocated before
    // it stood by, which the requester checked), large enough for every component
    // (`xsave_fits`); nothing else uses it until that core restores from it.
    unsafe {
        asm!("xsave64 [{0}]", in(reg) area, in("eax") u32::MAX, in("edx") u32::MAX, options(nostack));
    }
    xsetbv0(xcr0);
    let cr2: u64;
    // SAFETY: reading CR2 has no side effect (on SVM it is the monitor's: the guest's
    // is in the VMCB, and moving this one does no harm).
    unsafe { asm!("mov {0}, cr2", out(reg) cr2, options(nomem, nostack)) };
    let lvt_timer = apic_read(APIC_LVT_TIMER);
    let saved = Saved {
        xcr0,
        cr2,
        msrs: MOVED_MSRS.map(|m| if moves_msr(m) { rdmsr(m) } else { 0 }),
        apic: APIC_REGS.map(apic_read),
        tsc_deadline: if lvt_timer & LVT_TIMER_MODE == LVT_TSC_DEADLINE {
            rdmsr(TSC_DEADLINE)
        } else {
            0
        },
        timer_remaining: apic_read(APIC_TIMER_CURRENT),
        tsc_offset: tsc_offset(&v),
        irr: [0; 8],
    };
    // This core's timer no longer belongs to the guest.
    apic_write(APIC_LVT_TIMER, lvt_timer | LVT_MASKED);
    apic_write(APIC_TIMER_INITIAL, 0);
    if lvt_timer & LVT_TIMER_MODE == LVT_TSC_DEADLINE {
        wrmsr(TSC_DEADLINE, 0);
    }
    // With the timer quiet, what the guest has pending here moves with it (a deadline
    // that passed while it was out is no longer in TSC_DEADLINE, only in the IRR), and
    // what it has in service ends here (see the module documentation).
    let saved = Saved {
        irr: core::array::from_fn(|i| apic_read(APIC_IRR + i as u32) as u32),
        ..saved
    };
    let in_service: u32 = (0..8)
        .map(|i| (apic_read(APIC_ISR + i) as u32).count_ones())
        .sum();
    for _ in 0..in_service {
        apic_write(APIC_EOI, 0);
    }
    // A VMCB is plain memory: nothing to write back on SVM.
    if !crate::svm::active() {
        // SAFETY: the VMCS is current here and used by no other core; VMCLEAR writes it
        // back to memory so the destination can load it.
        if let Err(e) = unsafe { vmx::vmclear(v.vmcs) } {
            super::fatal(format_args!("sandbox '{}': VMCLEAR failed: {e:?}", v.name));
        }
    }
    if v.index == 0 {
        // This core reports the move, and scrubs the old region if the RAM moved, once
        // the sandbox runs again.
        let here = v.core.index() % CORES;
        SCRUB_EPOCH[here].store(
            rec.migration.count.load(Ordering::Acquire),
            Ordering::Relaxed,
        );
        SCRUB[here].store(v.sandbox.index() as u32 + 1, Ordering::Release);
    }
    rec.migration.last_exit.fetch_max(rdtsc(), Ordering::AcqRel);
    v.core = dest;
    v.launched = false;
    v.arrived = Some(generation);
    *ARRIVALS[dest.index() % CORES].lock() = Slot::Full(Arrival { v, saved });
    rec.migration.left.fetch_add(1, Ordering::AcqRel);
}

/// Waits on `core` until a vCPU arrives, and returns it ready to enter its guest here.
/// Meanwhile it runs the pre-copy of a migration to this core, and first scrubs the old
/// region of a sandbox whose vCPU 0 just left this core.
pub fn stand_by(core: CoreId, sys: &'static crate::system::System) -> Vcpu {
    let slot = core.index() % CORES;
    if XSAVE_AREA[slot].load(Ordering::Acquire) == 0 {
        match crate::frame_pool::alloc_zeroed(1) {
            Some(frame) => XSAVE_AREA[slot].store(frame, Ordering::Release),
            None => super::fatal(format_args!(
                "core {core}: no frame for a migrating vCPU's state"
            )),
        }
    }
    let scrubbing = SCRUB[slot].swap(0, Ordering::AcqRel);
    if let Some(s) = scrubbing
        .checked_sub(1)
        .and_then(|i| SandboxId::from_index(i as usize))
    {
        let m = &record(s).migration;
        let epoch = SCRUB_EPOCH[slot].load(Ordering::Relaxed);
        while m.count.load(Ordering::Acquire) == epoch {
            core::hint::spin_loop();
        }
        if let Some(report) = m.report.lock().take() {
            crate::println!("{}", Record::Migrated(report));
        }
        let rec = record(s);
        if rec.moves_memory() {
            // The swap made the old region the standby one; nobody runs there.
            scrub(
                s,
                rec.standby().ram_hpa,
                sys.table.sandbox(s).map_or(0, |v| v.ram_size()),
            );
        }
        m.settling.store(0, Ordering::Release);
    }
    // Only now is this core a free destination (`request`'s `destination_free`): a
    // request meanwhile is refused as not free, not left to copy into a region being
    // scrubbed.
    STANDING_BY[slot].store(1, Ordering::Release);
    let Arrival { mut v, saved } = loop {
        if let Some(a) = ARRIVALS[slot].lock().take() {
            break a;
        }
        let job = PRECOPY[slot].swap(0, Ordering::AcqRel);
        if let Some(s) = job
            .checked_sub(1)
            .and_then(|i| SandboxId::from_index(i as usize))
        {
            // The region pre-copy writes to: still as its last scrub left it?
            check_scrubbed(sys, s);
            precopy(sys, s);
        }
        core::hint::spin_loop();
    };
    STANDING_BY[slot].store(0, Ordering::Release);
    restore(&v, &saved, XSAVE_AREA[slot].load(Ordering::Acquire));
    let rec = record(v.sandbox);
    let epoch = rec.migration.count.load(Ordering::Acquire);
    let vcpus = v.vcpu_count() as u32;
    if rec.migration.arrived.fetch_add(1, Ordering::AcqRel) + 1 == vcpus {
        finish(&v, rec);
    } else {
        while rec.migration.count.load(Ordering::Acquire) == epoch {
            core::hint::spin_loop();
        }
    }
    if hides_pause(&v) {
        hide_pause(&v, &saved, rec.migration.hidden.load(Ordering::Acquire));
    }
    // The RAM may have moved: this vCPU's EPT pointer and view of guest memory follow.
    v.mem = super::guest_mem::GuestMem::of(v.sys, v.sandbox);
    match super::sandbox::resources(v.sys, v.sandbox) {
        Ok(res) if crate::svm::active() => crate::svm::use_structures(&v, &res),
        // SAFETY: this vCPU's VMCS is current; the EPT and bitmaps are complete and
        // the sandbox's (the old ones may already be freed: every pointer is replaced).
        Ok(res) => unsafe {
            let _ = super::vmcs::use_structures(&res);
            let _ = vmx::invept_single(res.eptp);
        },
        Err(e) => super::fatal(format_args!("sandbox '{}': {e}", v.name)),
    }
    if rec.migration.own_requester.load(Ordering::Acquire) == v.index as u32 + 1 {
        v.regs.0[reg::RDX] = rec.migration.last_downtime.load(Ordering::Acquire);
    }
    v
}

/// Whether `v`'s sandbox hides migration pauses from its clock.
fn hides_pause(v: &Vcpu) -> bool {
    v.sandbox_view.migration().is_some_and(|m| m.hide_downtime)
}

/// After the release, for a sandbox that hides pauses: takes the hidden cycles off this
/// vCPU's TSC offset, and arms its TSC deadline (saved in host cycles on the source) as
/// far later as its clock was set back.
fn hide_pause(v: &Vcpu, saved: &Saved, hidden: u64) {
    // A smaller offset only sets the guest's TSC back by less than it was paused
    // (`hidden_cycles`), so it stays monotonic.
    set_tsc_offset(v, tsc_offset(v).wrapping_sub(hidden));
    let lvt_timer = saved.apic[APIC_REGS.len() - 1];
    if lvt_timer & LVT_TIMER_MODE == LVT_TSC_DEADLINE && saved.tsc_deadline != 0 {
        wrmsr(TSC_DEADLINE, saved.tsc_deadline.wrapping_add(hidden));
    }
}

/// Makes `v`'s VMCS current on this core and restores what [`hand_off`] saved.
fn restore(v: &Vcpu, saved: &Saved, area: u64) {
    if !crate::svm::active() {
        // SAFETY: VMX is on here; the VMCS was cleared by its source core and is used by
        // no other; the host state written describes this core, whose GDT, TSS and vCPU
        // IDT stay loaded. (SVM keeps the host state per core, outside the VMCB.)
        let loaded = unsafe { vmx::vmptrld(v.vmcs).and_then(|()| super::host::write_host_state()) };
        if let Err(e) = loaded {
            super::fatal(format_args!(
                "sandbox '{}': cannot load its VMCS on core {}: {e:?}",
                v.name, v.core
            ));
        }
    }
    // The TSC offset keeps the guest's clock where it was.
    set_tsc_offset(v, moved_tsc_offset(saved.tsc_offset, 0));
    xsetbv0(save_mask(saved.xcr0));
    // SAFETY: `area` holds the state XSAVE wrote on the source core with the same mask.
    unsafe {
        asm!("xrstor64 [{0}]", in(reg) area, in("eax") u32::MAX, in("edx") u32::MAX, options(nostack));
    }
    xsetbv0(saved.xcr0);
    // SAFETY: writing CR2 only changes what a page-fault handler would read.
    unsafe { asm!("mov cr2, {0}", in(reg) saved.cr2, options(nomem, nostack)) };
    for (&msr, value) in MOVED_MSRS.iter().zip(saved.msrs) {
        if moves_msr(msr) {
            wrmsr(msr, value);
        }
    }
    for (r, value) in APIC_REGS.iter().zip(saved.apic) {
        apic_write(*r, value);
    }
    let lvt_timer = saved.apic[APIC_REGS.len() - 1];
    if lvt_timer & LVT_TIMER_MODE == LVT_TSC_DEADLINE {
        // A deadline already past fires at once, as it would have on the source. With a
        // hidden pause the deadline moves with the clock: armed in `hide_pause`.
        if saved.tsc_deadline != 0 && !hides_pause(v) {
            wrmsr(TSC_DEADLINE, saved.tsc_deadline);
        }
    } else if saved.timer_remaining != 0 {
        apic_write(APIC_TIMER_INITIAL, saved.timer_remaining);
    }
    // What was pending on the source core becomes pending here (vectors 0-15 are not
    // deliverable by IPI, nor requested by anything the guest can program).
    for (word, bits) in saved.irr.iter().enumerate() {
        for bit in 0..32 {
            let vector = word as u64 * 32 + bit;
            if bits & (1 << bit) != 0 && vector >= 16 {
                apic_write(APIC_SELF_IPI, vector);
            }
        }
    }
}

/// The cores an IPI to vCPU `vcpu` of sandbox `s` goes to: the core its current
/// placement gives it and, while the sandbox migrates (or just did), also its standby
/// core. The vCPU may have left its old core (its IRR already saved) before the IPI
/// arrived; on the standby core the IPI waits in the IRR, which the monitor never
/// accepts, and is delivered when the vCPU enters its guest there. A copy on a core it
/// did not end up on is at worst one spurious interrupt (module documentation).
pub fn ipi_cores(s: quest_abi::SandboxId, vcpu: usize, mut send: impl FnMut(CoreId)) {
    let rec = record(s);
    let m = &rec.migration;
    let epoch = m.count.load(Ordering::Acquire);
    let first = rec.placement().cores.of_vcpu(vcpu);
    if let Some(core) = first {
        send(core);
    }
    if m.busy.load(Ordering::Acquire) != 0 || m.count.load(Ordering::Acquire) != epoch {
        // Standby before placement: a swap between the two reads then still yields both
        // the old and the new core.
        let standby = rec.standby().cores.of_vcpu(vcpu);
        let now = rec.placement().cores.of_vcpu(vcpu);
        for core in [standby, now].into_iter().flatten() {
            if Some(core) != first {
                send(core);
            }
        }
    }
}

/// The last vCPU to arrive: move the RAM if it moves (what is still dirty after
/// pre-copy, or all of it), swap the placements, report, release the stop. The old
/// region is scrubbed afterwards, by vCPU 0's old core ([`stand_by`]).
fn finish(v: &Vcpu, rec: &SandboxRecord) {
    let ram = v.sandbox_view.ram_size();
    let m = &rec.migration;
    let precopied = m.precopy.load(Ordering::Acquire) != 0;
    let tables = dirty_tables(rec);
    let (from, to, dropped) = rec.swap_placement();
    if let Some(old) = dropped {
        // Freed before the next migration builds its structures ([`free_dropped`]): not
        // in this pause, and not after the release on this vCPU's way back to its guest.
        *DROPPED[v.sandbox.index() % MAX_SANDBOXES].lock() = Slot::Full(old);
    }
    let mut pages = m.pages.load(Ordering::Relaxed);
    let copy_started = rdtsc();
    if from.ram_hpa != to.ram_hpa {
        match tables {
            Some(tables) if precopied && m.full_copy.load(Ordering::Acquire) == 0 => {
                let mut t = tracker(v.sys, v.sandbox, tables);
                pages += t.take_dirty(|off, len| copy_ram(from.ram_hpa, to.ram_hpa, off, len));
            }
            _ => {
                copy_ram(from.ram_hpa, to.ram_hpa, 0, ram);
                pages += ram / 4096;
            }
        }
    }
    m.precopy.store(0, Ordering::SeqCst);
    let copy_cycles = rdtsc().wrapping_sub(copy_started);
    // The new placement's EPT and bitmaps, built before the stop (pre-copy and the
    // request prebuild them); should that have failed, they are built here, so that the
    // downtime measured below is the whole pause (the vCPUs only load them).
    if let Err(e) = super::sandbox::resources(v.sys, v.sandbox) {
        super::fatal(format_args!("sandbox '{}': {e}", v.name));
    }
    let downtime = rdtsc().wrapping_sub(m.started.load(Ordering::Acquire));
    m.last_downtime.store(downtime, Ordering::Release);
    m.worst_downtime.fetch_max(downtime, Ordering::AcqRel);
    if precopied {
        STOP_FIXED[v.sandbox.index() % MAX_SANDBOXES]
            .fetch_max(downtime.saturating_sub(copy_cycles), Ordering::AcqRel);
    }
    let cores = |p: &SandboxPlacement| {
        // A core set has at most MAX_VCPUS_PER_SANDBOX cores, as a core list.
        CoreList::new(p.cores.as_slice().iter().map(|c| c.as_u32()))
            .unwrap_or_else(|| super::fatal(format_args!("core list too long")))
    };
    // Printed by vCPU 0's old core once the sandbox runs again ([`stand_by`]).
    *m.report.lock() = Slot::Full(Migrated {
        sandbox: v.name,
        from_cores: cores(&from),
        to_cores: cores(&to),
        from_memory: from.ram_hpa.as_u64(),
        to_memory: to.ram_hpa.as_u64(),
        rounds: m.rounds.load(Ordering::Relaxed).into(),
        pages,
        downtime,
    });
    let hidden = if hides_pause(v) {
        hidden_cycles(m.last_exit.load(Ordering::Acquire), rdtsc())
    } else {
        0
    };
    m.hidden.store(hidden, Ordering::Release);
    // The old placement is not free until vCPU 0's old core has reported and scrubbed
    // it ([`stand_by`]); the migration itself ends with the release.
    m.settling.store(1, Ordering::Release);
    rec.state.stop.store(0, Ordering::Release);
    m.count.fetch_add(1, Ordering::AcqRel);
    m.busy.store(0, Ordering::Release);
}

/// Frees the VMX structures sandbox `s`'s last move dropped, if any: no vCPU uses them
/// since that move's release (each loaded the new EPT and did INVEPT before entering
/// its guest). Called before a migration builds the destination's structures, so the
/// pool's peak is the same as when the move freed them itself, and neither the pause
/// nor a vCPU's return to its guest pays for it.
fn free_dropped(s: SandboxId) {
    let dropped = DROPPED[s.index() % MAX_SANDBOXES].lock().take();
    if let Some(old) = dropped {
        free_vmx(&old);
    }
}

/// Returns the frames of a sandbox's dropped VMX structures to the pool: the bitmaps and
/// every EPT table. No vCPU uses them any more (all are stopped, and each does INVEPT
/// for the EPT it loads before it enters its guest again).
/// On SVM the same for the IOPM, the MSRPM and the nested page tables.
fn free_vmx(old: &SandboxVmx) {
    let (io, msr) = if crate::svm::active() {
        (crate::svm::IOPM_FRAMES, crate::svm::MSRPM_FRAMES)
    } else {
        (2, 1)
    };
    for i in 0..io {
        let _ = crate::frame_pool::free(old.io_bitmaps + 4096 * i as u64);
    }
    for i in 0..msr {
        let _ = crate::frame_pool::free(old.msr_bitmap + 4096 * i as u64);
    }
    free_table(HostPhysAddr::new(old.eptp & !0xFFF), 3);
}

/// Frees EPT table `table` at `level` (3 = PML4) and the tables below it (or the same of
/// nested page tables: present entries have one of bits 2:0 set in both formats, and a
/// 2 MiB leaf bit 7).
fn free_table(table: HostPhysAddr, level: u32) {
    if level > 0 {
        for i in 0..512 {
            let e = LiveEpt.entry(table, i);
            let large = level == 1 && e & (1 << 7) != 0;
            if e & 7 != 0 && !large {
                free_table(HostPhysAddr::new(e & 0x000F_FFFF_FFFF_F000), level - 1);
            }
        }
    }
    let _ = crate::frame_pool::free(table.as_u64());
}
