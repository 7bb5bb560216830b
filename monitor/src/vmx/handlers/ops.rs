//! The monitor's vCPU as the shared exit handlers see it (`VcpuOps`). Where the backends
//! differ, the method asks `svm::active()`: the VMCS on VT-x, the VMCB on SVM.

use super::nmi::unblock_nmis;
use crate::arch::apic;
use crate::vmx::instructions as vmx;
use crate::vmx::vcpu::Vcpu;
use crate::vmx::vmcs::{CR0_MASK, CR4_MASK, GUEST_CR0, GUEST_CR4};
use crate::vmx::{doorbell, migrate};
use core::arch::asm;
use core::arch::x86_64::__cpuid_count;
use core::fmt;
use quest_abi::{GuestPhysAddr, PciAddress, Runtime};
use quest_monitor_core::cpuid_policy::CpuidRegs;
use quest_monitor_core::exit::InterruptionInfo;
use quest_monitor_core::msr_policy::{IA32_APIC_BASE, TSC_DEADLINE};
use quest_monitor_core::pci_virtual::Refusal;
use quest_monitor_core::vcpu_ops::{Exception, OwnedBits, VcpuOps};
use quest_monitor_core::vmcs_fields::{field32, field64, natural};
use quest_monitor_core::x2apic_icr::Ipi;
use x86_64::registers::model_specific::Msr;

/// Guest activity state "HLT" (SDM 25.4.2).
const ACTIVITY_HLT: u32 = 1;

/// The VMCS field of guest CR0 or CR4.
fn cr_field(cr: u8) -> quest_monitor_core::vmcs_fields::FieldNatural {
    if cr == 0 {
        natural::GUEST_CR0
    } else {
        natural::GUEST_CR4
    }
}

impl VcpuOps for Vcpu {
    fn regs(&self) -> &[u64; 16] {
        &self.regs.0
    }

    fn regs_mut(&mut self) -> &mut [u64; 16] {
        &mut self.regs.0
    }

    fn skip_instruction(&mut self) {
        if crate::svm::active() {
            return crate::svm::skip_instruction(self);
        }
        // SAFETY: this vCPU's VMCS is current whenever handlers run; the length field is
        // valid for instruction exits.
        unsafe {
            let len = vmx::read32(field32::EXIT_INSTRUCTION_LENGTH);
            let _ = vmx::write_natural(natural::GUEST_RIP, self.rip() + u64::from(len));
        }
    }

    fn inject(&mut self, e: Exception) {
        let (vector, error_code) = (e.vector(), e.has_error_code());
        if crate::svm::active() {
            return crate::svm::inject_exception(self, vector, error_code);
        }
        // SAFETY: as in `skip_instruction`; a valid interruption-information value.
        unsafe {
            let _ = vmx::write32(
                field32::ENTRY_INTERRUPTION_INFO,
                InterruptionInfo::inject_exception(vector, error_code),
            );
            let _ = vmx::write32(field32::ENTRY_EXCEPTION_ERROR_CODE, 0);
        }
    }

    fn guest_cr3(&self) -> u64 {
        if crate::svm::active() {
            return crate::svm::guest_cr3(self);
        }
        // SAFETY: as in `skip_instruction`.
        unsafe { vmx::read_natural(natural::GUEST_CR3) }
    }

    fn owned_cr_bits(&self, cr: u8) -> Option<OwnedBits> {
        // SVM intercepts no control-register access.
        let (mask, value) = match cr {
            _ if crate::svm::active() => return None,
            0 => (CR0_MASK, GUEST_CR0),
            4 => (CR4_MASK, GUEST_CR4),
            _ => return None,
        };
        Some(OwnedBits { mask, value })
    }

    fn guest_cr(&self, cr: u8) -> u64 {
        // SAFETY: as in `skip_instruction` (VT-x only: see `owned_cr_bits`).
        unsafe { vmx::read_natural(cr_field(cr)) }
    }

    fn set_guest_cr(&mut self, cr: u8, value: u64) {
        // SAFETY: as in `guest_cr`; the handler kept the bits the monitor owns.
        unsafe {
            let _ = vmx::write_natural(cr_field(cr), value);
        }
    }

    fn halt(&mut self) {
        // HLT exiting is off on both backends; should a CPU force it on (VT-x), the vCPU
        // is put into the HLT activity state so it still sleeps in the guest.
        if crate::svm::active() {
            return;
        }
        // SAFETY: as in `skip_instruction`; HLT is a valid activity state.
        unsafe {
            let _ = vmx::write32(field32::GUEST_ACTIVITY_STATE, ACTIVITY_HLT);
        }
    }

    fn nmi_taken(&mut self) {
        crate::iommu::nmi_exit();
        // SVM leaves no NMI blocking behind once the host sets GIF again.
        if !crate::svm::active() {
            unblock_nmis();
        }
    }

    fn ram_size(&self) -> u64 {
        self.sandbox_view.ram_size()
    }

    fn read_guest(&self, gpa: GuestPhysAddr, buf: &mut [u8]) -> bool {
        self.mem.read(gpa, buf)
    }

    fn write_guest(&mut self, gpa: GuestPhysAddr, bytes: &[u8]) -> bool {
        self.mem.write(gpa, bytes)
    }

    fn vcpu_index(&self) -> usize {
        self.index
    }

    fn vcpu_count(&self) -> usize {
        Vcpu::vcpu_count(self)
    }

    fn runtime(&self) -> Runtime {
        self.sandbox_view.runtime()
    }

    fn tsc_khz(&self) -> u32 {
        self.sys.tsc_khz
    }

    fn host_cpuid(&self, leaf: u32, subleaf: u32) -> CpuidRegs {
        let r = __cpuid_count(leaf, subleaf);
        CpuidRegs {
            eax: r.eax,
            ebx: r.ebx,
            ecx: r.ecx,
            edx: r.edx,
        }
    }

    fn set_xcr0(&mut self, value: u64) {
        // SAFETY: XCR0 value checked against the CPU's supported set and the
        // architectural consistency rules (the handler); CR4.OSXSAVE was set in the host
        // when the backend was enabled.
        unsafe {
            asm!("xsetbv", in("ecx") 0u32, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack));
        }
    }

    fn emulates_x2apic(&self) -> bool {
        apic::emulates_x2apic()
    }

    fn mwait_sleeps(&self) -> bool {
        !crate::svm::active()
    }

    fn x2apic_read(&self, msr: u32) -> Option<u64> {
        apic::emulates_x2apic()
            .then(|| apic::guest_read(msr))
            .flatten()
    }

    fn x2apic_write(&mut self, msr: u32, value: u64) -> bool {
        // SAFETY: only called for writes the policy passes through on VT-x, which only
        // affect this core's local APIC.
        apic::emulates_x2apic() && unsafe { apic::guest_write(msr, value) }
    }

    fn host_apic_base(&self) -> u64 {
        // SAFETY: IA32_APIC_BASE exists on every x86-64 CPU; reading it has no effect.
        unsafe { Msr::new(IA32_APIC_BASE).read() }
    }

    fn tsc_deadline_offset(&self) -> Option<u64> {
        // Trapped only for a sandbox that hides migration pauses (`trap_tsc_deadline`, in
        // the MSR bitmap or, on SVM, the MSRPM built from it).
        if crate::svm::active() {
            return Some(crate::svm::tsc_offset(self));
        }
        // SAFETY: the exiting vCPU's VMCS is current on this core.
        Some(unsafe { vmx::read64(field64::TSC_OFFSET) })
    }

    fn host_tsc_deadline(&self) -> u64 {
        // SAFETY: this core's own deadline MSR, armed for this vCPU; reading has no
        // side effect.
        unsafe { Msr::new(TSC_DEADLINE).read() }
    }

    fn set_host_tsc_deadline(&mut self, deadline: u64) {
        // SAFETY: this core's timer belongs to this vCPU; the deadline is the guest's,
        // moved to the host's TSC (the handler).
        unsafe { Msr::new(TSC_DEADLINE).write(deadline) };
    }

    fn send_ipi(&mut self, target: usize, ipi: &Ipi) {
        // The target vCPU's cores where they are now, not where the table first put them
        // (the sandbox may have migrated).
        migrate::ipi_cores(self.sandbox, target, |core| {
            let Some(apic_id) = self.sys.apic_id(core) else {
                return;
            };
            // SAFETY: a fixed-mode, physical-destination IPI with a legal vector to a
            // core of this very sandbox, or its standby core (`translate_icr`,
            // `ipi_cores`); standby cores never accept interrupts.
            unsafe { apic::send_ipi(apic_id, ipi.icr_for(apic_id) as u32) };
        });
    }

    fn console_bytes(&mut self, bytes: &[u8]) {
        let name = self.name;
        self.line
            .push(bytes, |l| crate::vmx::console_out::print_line(name, l));
    }

    fn report(&mut self, args: fmt::Arguments<'_>) {
        crate::println!(
            "quest: sandbox '{}' core {}: {}",
            self.name,
            self.core,
            args
        );
    }

    fn wait(&mut self) -> u64 {
        doorbell::wait(self)
    }

    fn doorbell(&mut self, index: u64) -> u64 {
        doorbell::ring(self, index)
    }

    fn migrate(&mut self, rdi: u64) -> u64 {
        migrate::request(self, rdi)
    }

    fn exit_count(&self) -> u64 {
        crate::sandboxes::state(self.sandbox).total_exits()
    }

    fn pci_latch(&mut self) -> &mut u32 {
        &mut self.pci_latch
    }

    fn pci_read(&mut self, f: PciAddress, offset: u8, size: u8) -> u32 {
        crate::pci::read(self.sandbox, f, offset, size)
    }

    fn pci_write(&mut self, f: PciAddress, offset: u8, size: u8, value: u32) {
        match crate::pci::write(self.sandbox, f, offset, size, value) {
            Some(Refusal::BusMaster(f)) => self.report(format_args!(
                "PCI {f}: bus-master enable refused (no DMA protection)"
            )),
            Some(Refusal::BarMove {
                function,
                bar,
                value,
            }) => self.report(format_args!(
                "PCI {function}: BAR {bar} move to {value:#x} refused"
            )),
            Some(Refusal::Msi { function, why }) => {
                self.report(format_args!("PCI {function}: {why} refused"))
            }
            None => {}
        }
    }
}
