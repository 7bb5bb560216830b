//! RDMSR/WRMSR exits, decided by `crate::msr_policy`: virtual APIC IDs, checked and
//! translated IPIs (`crate::x2apic_icr`), the emulated x2APIC on an xAPIC host, #GP for
//! unknown MSRs, and a contained fault for writes that could reach other cores or the
//! platform.

use super::{done, inject};
use crate::migration::{guest_deadline, host_deadline};
use crate::msr_policy::{
    logical_apic_id, read_policy, write_policy, ReadPolicy, WritePolicy, IA32_APIC_BASE,
    TSC_DEADLINE,
};
use crate::vcpu_ops::{gpr, Action, Exception, FaultKind, VcpuOps};
use crate::x2apic_icr::translate_icr;

fn msr_index(v: &impl VcpuOps) -> u32 {
    v.regs()[gpr::RCX] as u32
}

pub fn read(v: &mut impl VcpuOps) -> Action {
    let msr = msr_index(v);
    let value = match read_policy(msr) {
        // Exits only for a sandbox that hides migration pauses (`trap_tsc_deadline`).
        _ if msr == TSC_DEADLINE && v.tsc_deadline_offset().is_some() => {
            guest_deadline(v.host_tsc_deadline(), v.tsc_deadline_offset().unwrap_or(0))
        }
        ReadPolicy::VirtualApicId => v.vcpu_index() as u64,
        ReadPolicy::VirtualLogicalId => u64::from(logical_apic_id(v.vcpu_index() as u32)),
        // On an xAPIC host the x2APIC and IA32_APIC_BASE exit (emulated).
        ReadPolicy::Pass if v.x2apic_read(msr).is_some() => v.x2apic_read(msr).unwrap_or(0),
        // A pass-through MSR only exits when outside the bitmap's ranges (none is), and
        // an unknown one reads as on a CPU without it: #GP.
        ReadPolicy::Pass | ReadPolicy::InjectGp => return inject(v, Exception::GeneralProtection),
    };
    let regs = v.regs_mut();
    regs[gpr::RAX] = value & 0xffff_ffff;
    regs[gpr::RDX] = value >> 32;
    done(v)
}

pub fn write(v: &mut impl VcpuOps) -> Action {
    let msr = msr_index(v);
    let value = (v.regs()[gpr::RDX] << 32) | (v.regs()[gpr::RAX] & 0xffff_ffff);
    let forbidden = Action::fault_at(FaultKind::ForbiddenMsr(msr), u64::from(msr));
    match write_policy(msr) {
        // Exits only for a sandbox that hides migration pauses: the deadline is the
        // guest's, moved to the host's TSC, so it fires when the guest's TSC reaches it.
        _ if msr == TSC_DEADLINE && v.tsc_deadline_offset().is_some() => {
            let offset = v.tsc_deadline_offset().unwrap_or(0);
            v.set_host_tsc_deadline(host_deadline(value, offset));
        }
        WritePolicy::Icr => return send_ipi(v, value),
        WritePolicy::SameValueOnly => {
            let current = v.x2apic_read(msr).unwrap_or_else(|| v.host_apic_base());
            if msr != IA32_APIC_BASE || value != current {
                return forbidden;
            }
        }
        WritePolicy::InjectGp => return inject(v, Exception::GeneralProtection),
        WritePolicy::Pass if v.x2apic_write(msr, value) => {}
        WritePolicy::Pass | WritePolicy::Forbidden => return forbidden,
    }
    done(v)
}

/// A guest ICR write: checked, then one physical IPI per target vCPU's core.
fn send_ipi(v: &mut impl VcpuOps, icr: u64) -> Action {
    let ipi = match translate_icr(icr, v.vcpu_index(), v.vcpu_count()) {
        Ok(ipi) => ipi,
        Err(e) => return Action::fault_at(FaultKind::BadIpi(e), icr >> 32),
    };
    for t in ipi.target_indices() {
        v.send_ipi(t, &ipi);
    }
    done(v)
}

#[cfg(test)]
mod tests {
    use super::super::fake::FakeVcpu;
    use super::super::{handle as dispatch, Exit};
    use super::*;
    use crate::x2apic_icr::IcrError;

    fn rdmsr(v: &mut FakeVcpu, msr: u32) -> Action {
        v.regs[gpr::RCX] = u64::from(msr) | (0xdead << 32);
        dispatch(v, Exit::MsrRead)
    }

    fn wrmsr(v: &mut FakeVcpu, msr: u32, value: u64) -> Action {
        v.regs[gpr::RCX] = u64::from(msr);
        v.regs[gpr::RAX] = value & 0xffff_ffff | (0xbad << 32);
        v.regs[gpr::RDX] = value >> 32;
        dispatch(v, Exit::MsrWrite)
    }

    fn result(v: &FakeVcpu) -> (u64, u64) {
        (v.regs[gpr::RAX], v.regs[gpr::RDX])
    }

    #[test]
    fn apic_ids_read_as_the_vcpu_index() {
        let mut v = FakeVcpu::new();
        assert_eq!(rdmsr(&mut v, 0x802), Action::Continue);
        assert_eq!(result(&v), (1, 0));
        assert_eq!(rdmsr(&mut v, 0x80D), Action::Continue);
        assert_eq!(result(&v), (u64::from(logical_apic_id(1)), 0));
        assert_eq!(v.skipped, 2);
    }

    #[test]
    fn unknown_msrs_read_as_gp_and_writes_stop_the_sandbox() {
        let mut v = FakeVcpu::new();
        for msr in [0x3A, 0x4000_0000, 0xC001_0114, 0x1234_5678] {
            assert_eq!(rdmsr(&mut v, msr), Action::Continue);
        }
        assert_eq!(v.injected, [Exception::GeneralProtection; 4]);
        // IA32_FEATURE_CONTROL, VM_CR, SMM_MONITOR_CTL... and MTRR_DEF_TYPE: stopped.
        for msr in [0x3A, 0xC001_0114, 0x9E, 0x2FF] {
            assert_eq!(
                wrmsr(&mut v, msr, 0),
                Action::fault_at(FaultKind::ForbiddenMsr(msr), u64::from(msr))
            );
        }
        // Read-only APIC registers: #GP.
        assert_eq!(wrmsr(&mut v, 0x802, 5), Action::Continue);
        assert_eq!(v.injected.len(), 5);
        assert_eq!(v.skipped, 0);
    }

    #[test]
    fn apic_base_writes_may_only_repeat_it() {
        let mut v = FakeVcpu::new();
        v.apic_base = 0xFEE0_0D00;
        assert_eq!(wrmsr(&mut v, 0x1B, 0xFEE0_0D00), Action::Continue);
        assert_eq!(v.skipped, 1);
        // Disabling the x2APIC (EXTD off) would hide the core from the monitor's NMI.
        assert_eq!(
            wrmsr(&mut v, 0x1B, 0xFEE0_0900),
            Action::fault_at(FaultKind::ForbiddenMsr(0x1B), 0x1B)
        );
        // With the x2APIC emulated over an xAPIC host, the guest's view (EXTD set) is
        // what a write must repeat, not the host's.
        v.apic_base = 0xFEE0_0900;
        v.x2apic = Some(Default::default());
        assert_eq!(
            wrmsr(&mut v, 0x1B, 0xFEE0_0900),
            Action::fault_at(FaultKind::ForbiddenMsr(0x1B), 0x1B)
        );
        assert_eq!(wrmsr(&mut v, 0x1B, 0xFEE0_0D00), Action::Continue);
        assert_eq!(v.skipped, 2);
    }

    #[test]
    fn icr_writes_become_checked_physical_ipis() {
        let mut v = FakeVcpu::with_vcpus(4);
        // Fixed vector 0x40 to vCPU 2.
        assert_eq!(wrmsr(&mut v, 0x830, (2 << 32) | 0x40), Action::Continue);
        assert_eq!(v.ipis, [(2, 0x40)]);
        // All excluding self (vCPU 1 of 4).
        assert_eq!(wrmsr(&mut v, 0x830, 0xC_0041), Action::Continue);
        assert_eq!(v.ipis[1..], [(0, 0x41), (2, 0x41), (3, 0x41)]);
        assert_eq!(v.skipped, 2);
    }

    #[test]
    fn icr_writes_that_could_leave_the_sandbox_stop_it() {
        let mut v = FakeVcpu::with_vcpus(2);
        for (icr, e) in [
            ((5 << 32) | 0x40, IcrError::ForeignDestination(5)),
            ((1 << 32) | 0x440, IcrError::DeliveryMode(4)),
            ((1 << 32) | 0x4500, IcrError::DeliveryMode(5)),
            ((1 << 32) | 0x840, IcrError::LogicalDestination),
            ((1 << 32) | 0x2, IcrError::BadVector(2)),
        ] {
            assert_eq!(
                wrmsr(&mut v, 0x830, icr),
                Action::fault_at(FaultKind::BadIpi(e), icr >> 32)
            );
        }
        assert!(v.ipis.is_empty());
        assert_eq!(v.skipped, 0);
    }

    #[test]
    fn the_tsc_deadline_is_moved_between_guest_and_host_tsc_when_trapped() {
        let mut v = FakeVcpu::new();
        v.tsc_offset = Some(1000u64.wrapping_neg()); // the guest's TSC is 1000 behind
        assert_eq!(wrmsr(&mut v, TSC_DEADLINE, 5000), Action::Continue);
        assert_eq!(v.host_deadline, host_deadline(5000, 1000u64.wrapping_neg()));
        assert_eq!(v.host_deadline, 6000);
        assert_eq!(rdmsr(&mut v, TSC_DEADLINE), Action::Continue);
        assert_eq!(result(&v), (5000, 0));
        // Disarming (0) stays disarmed.
        assert_eq!(wrmsr(&mut v, TSC_DEADLINE, 0), Action::Continue);
        assert_eq!(v.host_deadline, 0);
        // Untrapped (SVM): an exit for it follows the policy (pass: no emulation, #GP).
        v.tsc_offset = None;
        assert_eq!(rdmsr(&mut v, TSC_DEADLINE), Action::Continue);
        assert_eq!(v.injected, [Exception::GeneralProtection]);
        assert_eq!(
            wrmsr(&mut v, TSC_DEADLINE, 1),
            Action::fault_at(
                FaultKind::ForbiddenMsr(TSC_DEADLINE),
                u64::from(TSC_DEADLINE)
            )
        );
    }

    #[test]
    fn the_emulated_x2apic_reads_and_writes_through_the_monitor() {
        let mut v = FakeVcpu::new();
        // Not emulated (VT-x): a pass-through register that exits is a fault / #GP.
        assert_eq!(
            wrmsr(&mut v, 0x808, 0x10),
            Action::fault_at(FaultKind::ForbiddenMsr(0x808), 0x808)
        );
        v.x2apic = Some(Default::default());
        assert_eq!(wrmsr(&mut v, 0x808, 0x10), Action::Continue, "TPR");
        assert_eq!(rdmsr(&mut v, 0x808), Action::Continue);
        assert_eq!(result(&v), (0x10, 0));
        // ID is still virtual, not the host's.
        assert_eq!(rdmsr(&mut v, 0x802), Action::Continue);
        assert_eq!(result(&v), (1, 0));
        // An x2APIC MSR with no xAPIC counterpart: #GP on read, fault on write.
        assert_eq!(rdmsr(&mut v, 0x8FF), Action::Continue);
        assert_eq!(v.injected, [Exception::GeneralProtection]);
        assert_eq!(
            wrmsr(&mut v, 0x8FF, 0),
            Action::fault_at(FaultKind::ForbiddenMsr(0x8FF), 0x8FF)
        );
    }
}
