//! VM-exit handlers, one file per exit family. [`handle`] dispatches on the basic exit
//! reason; every handler checks each guest-supplied value before using it.

mod cpuid;
mod cr_access;
mod ept_violation;
mod hlt;
mod hypercall;
mod io;
mod msr;
mod nmi;
mod shutdown;
mod uhyve;
mod unexpected;
mod xsetbv;

pub use io::handle_decoded as io_decoded;

use super::vcpu::{Action, FaultKind, Vcpu};
use quest_monitor_core::exit::{ExitReason, ENTRY_FAILURE};

/// Handles the VM exit with raw exit-reason field `raw`.
pub fn handle(v: &mut Vcpu, raw: u32) -> Action {
    if raw & ENTRY_FAILURE != 0 {
        return Action::fault(FaultKind::EntryFailed {
            reason: raw & 0xffff,
            error: 0,
        });
    }
    match ExitReason::from_raw(raw) {
        ExitReason::ExceptionOrNmi => nmi::handle(v),
        ExitReason::TripleFault => shutdown::handle(v),
        ExitReason::Cpuid => cpuid::handle(v),
        ExitReason::Vmcall => hypercall::handle(v),
        ExitReason::Io => io::handle(v),
        ExitReason::Rdmsr => msr::read(v),
        ExitReason::Wrmsr => msr::write(v),
        ExitReason::EptViolation => ept_violation::handle(v),
        ExitReason::EptMisconfig => ept_violation::misconfig(v),
        ExitReason::CrAccess => cr_access::handle(v),
        ExitReason::Xsetbv => xsetbv::handle(v),
        ExitReason::Hlt => hlt::handle(v),
        ExitReason::VmxInstruction => {
            // No nested virtualisation: VMX instructions are undefined in a sandbox.
            v.inject_exception(6, false);
            Action::Continue
        }
        _ => unexpected::handle(raw),
    }
}

/// Reads the exit qualification of the current exit.
fn qualification() -> u64 {
    // SAFETY: handlers run right after a VM exit with this vCPU's VMCS current.
    unsafe {
        super::instructions::read_natural(
            quest_monitor_core::vmcs_fields::natural::EXIT_QUALIFICATION,
        )
    }
}
