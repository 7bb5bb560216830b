//! The local APIC in x2APIC mode: support, enabling it, its ID and its ICR (SDM Vol. 3A,
//! 10.12); IPIs are sent through [`super::apic`], which also covers the xAPIC.

use core::arch::x86_64::__cpuid;
use x86_64::registers::model_specific::Msr;

pub(super) const IA32_APIC_BASE: u32 = 0x1b;
pub(super) const APIC_GLOBAL_ENABLE: u64 = 1 << 11;
const APIC_X2APIC_ENABLE: u64 = 1 << 10;
pub(super) const X2APIC_ID: u32 = 0x802;
pub(super) const X2APIC_SVR: u32 = 0x80f;
/// The interrupt command register (one 64-bit MSR in x2APIC mode).
pub const ICR: u32 = 0x830;
/// Spurious-interrupt vector; bit 8 software-enables the APIC.
pub(super) const SVR_VALUE: u64 = 0x1ff;

/// Whether the CPU has an x2APIC (CPUID.1:ECX[21]).
pub fn supported() -> bool {
    let leaf1 = __cpuid(1);
    leaf1.ecx & (1 << 21) != 0
}

/// Switches this core's local APIC to x2APIC mode and software-enables it.
///
/// # Safety
/// `supported()` must be true. Interrupts must be disabled (the monitor never enables
/// them), since the APIC's mode changes under any handler.
pub unsafe fn enable() {
    let mut base = Msr::new(IA32_APIC_BASE);
    // SAFETY: IA32_APIC_BASE exists on every CPU with an APIC; setting EN then EXTD is
    // the documented way into x2APIC mode (the SVR MSR only exists in that mode).
    unsafe {
        let value = base.read();
        base.write(value | APIC_GLOBAL_ENABLE);
        base.write(value | APIC_GLOBAL_ENABLE | APIC_X2APIC_ENABLE);
        Msr::new(X2APIC_SVR).write(SVR_VALUE);
    }
}

/// This core's x2APIC ID (x2APIC mode must be enabled).
pub fn id() -> u32 {
    // SAFETY: reading the ID register in x2APIC mode has no side effect.
    unsafe { Msr::new(X2APIC_ID).read() as u32 }
}
