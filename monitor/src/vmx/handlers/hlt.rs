//! HLT. HLT exiting is off (a halted vCPU sleeps in the guest until its own interrupt,
//! with no VM exit); should a CPU force it on, the vCPU is put into the HLT activity
//! state so it still sleeps in the guest.

use crate::vmx::instructions as vmx;
use crate::vmx::vcpu::{Action, Vcpu};
use quest_monitor_core::vmcs_fields::field32;

/// Guest activity state "HLT" (SDM 25.4.2).
const ACTIVITY_HLT: u32 = 1;

pub fn handle(v: &mut Vcpu) -> Action {
    v.skip_instruction();
    // SAFETY: this vCPU's VMCS is current; HLT is a valid activity state.
    unsafe {
        let _ = vmx::write32(field32::GUEST_ACTIVITY_STATE, ACTIVITY_HLT);
    }
    Action::Continue
}
