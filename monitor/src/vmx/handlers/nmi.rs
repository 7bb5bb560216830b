//! Exception-or-NMI exits. NMI exiting is on so the monitor can take a core back: an NMI
//! here means "look at your sandbox's stop flag", which the run loop does before every
//! VM entry. The exception bitmap is empty, so any other exception here is unexpected.

use crate::vmx::instructions as vmx;
use crate::vmx::vcpu::{Action, FaultKind, Vcpu};
use quest_monitor_core::exit::{InterruptionInfo, INTERRUPTION_NMI};
use quest_monitor_core::vmcs_fields::field32;

pub fn handle(_v: &mut Vcpu) -> Action {
    // SAFETY: right after a VM exit with this vCPU's VMCS current.
    let info = InterruptionInfo::decode(unsafe { vmx::read32(field32::EXIT_INTERRUPTION_INFO) });
    if info.valid && info.kind == INTERRUPTION_NMI {
        return Action::Continue;
    }
    Action::fault(FaultKind::Exception(info.vector))
}
