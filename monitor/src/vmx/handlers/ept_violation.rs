//! EPT violations: the guest touched guest-physical memory its EPT does not map, or wrote
//! or executed memory mapped without that right (e.g. a reader writing a channel's data
//! area). Always contained: the sandbox is stopped per its `on_fault`.

use crate::vmx::instructions as vmx;
use crate::vmx::vcpu::{Action, FaultKind, Vcpu};
use quest_monitor_core::exit::EptViolation;
use quest_monitor_core::vmcs_fields::field64;

fn guest_physical() -> u64 {
    // SAFETY: called right after an EPT exit with the vCPU's VMCS current.
    unsafe { vmx::read64(field64::GUEST_PHYSICAL_ADDRESS) }
}

pub fn handle(_v: &mut Vcpu) -> Action {
    let q = EptViolation::decode(super::qualification());
    Action::fault_at(FaultKind::EptViolation(q.access_name()), guest_physical())
}

pub fn misconfig(_v: &mut Vcpu) -> Action {
    Action::fault_at(FaultKind::EptMisconfig, guest_physical())
}
