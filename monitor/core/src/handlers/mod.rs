//! The VM-exit handlers, backend-neutral: each backend decodes its own exit information
//! into an [`Exit`] (VT-x: `crate::exit::from_vmx`; SVM: `crate::svm_exit::decode`) and
//! [`handle`] dispatches it to one handler per exit family, which sees the vCPU only
//! through [`VcpuOps`]. Every handler checks each guest-supplied value before using it.

mod console;
mod cpuid;
mod cr_access;
mod hypercall;
mod io;
mod msr;
mod uhyve;
mod xsetbv;

#[cfg(test)]
pub(crate) mod fake;

pub use console::console_from_guest;

use crate::exit::{basic, CrAccess, EptViolation, IoQualification};
use crate::vcpu_ops::{Action, Exception, FaultKind, VcpuOps};

/// One VM exit, decoded by its backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// CPUID.
    Cpuid,
    /// HLT.
    Hlt,
    /// VMCALL (VT-x) or VMMCALL (SVM): a Quest hypercall.
    Hypercall,
    /// An I/O instruction.
    Io(IoQualification),
    /// RDMSR.
    MsrRead,
    /// WRMSR.
    MsrWrite,
    /// XSETBV.
    Xsetbv,
    /// A control-register access.
    CrAccess(CrAccess),
    /// An access the EPT or nested page tables do not allow, at guest-physical `gpa`.
    NestedPageFault {
        /// The access, as VT-x's EPT-violation qualification describes it.
        access: EptViolation,
        /// The guest-physical address.
        gpa: u64,
    },
    /// A misconfigured EPT or nested page-table entry (a monitor bug) at `gpa`.
    NestedMisconfig {
        /// The guest-physical address.
        gpa: u64,
    },
    /// An NMI: the monitor takes the core back (the run loop looks at the stop flag).
    Nmi,
    /// A guest exception reached the monitor (none is intercepted).
    Exception(u8),
    /// Triple fault (VT-x) or shutdown (SVM).
    Shutdown,
    /// A VMX or SVM instruction other than the hypercall: no nested virtualisation.
    VirtualizationInstruction,
    /// VM entry failed (VT-x basic exit reason with the entry-failure bit, or VMRUN
    /// refused the VMCB: reported as VT-x's invalid guest state).
    EntryFailed {
        /// Basic exit reason.
        reason: u32,
    },
    /// Anything else, by VT-x basic exit reason (SVM: its exit code where VT-x has no
    /// counterpart).
    Unexpected(u32),
}

impl Exit {
    /// The exit of VT-x basic exit reason `reason` when it carries no detail (both
    /// decoders name the rest by it; anything with a detail they decode themselves).
    pub fn plain(reason: u16) -> Self {
        match reason {
            basic::TRIPLE_FAULT => Self::Shutdown,
            basic::CPUID => Self::Cpuid,
            basic::HLT => Self::Hlt,
            basic::VMCALL => Self::Hypercall,
            basic::RDMSR => Self::MsrRead,
            basic::WRMSR => Self::MsrWrite,
            basic::XSETBV => Self::Xsetbv,
            // VMCLEAR..VMXON, INVEPT, INVVPID (and a guest's VMRUN, named VMLAUNCH).
            19..=basic::VMXON | basic::INVEPT | basic::INVVPID => Self::VirtualizationInstruction,
            other => Self::Unexpected(other.into()),
        }
    }
}

/// Handles exit `exit` of vCPU `v`.
pub fn handle(v: &mut impl VcpuOps, exit: Exit) -> Action {
    match exit {
        Exit::Cpuid => cpuid::handle(v),
        Exit::Hlt => {
            v.skip_instruction();
            v.halt();
            Action::Continue
        }
        Exit::Hypercall => hypercall::handle(v),
        Exit::Io(q) => io::handle(v, q),
        Exit::MsrRead => msr::read(v),
        Exit::MsrWrite => msr::write(v),
        Exit::Xsetbv => xsetbv::handle(v),
        Exit::CrAccess(access) => cr_access::handle(v, access),
        // Always contained: the guest touched memory its tables do not map, or wrote or
        // executed memory mapped without that right (a reader writing a channel's data).
        Exit::NestedPageFault { access, gpa } => {
            Action::fault_at(FaultKind::EptViolation(access.access_name()), gpa)
        }
        Exit::NestedMisconfig { gpa } => Action::fault_at(FaultKind::EptMisconfig, gpa),
        Exit::Nmi => {
            v.nmi_taken();
            Action::Continue
        }
        Exit::Exception(vector) => Action::fault(FaultKind::Exception(vector)),
        Exit::Shutdown => Action::fault(FaultKind::TripleFault),
        Exit::VirtualizationInstruction => {
            v.inject(Exception::InvalidOpcode);
            Action::Continue
        }
        Exit::EntryFailed { reason } => Action::fault(FaultKind::EntryFailed { reason, error: 0 }),
        // Stopped rather than guessing what the guest meant (INIT, task switch, INVD...).
        Exit::Unexpected(reason) => Action::fault(FaultKind::Unexpected(reason)),
    }
}

/// Skips the instruction and resumes the guest.
fn done(v: &mut impl VcpuOps) -> Action {
    v.skip_instruction();
    Action::Continue
}

/// Injects `e` and resumes the guest on the same instruction.
fn inject(v: &mut impl VcpuOps, e: Exception) -> Action {
    v.inject(e);
    Action::Continue
}

#[cfg(test)]
mod tests {
    use super::fake::FakeVcpu;
    use super::*;
    use crate::exit::CrAccessKind;

    #[test]
    fn guest_vmx_and_svm_instructions_get_ud_and_nothing_else() {
        let mut v = FakeVcpu::new();
        assert_eq!(
            handle(&mut v, Exit::VirtualizationInstruction),
            Action::Continue
        );
        assert_eq!(v.injected, vec![Exception::InvalidOpcode]);
        assert_eq!(v.skipped, 0, "RIP stays on the instruction");
    }

    #[test]
    fn nested_faults_stop_the_sandbox_at_their_address() {
        let mut v = FakeVcpu::new();
        let access = EptViolation::decode(0b010);
        assert_eq!(
            handle(
                &mut v,
                Exit::NestedPageFault {
                    access,
                    gpa: 0xdead_0000
                }
            ),
            Action::fault_at(FaultKind::EptViolation("write"), 0xdead_0000)
        );
        let fetch = EptViolation::decode(0b100);
        assert_eq!(
            handle(
                &mut v,
                Exit::NestedPageFault {
                    access: fetch,
                    gpa: u64::MAX
                }
            ),
            Action::fault_at(FaultKind::EptViolation("fetch"), u64::MAX)
        );
        assert_eq!(
            handle(&mut v, Exit::NestedMisconfig { gpa: 0x1000 }),
            Action::fault_at(FaultKind::EptMisconfig, 0x1000)
        );
        assert_eq!(v.skipped, 0);
    }

    #[test]
    fn nmis_resume_and_everything_unexpected_stops() {
        let mut v = FakeVcpu::new();
        assert_eq!(handle(&mut v, Exit::Nmi), Action::Continue);
        assert_eq!(v.nmis, 1);
        assert_eq!(
            handle(&mut v, Exit::Exception(14)),
            Action::fault(FaultKind::Exception(14))
        );
        assert_eq!(
            handle(&mut v, Exit::Shutdown),
            Action::fault(FaultKind::TripleFault)
        );
        assert_eq!(
            handle(&mut v, Exit::Unexpected(3)),
            Action::fault(FaultKind::Unexpected(3))
        );
        assert_eq!(
            handle(
                &mut v,
                Exit::EntryFailed {
                    reason: 0x8000_0021
                }
            ),
            Action::fault(FaultKind::EntryFailed {
                reason: 0x8000_0021,
                error: 0
            })
        );
        assert_eq!((v.skipped, v.injected.len()), (0, 0));
    }

    #[test]
    fn hlt_sleeps_in_the_guest_after_the_instruction() {
        let mut v = FakeVcpu::new();
        assert_eq!(handle(&mut v, Exit::Hlt), Action::Continue);
        assert_eq!((v.skipped, v.halted), (1, true));
    }

    #[test]
    fn dispatch_reaches_each_family() {
        let mut v = FakeVcpu::new();
        v.regs[1] = 0x1234_5678; // RCX: an MSR nobody has
        assert_eq!(handle(&mut v, Exit::MsrRead), Action::Continue);
        assert_eq!(v.injected, vec![Exception::GeneralProtection]);
        let cr8 = CrAccess {
            cr: 8,
            kind: CrAccessKind::MovToCr,
            gpr: 0,
        };
        assert_eq!(
            handle(&mut v, Exit::CrAccess(cr8)),
            Action::fault(FaultKind::ControlRegister(8))
        );
    }
}
