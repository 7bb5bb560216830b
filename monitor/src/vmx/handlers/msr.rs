//! RDMSR/WRMSR exits, decided by `quest_monitor_core::msr_policy`: virtual APIC IDs,
//! checked and translated IPIs, #GP for unknown MSRs, and a contained fault for writes
//! that could reach other cores or the platform.

use crate::arch::apic;
use crate::vmx::instructions::reg;
use crate::vmx::vcpu::{Action, FaultKind, Vcpu};
use quest_monitor_core::migration::{guest_deadline, host_deadline};
use quest_monitor_core::msr_policy::{
    logical_apic_id, read_policy, write_policy, ReadPolicy, WritePolicy, TSC_DEADLINE,
};
use quest_monitor_core::vmcs_fields::field64;
use quest_monitor_core::x2apic_icr::translate_icr;
use x86_64::registers::model_specific::Msr;

fn set_result(v: &mut Vcpu, value: u64) {
    v.regs.0[reg::RAX] = value & 0xffff_ffff;
    v.regs.0[reg::RDX] = value >> 32;
}

/// The vCPU's TSC offset (its TSC reads the host's plus this).
fn tsc_offset() -> u64 {
    // SAFETY: the exiting vCPU's VMCS is current on this core.
    unsafe { crate::vmx::instructions::read64(field64::TSC_OFFSET) }
}

pub fn read(v: &mut Vcpu) -> Action {
    let msr = v.regs.0[reg::RCX] as u32;
    let value = match read_policy(msr) {
        // Exits only for a sandbox that hides migration pauses (`trap_tsc_deadline`, VT-x:
        // migration is VT-x only).
        _ if msr == TSC_DEADLINE && !crate::svm::active() => {
            // SAFETY: this core's own deadline MSR, armed for this vCPU; reading has no
            // side effect.
            guest_deadline(unsafe { Msr::new(TSC_DEADLINE).read() }, tsc_offset())
        }
        ReadPolicy::VirtualApicId => v.index as u64,
        ReadPolicy::VirtualLogicalId => u64::from(logical_apic_id(v.index as u32)),
        // On an xAPIC host the x2APIC and IA32_APIC_BASE exit (`apic::emulates_x2apic`).
        ReadPolicy::Pass if emulated_read(msr).is_some() => emulated_read(msr).unwrap_or(0),
        // A pass-through MSR only exits when outside the bitmap's ranges (none is), and
        // an unknown one reads as on a CPU without it: #GP.
        ReadPolicy::Pass | ReadPolicy::InjectGp => {
            v.inject_exception(13, true);
            return Action::Continue;
        }
    };
    set_result(v, value);
    v.skip_instruction();
    Action::Continue
}

pub fn write(v: &mut Vcpu) -> Action {
    let msr = v.regs.0[reg::RCX] as u32;
    let value = (v.regs.0[reg::RDX] << 32) | (v.regs.0[reg::RAX] & 0xffff_ffff);
    match write_policy(msr) {
        // Exits only for a sandbox that hides migration pauses (`trap_tsc_deadline`, VT-x:
        // migration is VT-x only).
        _ if msr == TSC_DEADLINE && !crate::svm::active() => {
            // SAFETY: this core's timer belongs to this vCPU; the deadline is the guest's,
            // moved to the host's TSC, so it fires when the guest's TSC reaches it.
            unsafe { Msr::new(TSC_DEADLINE).write(host_deadline(value, tsc_offset())) };
        }
        WritePolicy::Icr => return send_ipi(v, value),
        WritePolicy::SameValueOnly => {
            let current = emulated_read(msr).unwrap_or_else(|| {
                // SAFETY: only IA32_APIC_BASE has this policy; reading it has no effect.
                unsafe { Msr::new(msr).read() }
            });
            if value != current {
                return Action::fault_at(FaultKind::ForbiddenMsr(msr), u64::from(msr));
            }
        }
        WritePolicy::InjectGp => {
            v.inject_exception(13, true);
            return Action::Continue;
        }
        WritePolicy::Pass if emulated_write(msr, value) => {}
        WritePolicy::Pass | WritePolicy::Forbidden => {
            return Action::fault_at(FaultKind::ForbiddenMsr(msr), u64::from(msr));
        }
    }
    v.skip_instruction();
    Action::Continue
}

/// A read the monitor performs on an xAPIC host for a guest x2APIC (`None`: not
/// emulated here).
fn emulated_read(msr: u32) -> Option<u64> {
    apic::emulates_x2apic()
        .then(|| apic::guest_read(msr))
        .flatten()
}

/// A write the policy passes, performed by the monitor on an xAPIC host; false when
/// not emulated here.
fn emulated_write(msr: u32, value: u64) -> bool {
    // SAFETY: only called for writes the policy passes through on VT-x, which only
    // affect this core's local APIC.
    apic::emulates_x2apic() && unsafe { apic::guest_write(msr, value) }
}

/// A guest ICR write: checked, then one physical IPI per target vCPU's core.
fn send_ipi(v: &mut Vcpu, icr: u64) -> Action {
    let ipi = match translate_icr(icr, v.index, v.vcpu_count()) {
        Ok(ipi) => ipi,
        Err(e) => return Action::fault_at(FaultKind::BadIpi(e), icr >> 32),
    };
    // The target vCPUs' cores where they are now, not where the table first put them
    // (the sandbox may have migrated).
    for t in ipi.target_indices() {
        crate::vmx::migrate::ipi_cores(v.sandbox, t, |core| {
            let Some(apic_id) = v.sys.apic_id(core) else {
                return;
            };
            // SAFETY: a fixed-mode, physical-destination IPI with a legal vector to a
            // core of this very sandbox, or its standby core (`translate_icr`,
            // `ipi_cores`); standby cores never accept interrupts.
            unsafe { apic::send_ipi(apic_id, ipi.icr_for(apic_id) as u32) };
        });
    }
    v.skip_instruction();
    Action::Continue
}
