//! A fake vCPU for the handlers' host tests: registers and RAM in plain memory, and a
//! record of everything a handler asked of it.

use crate::cpuid_policy::CpuidRegs;
use crate::vcpu_ops::{Exception, OwnedBits, VcpuOps};
use crate::x2apic_emulation::{access, apic_base, Access};
use crate::x2apic_icr::Ipi;
use quest_abi::{GuestPhysAddr, Runtime};
use std::collections::BTreeMap;
use std::string::{String, ToString};
use std::vec::Vec;

/// The CR0 bits the VT-x backend owns (PE, ET, NW... as `vmx::vmcs` sets them) and the
/// launch value they keep.
pub const CR0_OWNED: OwnedBits = OwnedBits {
    mask: (1 << 0) | (1 << 5) | (1 << 29) | (1 << 30) | (1 << 31),
    value: 0x8000_0031,
};

/// A monitor service a handler called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Wait,
    Doorbell(u64),
    Migrate(u64),
}

#[derive(Debug)]
pub struct FakeVcpu {
    pub regs: [u64; 16],
    pub skipped: u32,
    pub injected: Vec<Exception>,
    pub cr3: u64,
    pub cr: [u64; 5],
    pub halted: bool,
    pub nmis: u32,
    pub ram: Vec<u8>,
    pub index: usize,
    pub vcpus: usize,
    pub runtime: Runtime,
    /// Every host CPUID register reads this (leaf 0xD: see `xcr0_supported`).
    pub host_leaf_value: u32,
    pub xcr0_supported: u64,
    pub xcr0: Option<u64>,
    /// `Some`: the x2APIC is emulated; its xAPIC registers by offset.
    pub x2apic: Option<BTreeMap<u64, u32>>,
    pub apic_base: u64,
    pub tsc_offset: Option<u64>,
    pub host_deadline: u64,
    /// (target vCPU, ICR low half) per IPI sent.
    pub ipis: Vec<(usize, u32)>,
    pub console: Vec<u8>,
    pub console_writes: u32,
    pub reports: Vec<String>,
    pub services: Vec<Service>,
    pub service_result: u64,
    /// The vCPU's 0xCF8 latch.
    pub pci_latch: u32,
    /// Each configuration access: function, offset, size, the value written (reads: None).
    pub pci: Vec<(quest_abi::PciAddress, u8, u8, Option<u32>)>,
    /// What every configuration read returns (before the size's mask).
    pub pci_value: u32,
}

impl FakeVcpu {
    /// vCPU 1 of 2 of a bare sandbox with 1 MiB of RAM.
    pub fn new() -> Self {
        Self::with_vcpus(2)
    }

    /// vCPU 1 of `vcpus`.
    pub fn with_vcpus(vcpus: usize) -> Self {
        Self {
            regs: [0; 16],
            skipped: 0,
            injected: Vec::new(),
            cr3: 0,
            cr: [0; 5],
            halted: false,
            nmis: 0,
            ram: std::vec![0; 1 << 20],
            index: 1,
            vcpus,
            runtime: Runtime::Bare,
            host_leaf_value: 0x0101_0101,
            xcr0_supported: 0b11,
            xcr0: None,
            x2apic: None,
            apic_base: 0xFEE0_0D00,
            tsc_offset: None,
            host_deadline: 0,
            ipis: Vec::new(),
            console: Vec::new(),
            console_writes: 0,
            reports: Vec::new(),
            services: Vec::new(),
            service_result: 0,
            pci_latch: 0,
            pci: Vec::new(),
            pci_value: 0x1234_5678,
        }
    }

    /// A Hermit sandbox's vCPU.
    pub fn hermit() -> Self {
        Self {
            runtime: Runtime::Hermit,
            ..Self::new()
        }
    }

    fn range(&self, gpa: GuestPhysAddr, len: usize) -> Option<core::ops::Range<usize>> {
        let start = usize::try_from(gpa.as_u64()).ok()?;
        let end = start.checked_add(len)?;
        (end <= self.ram.len()).then_some(start..end)
    }
}

impl VcpuOps for FakeVcpu {
    fn regs(&self) -> &[u64; 16] {
        &self.regs
    }
    fn regs_mut(&mut self) -> &mut [u64; 16] {
        &mut self.regs
    }
    fn skip_instruction(&mut self) {
        self.skipped += 1;
    }
    fn inject(&mut self, e: Exception) {
        self.injected.push(e);
    }
    fn guest_cr3(&self) -> u64 {
        self.cr3
    }
    fn owned_cr_bits(&self, cr: u8) -> Option<OwnedBits> {
        (cr == 0).then_some(CR0_OWNED)
    }
    fn guest_cr(&self, cr: u8) -> u64 {
        self.cr[usize::from(cr)]
    }
    fn set_guest_cr(&mut self, cr: u8, value: u64) {
        self.cr[usize::from(cr)] = value;
    }
    fn halt(&mut self) {
        self.halted = true;
    }
    fn nmi_taken(&mut self) {
        self.nmis += 1;
    }
    fn ram_size(&self) -> u64 {
        self.ram.len() as u64
    }
    fn read_guest(&self, gpa: GuestPhysAddr, buf: &mut [u8]) -> bool {
        let Some(r) = self.range(gpa, buf.len()) else {
            return false;
        };
        buf.copy_from_slice(&self.ram[r]);
        true
    }
    fn write_guest(&mut self, gpa: GuestPhysAddr, bytes: &[u8]) -> bool {
        let Some(r) = self.range(gpa, bytes.len()) else {
            return false;
        };
        self.ram[r].copy_from_slice(bytes);
        true
    }
    fn vcpu_index(&self) -> usize {
        self.index
    }
    fn vcpu_count(&self) -> usize {
        self.vcpus
    }
    fn runtime(&self) -> Runtime {
        self.runtime
    }
    fn tsc_khz(&self) -> u32 {
        1_000_000
    }
    fn host_cpuid(&self, leaf: u32, _subleaf: u32) -> CpuidRegs {
        if leaf == 0xD {
            return CpuidRegs {
                eax: self.xcr0_supported as u32,
                edx: (self.xcr0_supported >> 32) as u32,
                ..CpuidRegs::default()
            };
        }
        let x = self.host_leaf_value;
        CpuidRegs {
            eax: x,
            ebx: x,
            ecx: x,
            edx: x,
        }
    }
    fn set_xcr0(&mut self, value: u64) {
        self.xcr0 = Some(value);
    }
    fn emulates_x2apic(&self) -> bool {
        self.x2apic.is_some()
    }
    fn mwait_sleeps(&self) -> bool {
        true
    }
    fn x2apic_read(&self, msr: u32) -> Option<u64> {
        let regs = self.x2apic.as_ref()?;
        if msr == crate::msr_policy::IA32_APIC_BASE {
            return Some(apic_base(self.apic_base));
        }
        match access(msr, 0) {
            Access::Register(offset) => Some(u64::from(regs.get(&offset).copied().unwrap_or(0))),
            Access::SelfIpi(_) | Access::None => None,
        }
    }
    fn x2apic_write(&mut self, msr: u32, value: u64) -> bool {
        let index = self.index;
        let Some(regs) = self.x2apic.as_mut() else {
            return false;
        };
        match access(msr, value) {
            Access::Register(offset) => {
                regs.insert(offset, value as u32);
            }
            Access::SelfIpi(low) => self.ipis.push((index, low)),
            Access::None => return false,
        }
        true
    }
    fn host_apic_base(&self) -> u64 {
        self.apic_base
    }
    fn tsc_deadline_offset(&self) -> Option<u64> {
        self.tsc_offset
    }
    fn host_tsc_deadline(&self) -> u64 {
        self.host_deadline
    }
    fn set_host_tsc_deadline(&mut self, deadline: u64) {
        self.host_deadline = deadline;
    }
    fn send_ipi(&mut self, target: usize, ipi: &Ipi) {
        self.ipis.push((target, ipi.command));
    }
    fn console_bytes(&mut self, bytes: &[u8]) {
        self.console.extend_from_slice(bytes);
        self.console_writes += 1;
    }
    fn report(&mut self, args: core::fmt::Arguments<'_>) {
        self.reports.push(args.to_string());
    }
    fn wait(&mut self) -> u64 {
        self.services.push(Service::Wait);
        self.service_result
    }
    fn doorbell(&mut self, index: u64) -> u64 {
        self.services.push(Service::Doorbell(index));
        self.service_result
    }
    fn migrate(&mut self, rdi: u64) -> u64 {
        self.services.push(Service::Migrate(rdi));
        self.service_result
    }
    fn exit_count(&self) -> u64 {
        self.service_result
    }
    fn pci_latch(&mut self) -> &mut u32 {
        &mut self.pci_latch
    }
    fn pci_read(&mut self, f: quest_abi::PciAddress, offset: u8, size: u8) -> u32 {
        self.pci.push((f, offset, size, None));
        self.pci_value
    }
    fn pci_write(&mut self, f: quest_abi::PciAddress, offset: u8, size: u8, value: u32) {
        self.pci.push((f, offset, size, Some(value)));
    }
}
