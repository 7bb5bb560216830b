//! The VT-x side of an NMI exit. NMI exiting is on so the monitor can take a core back:
//! an NMI exit means "look at your sandbox's stop flag", which the run loop does before
//! every VM entry; here only the NMI blocking it leaves behind is ended.

use crate::arch::cpu::{CODE_SELECTOR, DATA_SELECTOR};
use crate::vmx::instructions as vmx;
use core::arch::asm;
use quest_monitor_core::vmcs_fields::field32;

/// Guest interruptibility state: blocking by NMI.
const BLOCKING_BY_NMI: u32 = 1 << 3;

/// Ends the NMI blocking an NMI exit leaves behind, on this core and in the guest's saved
/// state, so that the next NMI takes the vCPU back again even if its guest never runs an
/// IRET (a vCPU halted with no interrupt coming, say just after a migration):
/// - "VM exits caused directly by NMIs cause blocking by NMI" (SDM), until an IRET in
///   VMX root operation. Hardware replaces it at VM entry with the guest's own blocking;
///   Bochs 2.7 keeps it, and an IRET in the guest does not end it under NMI exiting. So
///   the monitor executes that IRET here, to the next instruction.
/// - The monitor never gives its guests an NMI, so blocking by NMI in the saved guest
///   interruptibility state can only be this exit's own (Bochs saves it so).
pub fn unblock_nmis() {
    // SAFETY: this vCPU's VMCS is current; clearing one blocking bit is a valid state.
    unsafe {
        let state = vmx::read32(field32::GUEST_INTERRUPTIBILITY);
        if state & BLOCKING_BY_NMI != 0 {
            let _ = vmx::write32(field32::GUEST_INTERRUPTIBILITY, state & !BLOCKING_BY_NMI);
        }
    }
    // SAFETY: an interrupt frame of this very stack pointer, the monitor's code and
    // stack segments (the host selectors of every VMCS, `host::write_host_state`), the
    // current flags and the label right after; IRETQ returns there with every register
    // but `tmp` unchanged. Its only other effect is the end of NMI blocking: an NMI
    // pending now arrives at the vCPU cores' NMI gate, which only returns.
    unsafe {
        asm!(
            "mov {tmp}, rsp",
            "push {ss}",
            "push {tmp}",
            "pushfq",
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "iretq",
            "2:",
            tmp = out(reg) _,
            ss = in(reg) u64::from(DATA_SELECTOR),
            cs = in(reg) u64::from(CODE_SELECTOR),
        );
    }
}
