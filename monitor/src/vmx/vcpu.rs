//! One virtual CPU as its core's exit handlers see it (through `VcpuOps`,
//! `handlers::ops`), and what a handler decides (defined with the handlers in
//! `quest_monitor_core::vcpu_ops`).

use super::caps::VmxCaps;
use super::guest_mem::GuestMem;
use super::instructions::{self as vmx, GuestRegs};
use crate::system::System;
use quest_abi::view::{SandboxView, VcpuView};
use quest_abi::{CoreId, SandboxId};
use quest_monitor_core::console_line::LineBuffer;
use quest_monitor_core::vmcs_fields::natural;

pub use quest_monitor_core::vcpu_ops::{Action, Fault, FaultKind};

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
    /// The PCI configuration address it last wrote to 0xCF8 (its own, as on hardware
    /// each access pair is one vCPU's).
    pub pci_latch: u32,
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
}
