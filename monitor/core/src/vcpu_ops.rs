//! What an exit handler may do to the vCPU that exited, and what it decides: the one
//! interface between the backend-neutral handlers (`crate::handlers`) and the two
//! backends. The monitor implements [`VcpuOps`] for its vCPU record (VMCS on VT-x, VMCB
//! on SVM, inside that impl); the host tests implement it with a fake vCPU. A handler
//! never sees a VMCS or VMCB field.

use crate::cpuid_policy::CpuidRegs;
use crate::exit::{instruction_error_name, reason_name};
use crate::x2apic_icr::{IcrError, Ipi};
use core::fmt;
use quest_abi::{GuestPhysAddr, Runtime};

/// Indices of the guest general-purpose registers in [`VcpuOps::regs`] (the SDM's
/// register numbering, which the CR-access qualification uses too).
pub mod gpr {
    /// RAX.
    pub const RAX: usize = 0;
    /// RCX.
    pub const RCX: usize = 1;
    /// RDX.
    pub const RDX: usize = 2;
    /// RBX.
    pub const RBX: usize = 3;
    /// RSP: kept in the VMCS/VMCB, not in the saved registers (its slot is unused).
    pub const RSP: usize = 4;
    /// RSI.
    pub const RSI: usize = 6;
    /// RDI.
    pub const RDI: usize = 7;
}

/// An exception a handler injects, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exception {
    /// #UD (vector 6, no error code): an instruction the sandbox does not have.
    InvalidOpcode,
    /// #GP(0) (vector 13, error code 0): an MSR or XCR0 value the CPU would refuse.
    GeneralProtection,
}

impl Exception {
    /// The vector.
    pub fn vector(self) -> u8 {
        match self {
            Self::InvalidOpcode => 6,
            Self::GeneralProtection => 13,
        }
    }

    /// Whether it pushes an error code (then 0).
    pub fn has_error_code(self) -> bool {
        matches!(self, Self::GeneralProtection)
    }
}

/// Control-register bits the monitor owns (a guest write must leave them as they are).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnedBits {
    /// The bits the monitor owns.
    pub mask: u64,
    /// The value those bits must keep.
    pub value: u64,
}

/// The vCPU that exited, as a handler sees it: registers, its current instruction,
/// exceptions, its sandbox's RAM, and the few monitor services a handler calls.
pub trait VcpuOps {
    /// Guest general-purpose registers, indexed by [`gpr`].
    fn regs(&self) -> &[u64; 16];
    /// The same, to change.
    fn regs_mut(&mut self) -> &mut [u64; 16];
    /// Moves RIP past the instruction that exited.
    fn skip_instruction(&mut self);
    /// Injects `e` at the next entry; RIP stays on the faulting instruction.
    fn inject(&mut self, e: Exception);
    /// Guest CR3.
    fn guest_cr3(&self) -> u64;
    /// The bits of CR`cr` the monitor owns (`None`: the monitor owns no bit of it and
    /// never lets a write exit).
    fn owned_cr_bits(&self, cr: u8) -> Option<OwnedBits>;
    /// Guest CR`cr` (0 or 4).
    fn guest_cr(&self, cr: u8) -> u64;
    /// Sets guest CR`cr` (0 or 4); the handler keeps the owned bits.
    fn set_guest_cr(&mut self, cr: u8, value: u64);
    /// Puts the vCPU to sleep in the guest until its next interrupt (after a HLT exit).
    fn halt(&mut self);
    /// An NMI took the vCPU back: end the NMI blocking the exit left (VT-x).
    fn nmi_taken(&mut self);

    /// Size of the sandbox's RAM (guest-physical `[0, size)`).
    fn ram_size(&self) -> u64;
    /// Copies `buf.len()` bytes from guest-physical `gpa`; false (nothing read) unless
    /// all of them lie inside the sandbox's RAM.
    fn read_guest(&self, gpa: GuestPhysAddr, buf: &mut [u8]) -> bool;
    /// Writes `bytes` at guest-physical `gpa`; false (nothing written) unless all of
    /// them lie inside the sandbox's RAM.
    fn write_guest(&mut self, gpa: GuestPhysAddr, bytes: &[u8]) -> bool;

    /// Index of this vCPU in its sandbox (its virtual APIC ID).
    fn vcpu_index(&self) -> usize;
    /// Number of vCPUs of its sandbox.
    fn vcpu_count(&self) -> usize;
    /// Its sandbox's runtime.
    fn runtime(&self) -> Runtime;
    /// TSC frequency in kHz.
    fn tsc_khz(&self) -> u32;
    /// CPUID of this core (the handler filters it).
    fn host_cpuid(&self, leaf: u32, subleaf: u32) -> CpuidRegs;
    /// Executes XSETBV of XCR0 `value` on the guest's behalf (already checked).
    fn set_xcr0(&mut self, value: u64);
    /// Whether the monitor emulates the guest's x2APIC over the host's xAPIC.
    fn emulates_x2apic(&self) -> bool;
    /// Whether a guest MWAIT sleeps in the guest (VT-x) rather than exiting and
    /// returning at once (SVM): CPUID offers MONITOR/MWAIT only then.
    fn mwait_sleeps(&self) -> bool;
    /// An emulated read of x2APIC MSR `msr` or IA32_APIC_BASE (`None`: not emulated).
    fn x2apic_read(&self, msr: u32) -> Option<u64>;
    /// An emulated write the MSR policy passes; false when not emulated.
    fn x2apic_write(&mut self, msr: u32, value: u64) -> bool;
    /// This core's IA32_APIC_BASE.
    fn host_apic_base(&self) -> u64;
    /// The vCPU's TSC offset when its backend traps IA32_TSC_DEADLINE (to hide
    /// migration pauses); `None` when it never does.
    fn tsc_deadline_offset(&self) -> Option<u64>;
    /// This core's IA32_TSC_DEADLINE (host TSC).
    fn host_tsc_deadline(&self) -> u64;
    /// Arms this core's IA32_TSC_DEADLINE at host TSC `deadline`.
    fn set_host_tsc_deadline(&mut self, deadline: u64);
    /// Sends checked IPI `ipi` to the core(s) of vCPU `target` of this sandbox.
    fn send_ipi(&mut self, target: usize, ipi: &Ipi);

    /// Appends console bytes from the guest (complete lines are printed).
    fn console_bytes(&mut self, bytes: &[u8]);
    /// Prints one monitor line about this vCPU: `quest: sandbox 'NAME' core N: {args}`.
    fn report(&mut self, args: fmt::Arguments<'_>);
    /// The `WAIT` hypercall.
    fn wait(&mut self) -> u64;
    /// The `DOORBELL` hypercall for channel directory index `index`.
    fn doorbell(&mut self, index: u64) -> u64;
    /// The `MIGRATE` hypercall with RDI `rdi`.
    fn migrate(&mut self, rdi: u64) -> u64;
    /// The sandbox's VM exits so far (the `EXIT_COUNT` hypercall).
    fn exit_count(&self) -> u64;

    /// This vCPU's PCI configuration address (what it last wrote to 0xCF8): a vCPU's own,
    /// so two vCPUs of a sandbox cannot mix their accesses up.
    fn pci_latch(&mut self) -> &mut u32;
    /// Reads `size` bytes at `offset` of function `f` in the sandbox's virtual
    /// configuration space (`crate::pci_virtual`).
    fn pci_read(&mut self, f: quest_abi::PciAddress, offset: u8, size: u8) -> u32;
    /// Writes there, filtered; the monitor logs what the filter refuses.
    fn pci_write(&mut self, f: quest_abi::PciAddress, offset: u8, size: u8, value: u32);
}

/// Why a sandbox is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Access to guest-physical memory the sandbox does not own (or may not write).
    EptViolation(&'static str),
    /// EPT misconfiguration (a monitor bug, contained like a fault).
    EptMisconfig,
    /// I/O port not assigned to the sandbox.
    ForbiddenPort {
        /// Port.
        port: u16,
        /// `in` (true) or `out`.
        input: bool,
    },
    /// Write of an MSR the sandbox may not write.
    ForbiddenMsr(u32),
    /// An IPI that could leave the sandbox.
    BadIpi(IcrError),
    /// A hypercall whose parameters point outside the sandbox (why).
    BadHypercall(&'static str),
    /// Triple fault (shutdown).
    TripleFault,
    /// A write to control-register bits the monitor owns.
    ControlRegister(u8),
    /// An exception reached the monitor (the exception bitmap is empty, so unexpected).
    Exception(u8),
    /// VM entry failed with this exit reason (bit 31 set) or VM-instruction error.
    EntryFailed {
        /// Basic exit reason, or 0 when VMLAUNCH/VMRESUME itself failed.
        reason: u32,
        /// VM-instruction error number (when VMLAUNCH/VMRESUME failed).
        error: u32,
    },
    /// A VM exit the monitor does not expect.
    Unexpected(u32),
    /// One of the sandbox's PCI functions made a DMA request the IOMMU refused (its
    /// domain does not map the address, or not for that access).
    Dma {
        /// A write (else a read; `None`: the IOMMU did not say).
        write: Option<bool>,
    },
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::EptViolation(access) => write!(f, "EPT violation ({access})"),
            Self::EptMisconfig => f.write_str("EPT misconfiguration"),
            Self::ForbiddenPort { port, input } => write!(
                f,
                "forbidden I/O port {port:#x} ({})",
                if input { "in" } else { "out" }
            ),
            Self::ForbiddenMsr(msr) => write!(f, "forbidden MSR write {msr:#x}"),
            Self::BadIpi(e) => write!(f, "{e}"),
            Self::BadHypercall(why) => write!(f, "bad hypercall: {why}"),
            Self::TripleFault => f.write_str("triple fault"),
            Self::ControlRegister(cr) => write!(f, "write to monitor-owned CR{cr} bits"),
            Self::Exception(v) => write!(f, "unexpected exception {v}"),
            Self::EntryFailed { reason: 0, error } => write!(
                f,
                "VM entry failed: {} ({error})",
                instruction_error_name(error)
            ),
            Self::EntryFailed { reason, .. } => {
                write!(
                    f,
                    "VM entry failed: {}",
                    reason_name((reason & 0xffff) as usize)
                )
            }
            Self::Unexpected(r) => write!(f, "unexpected VM exit ({})", reason_name(r as usize)),
            Self::Dma { write } => write!(
                f,
                "DMA fault (device {})",
                match write {
                    Some(true) => "write",
                    Some(false) => "read",
                    None => "access",
                }
            ),
        }
    }
}

/// A contained fault: what, and the guest address involved (if any).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// What happened.
    pub kind: FaultKind,
    /// Address involved (guest-physical for EPT, port or MSR for others).
    pub addr: Option<u64>,
}

/// What the exit handler decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Resume the guest.
    Continue,
    /// The sandbox ends with this status.
    Exit(i32),
    /// The sandbox misbehaved.
    Fault(Fault),
}

impl Action {
    /// A fault without address.
    pub fn fault(kind: FaultKind) -> Self {
        Self::Fault(Fault { kind, addr: None })
    }
    /// A fault at `addr`.
    pub fn fault_at(kind: FaultKind, addr: u64) -> Self {
        Self::Fault(Fault {
            kind,
            addr: Some(addr),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_exceptions_have_their_vectors_and_error_codes() {
        assert_eq!(Exception::InvalidOpcode.vector(), 6);
        assert!(!Exception::InvalidOpcode.has_error_code());
        assert_eq!(Exception::GeneralProtection.vector(), 13);
        assert!(Exception::GeneralProtection.has_error_code());
    }

    #[test]
    fn fault_lines_read_as_before() {
        let line = |k: FaultKind| std::format!("{k}");
        assert_eq!(
            line(FaultKind::EptViolation("write")),
            "EPT violation (write)"
        );
        assert_eq!(
            line(FaultKind::ForbiddenPort {
                port: 0x3f8,
                input: true
            }),
            "forbidden I/O port 0x3f8 (in)"
        );
        assert_eq!(
            line(FaultKind::ForbiddenMsr(0x1b)),
            "forbidden MSR write 0x1b"
        );
        assert_eq!(
            line(FaultKind::EntryFailed {
                reason: 0,
                error: 7
            }),
            "VM entry failed: VM entry with invalid control field(s) (7)"
        );
        assert_eq!(
            line(FaultKind::EntryFailed {
                reason: 0x8000_0021,
                error: 0
            }),
            "VM entry failed: invalid-guest-state"
        );
        assert_eq!(line(FaultKind::Unexpected(13)), "unexpected VM exit (invd)");
        assert_eq!(
            line(FaultKind::Dma { write: Some(true) }),
            "DMA fault (device write)"
        );
        assert_eq!(
            line(FaultKind::Dma { write: None }),
            "DMA fault (device access)"
        );
        assert_eq!(
            line(FaultKind::ControlRegister(4)),
            "write to monitor-owned CR4 bits"
        );
    }
}
