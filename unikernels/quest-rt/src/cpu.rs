//! Processor identification.

use core::arch::x86_64::__cpuid;

/// This core's (x2)APIC ID as CPUID reports it: leaf 0xB EDX when the processor has it,
/// else the 8-bit ID in leaf 1 EBX[31:24]. Under Quest the monitor may virtualize it.
pub fn apic_id() -> u32 {
    let max_leaf = __cpuid(0).eax;
    if max_leaf >= 0xB {
        let leaf = __cpuid(0xB);
        // A leaf 0xB with EBX = 0 is not implemented (SDM Vol. 2A, CPUID, leaf 0BH).
        if leaf.ebx != 0 {
            return leaf.edx;
        }
    }
    __cpuid(1).ebx >> 24
}

/// Whether CPUID says we run under a hypervisor (leaf 1 ECX bit 31).
pub fn hypervisor_present() -> bool {
    __cpuid(1).ecx & (1 << 31) != 0
}
