//! XSETBV always exits. The monitor checks the new XCR0 against what the CPU supports
//! (an invalid value gets #GP, as on hardware) and executes it on the guest's behalf;
//! XCR0 is per core and the monitor itself never uses extended state.

use crate::vmx::instructions::reg;
use crate::vmx::vcpu::{Action, Vcpu};
use core::arch::asm;
use core::arch::x86_64::__cpuid_count;
use quest_monitor_core::cpuid_policy::xcr0_allowed;

pub fn handle(v: &mut Vcpu) -> Action {
    let index = v.regs.0[reg::RCX] as u32;
    let value = (v.regs.0[reg::RDX] << 32) | (v.regs.0[reg::RAX] & 0xffff_ffff);
    let leaf = __cpuid_count(0xD, 0);
    let supported = (u64::from(leaf.edx) << 32) | u64::from(leaf.eax);
    if index != 0 || !xcr0_allowed(value, supported) {
        v.inject_exception(13, true);
        return Action::Continue;
    }
    // SAFETY: XCR0 value checked against the CPU's supported set and the architectural
    // consistency rules; CR4.OSXSAVE was set in the host by `host::enable_vmx`.
    unsafe {
        asm!("xsetbv", in("ecx") 0u32, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack));
    }
    v.skip_instruction();
    Action::Continue
}
