//! CPUID: the host's answer filtered by `quest_monitor_core::cpuid_policy`.

use crate::vmx::instructions::reg;
use crate::vmx::vcpu::{Action, Vcpu};
use core::arch::x86_64::__cpuid_count;
use quest_monitor_core::cpuid_policy::{filter, is_hypervisor_leaf, CpuidContext, CpuidRegs};

pub fn handle(v: &mut Vcpu) -> Action {
    let leaf = v.regs.0[reg::RAX] as u32;
    let subleaf = v.regs.0[reg::RCX] as u32;
    let host = if is_hypervisor_leaf(leaf) {
        CpuidRegs::default()
    } else {
        let r = __cpuid_count(leaf, subleaf);
        CpuidRegs {
            eax: r.eax,
            ebx: r.ebx,
            ecx: r.ecx,
            edx: r.edx,
        }
    };
    let ctx = CpuidContext {
        vcpu_index: v.index as u32,
        vcpu_count: v.vcpu_count() as u32,
        tsc_khz: v.sys.tsc_khz,
        x2apic_emulated: crate::arch::apic::mode() == crate::arch::apic::Mode::Xapic,
    };
    let r = filter(leaf, subleaf, host, &ctx);
    v.regs.0[reg::RAX] = u64::from(r.eax);
    v.regs.0[3] = u64::from(r.ebx);
    v.regs.0[reg::RCX] = u64::from(r.ecx);
    v.regs.0[reg::RDX] = u64::from(r.edx);
    v.skip_instruction();
    Action::Continue
}
