//! Control-register accesses. Only writes that touch bits the monitor owns (the CR0/CR4
//! guest/host masks in `vmcs`) exit; such a write would leave long mode, disable paging
//! or caching, or expose VMX, so it stops the sandbox. Anything else is applied.

use crate::vmx::instructions::{self as vmx};
use crate::vmx::vcpu::{Action, FaultKind, Vcpu};
use crate::vmx::vmcs::{CR0_MASK, CR4_MASK, GUEST_CR0, GUEST_CR4};
use quest_monitor_core::exit::{CrAccess, CrAccessKind};
use quest_monitor_core::vmcs_fields::natural;

pub fn handle(v: &mut Vcpu) -> Action {
    let access = CrAccess::decode(super::qualification());
    let (mask, shadow, field) = match access.cr {
        0 => (CR0_MASK, GUEST_CR0, natural::GUEST_CR0),
        4 => (CR4_MASK, GUEST_CR4, natural::GUEST_CR4),
        cr => return Action::fault(FaultKind::ControlRegister(cr)),
    };
    if access.kind != CrAccessKind::MovToCr || access.gpr == 4 {
        return Action::fault(FaultKind::ControlRegister(access.cr));
    }
    let value = v.regs.0[usize::from(access.gpr)];
    if (value ^ shadow) & mask != 0 {
        return Action::fault_at(FaultKind::ControlRegister(access.cr), value);
    }
    // SAFETY: this vCPU's VMCS is current; only guest-owned bits change.
    unsafe {
        let current = vmx::read_natural(field);
        let _ = vmx::write_natural(field, (value & !mask) | (current & mask));
    }
    v.skip_instruction();
    Action::Continue
}
