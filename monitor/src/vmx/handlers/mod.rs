//! VM exits, decoded and handled. Each backend turns its own exit information into the
//! backend-neutral `quest_monitor_core::handlers::Exit` (VT-x here, reading the VMCS
//! fields a decoding asks for; SVM in `svm::vmcb`), and the shared handlers in
//! `quest_monitor_core::handlers` take it through the vCPU's `VcpuOps` ([`ops`]), where
//! the two backends differ.

mod nmi;
mod ops;

use super::instructions as vmx;
use super::vcpu::{Action, Vcpu};
use quest_monitor_core::exit::{from_vmx, VmxDetail};
use quest_monitor_core::handlers::{self, Exit};
use quest_monitor_core::vmcs_fields::{field32, field64, natural};

/// Handles the VT-x exit with raw exit-reason field `raw`.
pub fn handle(v: &mut Vcpu, raw: u32) -> Action {
    let exit = from_vmx(raw, |detail| {
        // SAFETY: right after a VM exit with this vCPU's VMCS current; reading an exit
        // information field has no side effect.
        unsafe {
            match detail {
                VmxDetail::Qualification => vmx::read_natural(natural::EXIT_QUALIFICATION),
                VmxDetail::GuestPhysical => vmx::read64(field64::GUEST_PHYSICAL_ADDRESS),
                VmxDetail::InterruptionInfo => {
                    u64::from(vmx::read32(field32::EXIT_INTERRUPTION_INFO))
                }
            }
        }
    });
    handle_decoded(v, exit)
}

/// Handles an exit already decoded (by either backend).
pub fn handle_decoded(v: &mut Vcpu, exit: Exit) -> Action {
    handlers::handle(v, exit)
}
