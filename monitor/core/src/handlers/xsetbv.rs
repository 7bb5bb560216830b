//! XSETBV always exits. The monitor checks the new XCR0 against what the CPU supports
//! (an invalid value gets #GP, as on hardware) and executes it on the guest's behalf;
//! XCR0 is per core and the monitor itself never uses extended state.

use super::{done, inject};
use crate::cpuid_policy::xcr0_allowed;
use crate::vcpu_ops::{gpr, Action, Exception, VcpuOps};

pub fn handle(v: &mut impl VcpuOps) -> Action {
    let index = v.regs()[gpr::RCX] as u32;
    let value = (v.regs()[gpr::RDX] << 32) | (v.regs()[gpr::RAX] & 0xffff_ffff);
    let leaf = v.host_cpuid(0xD, 0);
    let supported = (u64::from(leaf.edx) << 32) | u64::from(leaf.eax);
    if index != 0 || !xcr0_allowed(value, supported) {
        return inject(v, Exception::GeneralProtection);
    }
    v.set_xcr0(value);
    done(v)
}

#[cfg(test)]
mod tests {
    use super::super::fake::FakeVcpu;
    use super::super::{handle as dispatch, Exit};
    use super::*;

    fn xsetbv(v: &mut FakeVcpu, index: u64, value: u64) -> Action {
        v.regs[gpr::RCX] = index;
        v.regs[gpr::RAX] = value & 0xffff_ffff;
        v.regs[gpr::RDX] = value >> 32;
        dispatch(v, Exit::Xsetbv)
    }

    #[test]
    fn a_supported_value_is_loaded() {
        let mut v = FakeVcpu::new();
        v.xcr0_supported = 0b111;
        assert_eq!(xsetbv(&mut v, 0, 0b111), Action::Continue);
        assert_eq!((v.xcr0, v.skipped), (Some(0b111), 1));
    }

    #[test]
    fn invalid_values_and_other_xcrs_get_gp() {
        let mut v = FakeVcpu::new();
        v.xcr0_supported = 0b111 | (0b111 << 5);
        for (index, value) in [
            (0, 0b110),            // no x87
            (0, 0b101),            // AVX without SSE
            (0, 0b1111),           // bit 3 not supported
            (0, 1 << 63),          // nor bit 63
            (0, 0b111 | (1 << 5)), // AVX-512 bits apart
            (1, 0b11),             // XCR1
            (1 << 32, 0b11),       // ECX's upper half is ignored: XCR0, legal
        ] {
            assert_eq!(xsetbv(&mut v, index, value), Action::Continue);
        }
        assert_eq!(v.injected, [Exception::GeneralProtection; 6]);
        assert_eq!(
            (v.xcr0, v.skipped),
            (Some(0b11), 1),
            "only the last was legal"
        );
    }
}
