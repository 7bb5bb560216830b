//! The VMX-side pieces of boot-time calibration (`crate::calibrate` runs the protocol):
//! the NMI gate and sleep of vCPU cores as `WAIT` uses them, and a real VM exit + entry
//! round trip measured with a minimal guest before any sandbox vCPU exists.
//!
//! The calibration guest: four frames, identity-mapped in their own EPT at guest-physical
//! 0: code (`cpuid` at 0), PML4 at 0x1000, PDPT at 0x2000, a page directory at 0x3000
//! mapping guest-virtual 0..2 MiB with one large page. Each VM entry runs the `cpuid`,
//! which exits unconditionally; the host re-enters without advancing RIP, so every
//! exit + entry is the same instruction. Then VMCLEAR and VMXOFF: the core leaves VMX
//! operation as it found it, and `run_core` enters it again as usual.

use super::caps::VmxCaps;
use super::instructions::{self as vmx, GuestRegs};
use super::sandbox::PoolFrames;
use crate::sandboxes::SandboxVmx;
use crate::system::System;
use quest_abi::{GuestPhysAddr, HostPhysAddr, ACCESS_EXEC, ACCESS_READ, ACCESS_WRITE};
use quest_monitor_core::ept::EptBuilder;
use quest_monitor_core::exit::ExitReason;
use quest_monitor_core::vmcs_fields::{field32, natural};

/// VPID of the calibration guest (sandboxes use 1..=MAX_SANDBOXES).
const CALIBRATION_VPID: u16 = quest_abi::MAX_SANDBOXES as u16 + 1;
/// Guest frames: code, PML4, PDPT, page directory.
pub(crate) const GUEST_FRAMES: usize = 4;

/// Loads the vCPU IDT on this core (its NMI gate only returns, ending a sleep window),
/// so calibration may send it NMIs as `DOORBELL` and a stopping leader do.
///
/// # Safety
/// Interrupts disabled; the platform IDT is loaded on this core.
pub unsafe fn prepare_core() {
    // SAFETY: per this function's contract.
    unsafe { super::host::load_vcpu_idt() }
}

/// Sends an NMI to `apic_id`.
///
/// # Safety
/// The target ran [`prepare_core`] (or runs a vCPU) and nothing on it is disturbed by an
/// NMI that only returns.
pub unsafe fn send_nmi(apic_id: u32) {
    // SAFETY: per this function's contract, which is `send_nmi`'s.
    unsafe { super::host::send_nmi(apic_id) }
}

/// NMIs the vCPU NMI gate has handled on all cores since boot.
pub fn nmis_handled() -> u64 {
    super::sleep::nmis_handled()
}

/// Sleeps exactly as a vCPU in `WAIT` does (see `sleep`): halts unless `flag` is set,
/// returns after the next NMI.
pub fn sleep_as_in_wait(flag: &core::sync::atomic::AtomicU32) {
    static NEVER: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
    super::sleep::sleep_until_nmi(flag, &NEVER);
}

/// Why the VM exit measurement could not run.
#[derive(Clone, Copy, Debug)]
pub enum ExitCostError {
    /// VMX could not be entered or left, or a VMCS not set up.
    Vmx(&'static str),
    /// A VM exit other than CPUID (the raw basic reason).
    UnexpectedExit(u32),
}

impl core::fmt::Display for ExitCostError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Vmx(what) => write!(f, "{what} failed"),
            Self::UnexpectedExit(r) => write!(f, "unexpected VM exit (reason {r})"),
        }
    }
}

pub(crate) fn step<T, E>(r: Result<T, E>, what: &'static str) -> Result<T, ExitCostError> {
    r.map_err(|_| ExitCostError::Vmx(what))
}

pub(crate) fn rdtsc() -> u64 {
    // SAFETY: LFENCE and RDTSC have no side effects; LFENCE keeps the read in order.
    unsafe {
        core::arch::x86_64::_mm_lfence();
        core::arch::x86_64::_rdtsc()
    }
}

/// Writes the calibration guest into `base` (GUEST_FRAMES zeroed frames) and returns
/// its EPT pointer.
fn build_guest(base: u64) -> Result<u64, ExitCostError> {
    write_guest(base);
    let mut ept = step(EptBuilder::new(PoolFrames), "EPT allocation")?;
    map_guest(base, "EPT mapping", |gpa, hpa, size, access, large| {
        ept.map_range(gpa, hpa, size, access, large)
    })?;
    Ok(ept.eptp())
}

/// Maps the calibration guest (GUEST_FRAMES frames at `base`) at guest-physical 0, in
/// 4 KiB pages, readable, writable and executable, with `map_range` (either backend's
/// page-table builder's `map_range`; `what` names the step in the error).
pub(crate) fn map_guest<E>(
    base: u64,
    what: &'static str,
    map_range: impl FnOnce(GuestPhysAddr, HostPhysAddr, u64, u32, bool) -> Result<(), E>,
) -> Result<(), ExitCostError> {
    let (gpa, hpa) = (GuestPhysAddr::new(0), HostPhysAddr::new(base));
    let access = ACCESS_READ | ACCESS_WRITE | ACCESS_EXEC;
    step(
        map_range(gpa, hpa, GUEST_FRAMES as u64 * 4096, access, false),
        what,
    )
}

/// Writes the calibration guest's code and page tables into `base` (GUEST_FRAMES
/// zeroed frames, mapped at guest-physical 0 by either backend's tables).
pub(crate) fn write_guest(base: u64) {
    let write = |offset: u64, value: u64| {
        // SAFETY: `base` is GUEST_FRAMES fresh identity-mapped frames owned by this
        // function's caller; every offset is an aligned slot inside them.
        unsafe { ((base + offset) as *mut u64).write_volatile(value) };
    };
    // cpuid (0f a2) then jmp $-4 (eb fc), should the guest ever run on.
    write(0, 0xfceb_a20f);
    write(0x1000, 0x2000 | 0x3); // PML4[0] -> PDPT, present + writable
    write(0x2000, 0x3000 | 0x3); // PDPT[0] -> page directory
    write(0x3000, 0x83); // PD[0]: 2 MiB page at 0, present + writable + large
}

/// Measures `trials` VM exit + entry round trips on this core and returns each in TSC
/// cycles (into `out`, at most its length; the count is returned). Frames used (about a
/// dozen) stay with the monitor.
///
/// # Safety
/// Interrupts disabled; this core is not in VMX operation and no sandbox vCPU has run on
/// it yet; nothing sends it NMIs meanwhile.
pub unsafe fn vm_exit_entry(sys: &System, out: &mut [u64]) -> Result<usize, ExitCostError> {
    let caps: VmxCaps = step(super::check_support(), "VMX support")?;
    let (Some(sandbox), Some(vcpu)) = (
        sys.table.sandboxes().next(),
        sys.table.sandboxes().next().and_then(|s| s.vcpus().next()),
    ) else {
        return Err(ExitCostError::Vmx("finding a vCPU for the guest state"));
    };
    let guest = crate::frame_pool::alloc_zeroed(GUEST_FRAMES)
        .ok_or(ExitCostError::Vmx("frame allocation"))?;
    let eptp = build_guest(guest)?;
    let bitmaps = crate::frame_pool::alloc_zeroed(3).ok_or(ExitCostError::Vmx("bitmaps"))?;
    let res = SandboxVmx {
        eptp,
        io_bitmaps: bitmaps,
        msr_bitmap: bitmaps + 2 * 4096,
    };
    // SAFETY: per this function's contract (interrupts off, the platform IDT loaded, not
    // in VMX operation yet); `caps` were checked on this machine.
    unsafe {
        super::host::load_vcpu_idt();
        step(super::host::enable_vmx(&caps), "VMXON")?;
    }
    // SAFETY: VMX is on; the new VMCS stays current until the VMCLEAR below.
    let vmcs = step(unsafe { super::host::new_current_vmcs(&caps) }, "VMCS")?;
    // SAFETY: the VMCS is current; the host state is this core's; the guest state is a
    // valid 64-bit launch state, then pointed at the calibration guest's own page tables
    // and code, which its EPT maps.
    unsafe {
        step(
            super::vmcs::write_controls(&caps, &res, CALIBRATION_VPID),
            "VMCS controls",
        )?;
        step(super::host::write_host_state(), "VMCS host state")?;
        step(
            super::vmcs::write_guest_state(&caps, &sandbox, &vcpu),
            "VMCS guest state",
        )?;
        step(vmx::write_natural(natural::GUEST_CR3, 0x1000), "guest CR3")?;
        step(vmx::write_natural(natural::GUEST_RIP, 0), "guest RIP")?;
        step(vmx::write_natural(natural::GUEST_RSP, 0x1000), "guest RSP")?;
    }
    let mut regs = GuestRegs::default();
    let mut count = 0;
    // One more entry than samples: the first is a VMLAUNCH, not the steady state.
    for i in 0..=out.len() {
        let t0 = rdtsc();
        // SAFETY: the VMCS is complete (controls, host and guest state above).
        let entered = unsafe { vmx::enter_guest(&mut regs, i > 0) };
        let t1 = rdtsc();
        step(entered, "VM entry")?;
        // SAFETY: right after a VM exit with this VMCS current.
        let raw = unsafe { vmx::read32(field32::EXIT_REASON) };
        if ExitReason::from_raw(raw) != ExitReason::Cpuid {
            return Err(ExitCostError::UnexpectedExit(raw & 0xffff));
        }
        if i > 0 {
            out[count] = t1.wrapping_sub(t0);
            count += 1;
        }
    }
    // SAFETY: VMX is on and `vmcs` is this core's; VMXOFF leaves VMX operation with no
    // current VMCS, as the core was before (CR4.VMXE stays set, which `enable_vmx` sets
    // anyway when `run_core` enters VMX operation again).
    unsafe {
        step(vmx::vmclear(vmcs), "VMCLEAR")?;
        vmxoff();
    }
    Ok(count)
}

/// VMXOFF.
///
/// # Safety
/// In VMX root operation with no VMCS in use afterwards.
unsafe fn vmxoff() {
    // SAFETY: per the contract.
    unsafe { core::arch::asm!("vmxoff", options(nostack)) }
}
