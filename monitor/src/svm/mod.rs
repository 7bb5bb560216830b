//! The AMD SVM backend: SVM on every core that runs a vCPU, one VMCB per vCPU, nested
//! page tables and I/O and MSR permission maps per sandbox, built from the same plan and
//! policies as the VT-x backend's EPT and bitmaps (`quest_monitor_core::{npt, svm_maps}`).
//!
//! Only this module touches a VMCB or runs an SVM instruction. The rest is shared with
//! the VT-x backend: the vCPU record, the launch/stop/restart protocol and summary
//! (`vmx::lifecycle`), and the exit handlers (`quest_monitor_core::handlers`), which take
//! each #VMEXIT decoded (`quest_monitor_core::svm_exit::decode`) and reach the VMCB only
//! through the vCPU's `VcpuOps` methods that ask [`active`] which backend runs.
//!
//! Entry points: [`choose`] on the boot core (which backend, from CPUID and the two MSRs
//! it names), [`run_core`] on every core that runs a vCPU when [`active`].

mod host;
mod vmcb;

use crate::system::System;
use crate::vmx::vcpu::{Action, Vcpu};
use core::arch::x86_64::{__cpuid, __cpuid_count};
use quest_abi::CoreId;
use quest_monitor_core::backend::{self, Backend, CpuidFacts, NoBackend, SvmCaps, Vendor};
use x86_64::registers::model_specific::Msr;

pub use vmcb::{
    build_sandbox, flush_translations, guest_cr3, inject_exception, rip, set_tsc_offset,
    skip_instruction, tsc_offset, use_structures, vm_exit_entry, IOPM_FRAMES, MSRPM_FRAMES,
};

static CAPS: spin::Once<SvmCaps> = spin::Once::new();

/// Whether the SVM backend runs this machine (set once by [`choose`]).
pub fn active() -> bool {
    CAPS.is_completed()
}

/// Chooses the backend from CPUID and the MSRs CPUID says exist; SVM is remembered for
/// [`active`] and [`run_core`]. The error names what each backend lacks.
pub fn choose() -> Result<Backend, NoBackend> {
    let leaf0 = __cpuid(0);
    let max_extended_leaf = __cpuid(0x8000_0000).eax;
    let ext = |leaf: u32| (max_extended_leaf >= leaf).then(|| __cpuid_count(leaf, 0));
    let svm_leaf = ext(0x8000_000A);
    let facts = CpuidFacts {
        vendor: Vendor::from_cpuid(leaf0.ebx, leaf0.edx, leaf0.ecx),
        leaf1_ecx: __cpuid(1).ecx,
        max_extended_leaf,
        ext1_ecx: ext(0x8000_0001).map_or(0, |r| r.ecx),
        svm_asids: svm_leaf.map_or(0, |r| r.ebx),
        svm_edx: svm_leaf.map_or(0, |r| r.edx),
    };
    let read = |msr: u32| {
        // SAFETY: only called for an MSR that CPUID says exists (see `CpuidFacts`);
        // reading it has no effect.
        unsafe { Msr::new(msr).read() }
    };
    let feature_control = facts
        .needs_feature_control()
        .then(|| read(quest_monitor_core::vmx_controls::msr::FEATURE_CONTROL));
    let vm_cr = facts.needs_vm_cr().then(|| read(backend::VM_CR));
    let chosen = backend::choose(&facts, feature_control, vm_cr)?;
    if let Backend::Svm(caps) = chosen {
        CAPS.call_once(|| caps);
    }
    Ok(chosen)
}

/// Runs the vCPU the table puts on `core` for the life of the system (SVM backend); a
/// standby core (or a core whose vCPU migrated away) waits for a vCPU to arrive
/// (`vmx::stand_by`, shared with the VT-x backend) and runs it.
pub fn run_core(core: CoreId, sys: &'static System) -> ! {
    let Some(&caps) = CAPS.get() else {
        fatal(format_args!("core {core}: the SVM backend is not active"))
    };
    // SAFETY: called once on this core with interrupts off; the platform IDT and this
    // core's GDT/TSS are loaded.
    if let Err(e) = unsafe { host::enable_svm(core) } {
        fatal(format_args!("core {core} cannot enable SVM: {e}"));
    }
    let mut next = vmcb::first_vcpu(core, sys, caps);
    loop {
        let v = match next.take() {
            Some(v) => v,
            None => crate::vmx::stand_by(core, sys),
        };
        crate::vmx::run_vcpu(v);
    }
}

/// Writes the launch state into `v`'s VMCB and flushes its ASID's translations.
pub fn prepare(v: &mut Vcpu) -> Result<(), crate::sandboxes::SetupError> {
    vmcb::prepare(v)
}

/// Runs `v` until its next #VMEXIT, counts it and handles it.
pub fn enter(v: &mut Vcpu, st: &crate::sandboxes::SandboxState) -> Action {
    vmcb::enter(v, st)
}

/// A monitor-side failure that no sandbox caused: report and stop the system.
fn fatal(args: core::fmt::Arguments<'_>) -> ! {
    crate::println!("quest: {args}");
    crate::shutdown::shutdown(false)
}
