//! The VT-x half of the monitor: VMX root operation on every core that runs a vCPU, one
//! VMCS per vCPU, per-sandbox EPT, I/O and MSR bitmaps, exit handling and fault
//! containment.
//!
//! Entry points for the platform code:
//! - [`check_support`] on the boot core before anything else VMX (it checks CPUID
//!   before touching any VMX MSR);
//! - [`run_core`] on every core that runs a vCPU (never returns).
//!
//! Steady state: external interrupts, the local APIC timer, TSC, TSC-deadline, EOI and
//! HLT stay inside the sandbox without VM exits; only CPUID, hypercalls, trapped MSRs and
//! ports, XSETBV and faults reach the monitor. A vCPU that calls `WAIT` sleeps in the
//! monitor until a channel peer's `DOORBELL` (an NMI) wakes it (`doorbell`, `sleep`).

mod boot_cost;
pub mod calibrate;
mod caps;
mod console_out;
mod doorbell;
mod guest_mem;
mod handlers;
mod host;
mod instructions;
pub(crate) mod lifecycle;
mod migrate;
mod sandbox;
mod sleep;
pub(crate) mod vcpu;
mod vmcs;

pub(crate) use boot_cost::launch as count_launch;
pub use caps::{VmxCaps, VmxError};
pub(crate) use host::load_vcpu_idt;
pub(crate) use migrate::{entering, left_guest, stand_by};
pub(crate) use sandbox::{resources, PoolFrames};
pub(crate) use sleep::nmis_handled;

use crate::system::System;
use quest_abi::{CoreId, SandboxId};
use quest_monitor_core::console_line::LineBuffer;

static CAPS: spin::Once<Result<VmxCaps, VmxError>> = spin::Once::new();

/// Checks that this machine has VT-x with EPT and what Quest needs of it (see
/// [`VmxError`] for the messages). The result is kept for [`run_core`].
pub fn check_support() -> Result<VmxCaps, VmxError> {
    *CAPS.call_once(|| {
        let caps = caps::check_support();
        if caps.is_ok() {
            migrate::note_dirty_tracking();
        }
        caps
    })
}

/// Runs the vCPU assigned to logical core `core` for the life of the system; a standby
/// core (or a core whose vCPU migrated away) waits for a vCPU to arrive
/// ([`migrate::stand_by`]) and runs it.
pub fn run_core(core: CoreId, sys: &'static System) -> ! {
    let caps = match check_support() {
        Ok(c) => c,
        Err(e) => fatal(format_args!("{e}")),
    };
    // SAFETY: called once on this core with interrupts off (the monitor never enables
    // them); the platform IDT and this core's GDT/TSS are loaded.
    if let Err(e) = unsafe {
        host::load_vcpu_idt();
        host::enable_vmx(&caps)
    } {
        fatal(format_args!("core {core} cannot enter VMX operation: {e}"));
    }
    let mut next = first_vcpu(core, sys, caps);
    loop {
        let v = match next.take() {
            Some(v) => v,
            None => migrate::stand_by(core, sys),
        };
        lifecycle::run(v);
    }
}

/// The vCPU the table puts on `core`, with its VMCS current and its controls and host
/// state written (`None`: the core stands by).
fn first_vcpu(core: CoreId, sys: &'static System, caps: VmxCaps) -> Option<vcpu::Vcpu> {
    let (entry, sandbox_view) = sys
        .table
        .vcpu_on_core(core)
        .and_then(|v| Some((v, sys.table.sandbox(v.sandbox())?)))?;
    let s = sandbox_view.id();
    boot_cost::launch(s);
    let name = sandbox_view.name();
    let res = match sandbox::resources(sys, s) {
        Ok(r) => r,
        Err(e) => fatal(format_args!("sandbox '{name}': {e}")),
    };
    // SAFETY: VMX is on; the VMCS made current here stays current on this core until
    // its vCPU migrates away (`migrate::hand_off` clears it).
    let vmcs = match unsafe { host::new_current_vmcs(&caps) } {
        Ok(vmcs) => vmcs,
        Err(e) => fatal(format_args!("core {core}: cannot create a VMCS: {e}")),
    };
    // SAFETY: the VMCS is current; the host state describes this core, whose GDT, TSS
    // and vCPU IDT stay loaded.
    let setup = unsafe {
        vmcs::write_controls(&caps, &res, vpid(s)).and_then(|()| host::write_host_state())
    };
    if let Err(e) = setup {
        fatal(format_args!("core {core}: cannot write the VMCS: {e:?}"));
    }
    Some(new_vcpu(sys, core, entry, sandbox_view, caps, vmcs))
}

/// The record of the vCPU `entry` of `sandbox_view` on `core`, whose VMCS (or, on SVM,
/// VMCB) is at `vmcs`.
pub(crate) fn new_vcpu(
    sys: &'static System,
    core: CoreId,
    entry: quest_abi::view::VcpuView<'static>,
    sandbox_view: quest_abi::view::SandboxView<'static>,
    caps: VmxCaps,
    vmcs: u64,
) -> vcpu::Vcpu {
    let s = sandbox_view.id();
    vcpu::Vcpu {
        sys,
        sandbox: s,
        sandbox_view,
        index: entry.index(),
        core,
        name: sandbox_view.name(),
        entry,
        caps,
        regs: instructions::GuestRegs::default(),
        line: LineBuffer::new(),
        mem: guest_mem::GuestMem::of(sys, s),
        launched: false,
        entered_once: false,
        vmcs,
        arrived: None,
        pending: None,
        pci_latch: 0,
    }
}

/// Runs `v` on this core for as long as its sandbox lives (both backends).
pub(crate) fn run_vcpu(v: vcpu::Vcpu) {
    lifecycle::run(v)
}

/// Handles an exit its backend decoded (the SVM backend's; VT-x decodes in `handlers`).
pub(crate) fn handle_exit(
    v: &mut vcpu::Vcpu,
    exit: quest_monitor_core::handlers::Exit,
) -> vcpu::Action {
    handlers::handle_decoded(v, exit)
}

/// The VPID of sandbox `s`'s vCPUs (VPID 0 is the host's; at most MAX_SANDBOXES sandboxes).
fn vpid(s: SandboxId) -> u16 {
    s.index() as u16 + 1
}

/// A monitor-side failure that no sandbox caused: report and stop the system.
fn fatal(args: core::fmt::Arguments<'_>) -> ! {
    crate::println!("quest: {args}");
    crate::shutdown::shutdown(false)
}
