//! Triple fault: the guest could not deliver an exception (no usable IDT or stack).
//! Contained like every fault.

use crate::vmx::vcpu::{Action, FaultKind, Vcpu};

pub fn handle(_v: &mut Vcpu) -> Action {
    Action::fault(FaultKind::TripleFault)
}
