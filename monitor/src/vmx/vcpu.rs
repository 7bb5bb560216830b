//! One virtual CPU as its core's exit handlers see it, and what a handler decides.

use super::caps::VmxCaps;
use super::guest_mem::GuestMem;
use super::instructions::{self as vmx, GuestRegs};
use crate::system::System;
use core::fmt;
use quest_abi::view::{SandboxView, VcpuView};
use quest_abi::{CoreId, GuestPhysAddr, SandboxId};
use quest_monitor_core::console_line::LineBuffer;
use quest_monitor_core::exit::{instruction_error_name, reason_name, InterruptionInfo};
use quest_monitor_core::vmcs_fields::{field32, natural};
use quest_monitor_core::x2apic_icr::IcrError;

/// A vCPU running on this core.
#[derive(Debug)]
pub struct Vcpu {
    /// The system.
    pub sys: &'static System,
    /// Its sandbox.
    pub sandbox: SandboxId,
    /// Its sandbox in the table.
    pub sandbox_view: SandboxView<'static>,
    /// Index of this vCPU in its sandbox (its virtual APIC ID).
    pub index: usize,
    /// The logical core it runs on.
    pub core: CoreId,
    /// The sandbox's name (console prefix).
    pub name: &'static str,
    /// Its table entry (launch state).
    pub entry: VcpuView<'static>,
    /// VMX capabilities of this machine.
    pub caps: VmxCaps,
    /// Guest general-purpose registers between exits.
    pub regs: GuestRegs,
    /// Console line being assembled.
    pub line: LineBuffer,
    /// The sandbox's RAM.
    pub mem: GuestMem,
    /// The VMCS has been launched (use VMRESUME).
    pub launched: bool,
    /// Its first VM entry was counted for the boot cost (`boot_cost`).
    pub entered_once: bool,
    /// Host-physical address of its VMCS (current on the core it runs on).
    pub vmcs: u64,
    /// It just arrived on this core by a migration, in this launch generation: it
    /// resumes where it was instead of launching.
    pub arrived: Option<u32>,
    /// An exit or fault that came while its sandbox migrated, decided on its new core.
    pub pending: Option<Action>,
}

/// Why a sandbox is stopped.
#[derive(Clone, Copy, Debug)]
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
        }
    }
}

/// A contained fault: what, and the guest address involved (if any).
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    /// What happened.
    pub kind: FaultKind,
    /// Address involved (guest-physical for EPT, port or MSR for others).
    pub addr: Option<u64>,
}

/// What the exit handler decided.
#[derive(Clone, Copy, Debug)]
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

impl Vcpu {
    /// Number of vCPUs of this sandbox.
    pub fn vcpu_count(&self) -> usize {
        self.sandbox_view.vcpus().len()
    }

    /// Guest RIP.
    pub fn rip(&self) -> u64 {
        if crate::svm::active() {
            return crate::svm::rip(self);
        }
        // SAFETY: this vCPU's VMCS is current on this core whenever handlers run.
        unsafe { vmx::read_natural(natural::GUEST_RIP) }
    }

    /// Moves RIP past the instruction that exited.
    pub fn skip_instruction(&self) {
        if crate::svm::active() {
            return crate::svm::skip_instruction(self);
        }
        // SAFETY: as in `rip`; the length field is valid for instruction exits.
        unsafe {
            let len = vmx::read32(field32::EXIT_INSTRUCTION_LENGTH);
            let _ = vmx::write_natural(natural::GUEST_RIP, self.rip() + u64::from(len));
        }
    }

    /// Injects hardware exception `vector` (with error code 0 when `error_code`) at the
    /// next VM entry; RIP stays on the faulting instruction.
    pub fn inject_exception(&self, vector: u8, error_code: bool) {
        if crate::svm::active() {
            return crate::svm::inject_exception(self, vector, error_code);
        }
        // SAFETY: as in `rip`; a valid interruption-information value.
        unsafe {
            let _ = vmx::write32(
                field32::ENTRY_INTERRUPTION_INFO,
                InterruptionInfo::inject_exception(vector, error_code),
            );
            let _ = vmx::write32(field32::ENTRY_EXCEPTION_ERROR_CODE, 0);
        }
    }

    /// Guest CR3.
    pub fn guest_cr3(&self) -> u64 {
        if crate::svm::active() {
            return crate::svm::guest_cr3(self);
        }
        // SAFETY: as in `rip`.
        unsafe { vmx::read_natural(natural::GUEST_CR3) }
    }

    /// Appends console bytes from the guest; complete lines are printed.
    pub fn console_bytes(&mut self, bytes: &[u8]) {
        let name = self.name;
        self.line
            .push(bytes, |l| super::console_out::print_line(name, l));
    }

    /// Copies `len` bytes from guest-physical `gpa` to the console in chunks; false when
    /// any part lies outside the sandbox's RAM (then nothing is printed).
    pub fn console_from_guest(&mut self, gpa: GuestPhysAddr, len: u64) -> bool {
        let ram = self.sandbox_view.ram_size();
        if quest_monitor_core::guest_memory::ram_range(gpa.as_u64(), len, ram).is_none() {
            return false;
        }
        let mut buf = [0u8; 256];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            // Inside RAM (checked above), so no overflow.
            let Some(at) = gpa.checked_add(done) else {
                return false;
            };
            if !self.mem.read(at, &mut buf[..n]) {
                return false;
            }
            self.console_bytes(&buf[..n]);
            done += n as u64;
        }
        true
    }
}
