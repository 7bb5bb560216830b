//! A guest x2APIC on a host whose local APIC runs in xAPIC mode (a CPU without x2APIC:
//! QEMU 7.2's software emulation of an AMD CPU with SVM). Guests see the same x2APIC as on
//! VT-x (`CPUID.1:ECX[21]` set, IA32_APIC_BASE with EXTD, the MSRs of `msr_policy` with the
//! same policies); the SVM backend intercepts every x2APIC MSR and IA32_APIC_BASE, and
//! the monitor performs each access the policy allows on the core's real APIC through its
//! memory-mapped registers (x2APIC MSR `0x800 + n` is xAPIC register `n * 16`; SDM Vol.
//! 3A, 10.12.1.2). Only three registers differ:
//! - the ICR is one 64-bit MSR but two xAPIC registers (translated IPIs go through the
//!   monitor's IPI path anyway, `x2apic_icr`);
//! - SELF IPI (0x83F) has no xAPIC register: it becomes a fixed IPI with the "self"
//!   shorthand;
//! - ID and LDR are virtual on both backends (`msr_policy`).
//!
//! Every access costs a #VMEXIT here, where VT-x passes the fast-path registers through:
//! correct, not fast (this host is an emulator).

use crate::msr_policy::IA32_APIC_BASE;

/// First and last x2APIC MSR.
pub const X2APIC_FIRST: u32 = 0x800;
/// Last x2APIC MSR.
pub const X2APIC_LAST: u32 = 0x8FF;
/// The x2APIC SELF IPI register.
pub const SELF_IPI: u32 = 0x83F;
/// IA32_APIC_BASE bit 10: x2APIC mode.
pub const APIC_BASE_EXTD: u64 = 1 << 10;
/// CPUID.1:ECX bit 21: x2APIC.
pub const CPUID_X2APIC: u32 = 1 << 21;
/// ICR low half: fixed delivery, edge, the "self" destination shorthand (bits 19:18 = 01).
const ICR_SELF_FIXED: u32 = 1 << 18;

/// Whether the backend must intercept `msr` (reads and writes) to emulate the x2APIC.
pub fn intercepted(msr: u32) -> bool {
    msr == IA32_APIC_BASE || (X2APIC_FIRST..=X2APIC_LAST).contains(&msr)
}

/// What the monitor does for an access the policy passes through on VT-x.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Reads or writes the xAPIC register at this offset (32 bits).
    Register(u64),
    /// Sends this ICR low half to the core itself (SELF IPI).
    SelfIpi(u32),
    /// The MSR has no xAPIC counterpart: as on a CPU without it (#GP).
    None,
}

/// The xAPIC access for a guest write of `value` (or a read, `value` ignored) of x2APIC
/// MSR `msr` whose policy is "pass".
pub fn access(msr: u32, value: u64) -> Access {
    match msr {
        SELF_IPI => Access::SelfIpi(ICR_SELF_FIXED | (value as u32 & 0xff)),
        X2APIC_FIRST..=0x83F => Access::Register(xapic_offset(msr)),
        _ => Access::None,
    }
}

/// The offset of the xAPIC register that x2APIC MSR `msr` (`X2APIC_FIRST..=X2APIC_LAST`)
/// is: `(msr - 0x800) * 16`.
pub const fn xapic_offset(msr: u32) -> u64 {
    ((msr - X2APIC_FIRST) as u64) << 4
}

/// The IA32_APIC_BASE a guest reads: the host's, in x2APIC mode.
pub fn apic_base(host: u64) -> u64 {
    host | APIC_BASE_EXTD
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msr_policy::{read_policy, write_policy, ReadPolicy, WritePolicy};

    #[test]
    fn fast_path_registers_map_to_their_xapic_offsets() {
        assert_eq!(access(0x808, 0), Access::Register(0x80), "TPR");
        assert_eq!(access(0x80B, 0), Access::Register(0xB0), "EOI");
        assert_eq!(access(0x80F, 0), Access::Register(0xF0), "SVR");
        assert_eq!(access(0x832, 0), Access::Register(0x320), "LVT timer");
        assert_eq!(access(0x838, 0), Access::Register(0x380), "initial count");
        assert_eq!(access(0x839, 0), Access::Register(0x390), "current count");
        assert_eq!(access(0x83E, 0), Access::Register(0x3E0), "divide");
        // The registers the monitor uses itself (SDM Vol. 3A, Table 10-1): ID, ICR low.
        assert_eq!((xapic_offset(0x802), xapic_offset(0x830)), (0x20, 0x300));
    }

    #[test]
    fn self_ipi_becomes_a_fixed_ipi_to_self_with_only_the_vector() {
        assert_eq!(access(SELF_IPI, 0x79), Access::SelfIpi(0x4_0079));
        assert_eq!(access(SELF_IPI, 0xffff_ff21), Access::SelfIpi(0x4_0021));
        assert_eq!(access(0x840, 0), Access::None);
    }

    #[test]
    fn every_x2apic_msr_and_apic_base_is_intercepted_and_nothing_else() {
        for msr in [0x1B, 0x800, 0x802, 0x80B, 0x830, 0x83F, 0x8FF] {
            assert!(intercepted(msr), "{msr:#x}");
        }
        for msr in [0x1A, 0x1C, 0x6E0, 0x7FF, 0x900, 0xC000_0080] {
            assert!(!intercepted(msr), "{msr:#x}");
        }
    }

    #[test]
    fn the_guest_sees_x2apic_mode_and_its_own_write_of_it_is_the_same_value() {
        let host = 0xFEE0_0900; // xAPIC at its default base, enabled, BSP
        assert_eq!(apic_base(host), 0xFEE0_0D00);
        assert_eq!(apic_base(apic_base(host)), apic_base(host));
        assert_eq!(write_policy(IA32_APIC_BASE), WritePolicy::SameValueOnly);
    }

    #[test]
    fn each_passed_x2apic_register_has_an_xapic_counterpart() {
        for msr in X2APIC_FIRST..=X2APIC_LAST {
            let passed =
                read_policy(msr) == ReadPolicy::Pass || write_policy(msr) == WritePolicy::Pass;
            if passed {
                assert_ne!(access(msr, 0), Access::None, "{msr:#x}");
            }
        }
    }
}
