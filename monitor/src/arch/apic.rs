//! The local APIC in whichever mode this machine offers: x2APIC (MSRs; [`super::x2apic`],
//! the mode VT-x sandboxes need and the one every Intel machine Quest runs on has) or,
//! only where the CPU has no x2APIC, xAPIC (memory-mapped registers at the address in
//! IA32_APIC_BASE; AMD APM Vol. 2, 16.3). QEMU's software emulation (7.2) has SVM but no
//! x2APIC, so the monitor brings its cores up and sends its NMIs through the xAPIC there.
//!
//! The mode is chosen once on the boot core ([`choose`]) and every core enables the same
//! ([`enable`]). In xAPIC mode the registers are at the same offsets the x2APIC MSRs
//! number (`0x800 + offset / 16`), and the ICR is two 32-bit halves (destination in bits
//! 24..32 of the high half), written high half first.

use super::x2apic::{self, APIC_GLOBAL_ENABLE, IA32_APIC_BASE, SVR_VALUE, X2APIC_ID, X2APIC_SVR};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use quest_monitor_core::x2apic_emulation::xapic_offset;
use x86_64::registers::model_specific::Msr;

/// The xAPIC's base address bits of IA32_APIC_BASE.
const BASE_MASK: u64 = 0x000f_ffff_ffff_f000;
/// ICR delivery status: the previous IPI is still being sent.
const ICR_PENDING: u32 = 1 << 12;

/// The xAPIC registers the monitor itself uses (SDM Vol. 3A, Table 10-1), at the offsets
/// of the x2APIC MSRs it uses in x2APIC mode; the ICR's high half follows its low half.
const ID: u64 = xapic_offset(X2APIC_ID);
const SVR: u64 = xapic_offset(X2APIC_SVR);
const ICR_LOW: u64 = xapic_offset(x2apic::ICR);
const ICR_HIGH: u64 = ICR_LOW + 0x10;
/// The xAPIC's EOI register.
const EOI: u64 = 0xb0;

/// ICR low halves the monitor sends: delivery mode, level assert.
#[repr(u32)]
#[derive(Clone, Copy)]
enum Ipi {
    Init = 0x4500,
    Startup = 0x4600,
    Nmi = 0x4400,
}

/// True once [`choose`] picked the xAPIC.
static XAPIC: AtomicBool = AtomicBool::new(false);
/// Physical (= identity-mapped) base of the xAPIC registers.
static XAPIC_BASE: AtomicU64 = AtomicU64::new(0);

/// Which mode the monitor uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// x2APIC (MSRs).
    X2apic,
    /// xAPIC (memory-mapped), only where the CPU has no x2APIC.
    Xapic,
}

impl Mode {
    /// Its name, as the console prints it.
    pub fn name(self) -> &'static str {
        match self {
            Self::X2apic => "x2APIC",
            Self::Xapic => "xAPIC",
        }
    }
}

/// Picks the mode for every core: x2APIC where the CPU has it, else the xAPIC. Boot core,
/// once, before [`enable`].
pub fn choose() -> Mode {
    if x2apic::supported() {
        return Mode::X2apic;
    }
    // SAFETY: IA32_APIC_BASE exists on every CPU with a local APIC (all x86-64 CPUs);
    // reading it has no effect.
    let base = unsafe { Msr::new(IA32_APIC_BASE).read() } & BASE_MASK;
    XAPIC_BASE.store(base, Ordering::Relaxed);
    XAPIC.store(true, Ordering::Release);
    Mode::Xapic
}

/// The mode [`choose`] picked.
pub fn mode() -> Mode {
    if XAPIC.load(Ordering::Acquire) {
        Mode::Xapic
    } else {
        Mode::X2apic
    }
}

fn reg(offset: u64) -> *mut u32 {
    (XAPIC_BASE.load(Ordering::Relaxed) + offset) as *mut u32
}

/// Reads xAPIC register `offset` (xAPIC mode only).
pub fn xapic_read(offset: u64) -> u32 {
    // SAFETY: in xAPIC mode the register page is identity mapped (below 4 GiB, in the
    // boot map) and `offset` names a register inside it; reads have no side effects.
    unsafe { reg(offset & 0xff0).read_volatile() }
}

/// Writes xAPIC register `offset` (xAPIC mode only).
///
/// # Safety
/// The write must be one the caller may make to this core's local APIC.
pub unsafe fn xapic_write(offset: u64, value: u32) {
    // SAFETY: as in `xapic_read`; the effect is the caller's responsibility.
    unsafe { reg(offset & 0xff0).write_volatile(value) }
}

/// Enables this core's local APIC in the chosen mode.
///
/// # Safety
/// As [`x2apic::enable`]: interrupts disabled; after [`choose`].
pub unsafe fn enable() {
    match mode() {
        // SAFETY: per the contract; `choose` saw x2APIC support.
        Mode::X2apic => unsafe { x2apic::enable() },
        // SAFETY: setting the global enable bit keeps the APIC at its base in xAPIC
        // mode; SVR bit 8 software-enables it.
        Mode::Xapic => unsafe {
            let mut base = Msr::new(IA32_APIC_BASE);
            let value = base.read();
            base.write(value | APIC_GLOBAL_ENABLE);
            xapic_write(SVR, SVR_VALUE as u32);
        },
    }
}

/// This core's APIC ID.
pub fn id() -> u32 {
    match mode() {
        Mode::X2apic => x2apic::id(),
        Mode::Xapic => xapic_read(ID) >> 24,
    }
}

/// Sends an IPI: `low` is the ICR's low half (vector, delivery mode, level), `dest` the
/// target's APIC ID (physical destination).
///
/// # Safety
/// The IPI must be one the caller may send to that core.
pub unsafe fn send_ipi(dest: u32, low: u32) {
    match mode() {
        // SAFETY: per the contract; one MSR write sends it.
        Mode::X2apic => unsafe {
            Msr::new(x2apic::ICR).write(u64::from(dest) << 32 | u64::from(low))
        },
        // SAFETY: per the contract; the high half is written first, the low half sends.
        Mode::Xapic => unsafe {
            while xapic_read(ICR_LOW) & ICR_PENDING != 0 {
                core::hint::spin_loop();
            }
            xapic_write(ICR_HIGH, dest << 24);
            xapic_write(ICR_LOW, low);
        },
    }
}

/// INIT IPI (see [`x2apic::send_init`]).
///
/// # Safety
/// As [`x2apic::send_init`].
pub unsafe fn send_init(apic_id: u32) {
    // SAFETY: per the contract.
    unsafe { send_ipi(apic_id, Ipi::Init as u32) }
}

/// Start-up IPI (see [`x2apic::send_startup`]).
///
/// # Safety
/// As [`x2apic::send_startup`].
pub unsafe fn send_startup(apic_id: u32, page: u8) {
    // SAFETY: per the contract.
    unsafe { send_ipi(apic_id, Ipi::Startup as u32 | u32::from(page)) }
}

/// An NMI to the core with APIC ID `apic_id`.
///
/// # Safety
/// The target must handle NMIs (vCPU cores do: `vmx::host::load_vcpu_idt`).
pub unsafe fn send_nmi(apic_id: u32) {
    // SAFETY: per the contract.
    unsafe { send_ipi(apic_id, Ipi::Nmi as u32) }
}

/// Whether sandboxes' x2APIC is emulated over this core's xAPIC
/// (`quest_monitor_core::x2apic_emulation`; SVM backend only).
pub fn emulates_x2apic() -> bool {
    mode() == Mode::Xapic
}

/// A guest read of x2APIC MSR `msr` or IA32_APIC_BASE that the MSR policy passes
/// through, performed on this core's xAPIC; `None` when it has no xAPIC counterpart.
pub fn guest_read(msr: u32) -> Option<u64> {
    use quest_monitor_core::x2apic_emulation::{access, apic_base, Access};
    if msr == IA32_APIC_BASE {
        // SAFETY: as in `choose`.
        return Some(apic_base(unsafe { Msr::new(IA32_APIC_BASE).read() }));
    }
    match access(msr, 0) {
        Access::Register(offset) => Some(u64::from(xapic_read(offset))),
        Access::SelfIpi(_) | Access::None => None,
    }
}

/// A guest write of `value` to x2APIC MSR `msr` that the MSR policy passes through,
/// performed on this core's xAPIC; false when the MSR has no xAPIC counterpart.
///
/// # Safety
/// The policy allows the write (it only affects this core's local APIC).
pub unsafe fn guest_write(msr: u32, value: u64) -> bool {
    use quest_monitor_core::x2apic_emulation::{access, Access};
    match access(msr, value) {
        Access::Register(EOI) if crate::interrupts::eoi_needs_vector() => {
            // The vector this EOI ends: the highest in service (ISR, 8 registers of 32
            // bits, 0x10 apart), and whether it was taken level triggered (TMR).
            let vector = (0..8u64).rev().find_map(|i| {
                let isr = xapic_read(0x100 + 0x10 * i);
                (isr != 0).then(|| (32 * i + 31 - u64::from(isr.leading_zeros())) as u8)
            });
            // SAFETY: per the contract.
            unsafe { xapic_write(EOI, value as u32) };
            if let Some(v) = vector {
                let tmr = xapic_read(0x180 + 0x10 * u64::from(v / 32));
                if tmr & 1 << (v % 32) == 0 {
                    crate::interrupts::eoi_untagged(v);
                }
            }
        }
        // SAFETY: per the contract.
        Access::Register(offset) => unsafe { xapic_write(offset, value as u32) },
        // SAFETY: a fixed IPI to this core only (self shorthand).
        Access::SelfIpi(low) => unsafe { send_ipi(0, low) },
        Access::None => return false,
    }
    true
}
