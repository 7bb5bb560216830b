//! CPUID: the host's answer filtered by `crate::cpuid_policy` (the hypervisor leaves are
//! Quest's own, never the host's).

use super::done;
use crate::cpuid_policy::{filter, is_hypervisor_leaf, CpuidContext, CpuidRegs};
use crate::vcpu_ops::{gpr, Action, VcpuOps};

pub fn handle(v: &mut impl VcpuOps) -> Action {
    let leaf = v.regs()[gpr::RAX] as u32;
    let subleaf = v.regs()[gpr::RCX] as u32;
    let host = if is_hypervisor_leaf(leaf) {
        CpuidRegs::default()
    } else {
        v.host_cpuid(leaf, subleaf)
    };
    let ctx = CpuidContext {
        vcpu_index: v.vcpu_index() as u32,
        vcpu_count: v.vcpu_count() as u32,
        tsc_khz: v.tsc_khz(),
        x2apic_emulated: v.emulates_x2apic(),
        mwait: v.mwait_sleeps(),
    };
    let r = filter(leaf, subleaf, host, &ctx);
    let regs = v.regs_mut();
    regs[gpr::RAX] = u64::from(r.eax);
    regs[gpr::RBX] = u64::from(r.ebx);
    regs[gpr::RCX] = u64::from(r.ecx);
    regs[gpr::RDX] = u64::from(r.edx);
    done(v)
}

#[cfg(test)]
mod tests {
    use super::super::fake::FakeVcpu;
    use super::super::{handle as dispatch, Exit};
    use super::*;

    fn cpuid(v: &mut FakeVcpu, leaf: u64, subleaf: u64) -> [u64; 4] {
        v.regs[gpr::RAX] = leaf;
        v.regs[gpr::RCX] = subleaf;
        assert_eq!(dispatch(v, Exit::Cpuid), Action::Continue);
        let r = &v.regs;
        [r[gpr::RAX], r[gpr::RBX], r[gpr::RCX], r[gpr::RDX]]
    }

    /// The context `FakeVcpu::new()` gives the filter (vCPU 1 of 2, 1 GHz, VT-x-like).
    fn fake_context() -> CpuidContext {
        CpuidContext {
            vcpu_index: 1,
            vcpu_count: 2,
            tsc_khz: 1_000_000,
            x2apic_emulated: false,
            mwait: true,
        }
    }

    #[test]
    fn answers_are_the_policy_filter_of_the_host() {
        let mut v = FakeVcpu::new();
        let host = v.host_cpuid(1, 0);
        let ctx = fake_context();
        let want = filter(1, 0, host, &ctx);
        let got = cpuid(&mut v, 1, 0);
        assert_eq!(got, [want.eax, want.ebx, want.ecx, want.edx].map(u64::from));
        assert_eq!(v.skipped, 1);
        // The upper halves of the registers are cleared, as CPUID does.
        let got = cpuid(&mut v, 0xffff_ffff_0000_0001, 0);
        assert!(got.iter().all(|r| r >> 32 == 0));
    }

    #[test]
    fn hypervisor_leaves_never_show_the_host() {
        let mut v = FakeVcpu::new();
        v.host_leaf_value = 0xdead_beef;
        let got = cpuid(&mut v, 0x4000_0000, 0);
        assert!(got.iter().all(|&r| r != 0xdead_beef), "{got:x?}");
        let ctx = fake_context();
        let want = filter(0x4000_0000, 0, CpuidRegs::default(), &ctx);
        assert_eq!(got[0], u64::from(want.eax));
    }
}
