//! VMX root operation on one core: the CR0/CR4 fixed bits, the VMXON region, the host
//! state every VMCS of this core carries, and the core's NMI handling.
//!
//! NMIs: the monitor takes a core back from a sandbox with an NMI IPI (NMI exiting is on,
//! so in the guest an NMI is a VM exit). An NMI that arrives while the core is in the
//! monitor (handling an exit, parked, or asleep in `WAIT`) must be harmless, so vCPU
//! cores load a copy of the platform IDT whose NMI gate only returns (after ending an
//! interrupted sleep window, see `sleep`); whoever sent it re-checks and resends until
//! the target has parked (see `lifecycle`).

use super::caps::VmxCaps;
use super::instructions::{self as vmx, VmFail};
use crate::arch::cpu::{CODE_SELECTOR, DATA_SELECTOR, TSS_SELECTOR};
use core::arch::x86_64::__cpuid;
use core::cell::UnsafeCell;
use quest_monitor_core::vmcs_fields::{field16, field32, field64, natural};
use x86_64::registers::control::{Cr0, Cr3, Cr4};
use x86_64::registers::model_specific::Msr;

const IA32_EFER: u32 = 0xC000_0080;
const IA32_PAT: u32 = 0x277;
const IA32_FS_BASE: u32 = 0xC000_0100;
const CR4_VMXE: u64 = 1 << 13;
const CR4_OSXSAVE: u64 = 1 << 18;

/// Why a core could not enter VMX operation.
#[derive(Clone, Copy, Debug)]
pub enum HostError {
    /// No frame left for the VMXON region or VMCS.
    OutOfFrames,
    /// VMXON, VMCLEAR or VMPTRLD failed.
    Vmxon(VmFail),
}

impl core::fmt::Display for HostError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::OutOfFrames => f.write_str("the monitor's frame pool is exhausted"),
            Self::Vmxon(VmFail::Invalid) => f.write_str("VMX instruction failed (VMfailInvalid)"),
            Self::Vmxon(VmFail::Valid) => f.write_str("VMX instruction failed (VMfailValid)"),
        }
    }
}

/// Allocates one zeroed frame from the monitor's pool.
pub fn alloc_frame() -> Option<u64> {
    crate::frame_pool::alloc_zeroed(1)
}

/// Enters VMX root operation on this core.
///
/// # Safety
/// Call once per core, with interrupts disabled, after `caps` was checked on this
/// machine.
pub unsafe fn enable_vmx(caps: &VmxCaps) -> Result<(), HostError> {
    super::caps::ensure_feature_control().map_err(|_| HostError::Vmxon(VmFail::Invalid))?;
    let xsave = __cpuid(1).ecx & (1 << 26) != 0;
    let mut cr4 = Cr4::read_raw() | CR4_VMXE;
    if xsave {
        // XSETBV exits are executed by the monitor on the guest's behalf; that needs
        // CR4.OSXSAVE in the host (the monitor itself never uses extended state).
        cr4 |= CR4_OSXSAVE;
    }
    let cr4 =
        quest_monitor_core::vmx_controls::apply_fixed(cr4, caps.cr4_fixed.0, caps.cr4_fixed.1);
    let cr0 = quest_monitor_core::vmx_controls::apply_fixed(
        Cr0::read_raw(),
        caps.cr0_fixed.0,
        caps.cr0_fixed.1,
    );
    // SAFETY: the fixed bits only add what VMX requires (PE, PG, NE, VMXE) to a 64-bit
    // paging setup that already has PE and PG; OSXSAVE is set only when supported.
    unsafe {
        Cr0::write_raw(cr0);
        Cr4::write_raw(cr4);
    }
    let region = alloc_frame().ok_or(HostError::OutOfFrames)?;
    // SAFETY: the frame is ours, identity mapped; the revision goes in its first word.
    unsafe { (region as *mut u32).write(caps.revision) };
    // SAFETY: CR0/CR4 satisfy the fixed bits, feature control allows VMXON, the region is
    // a fresh frame owned by this core forever.
    unsafe { vmx::vmxon(region) }.map_err(HostError::Vmxon)
}

/// Allocates a VMCS, clears it and makes it current on this core.
///
/// # Safety
/// VMX operation must be on.
pub unsafe fn new_current_vmcs(caps: &VmxCaps) -> Result<u64, HostError> {
    let vmcs = alloc_frame().ok_or(HostError::OutOfFrames)?;
    // SAFETY: fresh frame, identity mapped, owned by this core.
    unsafe { (vmcs as *mut u32).write(caps.revision) };
    // SAFETY: VMX is on; the region carries the revision identifier.
    unsafe {
        vmx::vmclear(vmcs).map_err(HostError::Vmxon)?;
        vmx::vmptrld(vmcs).map_err(HostError::Vmxon)?;
    }
    Ok(vmcs)
}

fn rdmsr(index: u32) -> u64 {
    // SAFETY: EFER, PAT and FS_BASE exist on every x86-64 CPU; reading has no effect.
    unsafe { Msr::new(index).read() }
}

/// The base of the TSS descriptor at `TSS_SELECTOR` in the current GDT.
fn tss_base(gdt_base: u64) -> u64 {
    let slot = (gdt_base + u64::from(TSS_SELECTOR)) as *const u64;
    // SAFETY: the platform GDT has a 16-byte TSS descriptor at TSS_SELECTOR (loaded in TR).
    let (low, high) = unsafe { (slot.read(), slot.add(1).read()) };
    ((low >> 16) & 0xff_ffff) | (((low >> 56) & 0xff) << 24) | (high << 32)
}

/// Writes the host-state area of the current VMCS from this core's live state.
///
/// # Safety
/// A VMCS must be current; this core's GDT, TSS and the vCPU IDT ([`load_vcpu_idt`]) must
/// stay loaded for as long as the VMCS is used.
pub unsafe fn write_host_state() -> Result<(), VmFail> {
    let gdtr = x86_64::instructions::tables::sgdt();
    let gdt_base = gdtr.base.as_u64();
    // SAFETY: a VMCS is current (contract); values describe this core as it runs now.
    unsafe {
        vmx::write_natural(natural::HOST_CR0, Cr0::read_raw())?;
        vmx::write_natural(
            natural::HOST_CR3,
            Cr3::read_raw().0.start_address().as_u64(),
        )?;
        vmx::write_natural(natural::HOST_CR4, Cr4::read_raw())?;
        vmx::write16(field16::HOST_CS_SELECTOR, CODE_SELECTOR)?;
        for f in [
            field16::HOST_SS_SELECTOR,
            field16::HOST_DS_SELECTOR,
            field16::HOST_ES_SELECTOR,
        ] {
            vmx::write16(f, DATA_SELECTOR)?;
        }
        vmx::write16(field16::HOST_FS_SELECTOR, 0)?;
        vmx::write16(field16::HOST_GS_SELECTOR, 0)?;
        vmx::write16(field16::HOST_TR_SELECTOR, TSS_SELECTOR)?;
        vmx::write_natural(natural::HOST_FS_BASE, rdmsr(IA32_FS_BASE))?;
        vmx::write_natural(natural::HOST_GS_BASE, crate::arch::cpu::gs_base())?;
        vmx::write_natural(natural::HOST_TR_BASE, tss_base(gdt_base))?;
        vmx::write_natural(natural::HOST_GDTR_BASE, gdt_base)?;
        vmx::write_natural(natural::HOST_IDTR_BASE, VCPU_IDT.0.get() as u64)?;
        vmx::write32(field32::HOST_SYSENTER_CS, 0)?;
        vmx::write_natural(natural::HOST_SYSENTER_ESP, 0)?;
        vmx::write_natural(natural::HOST_SYSENTER_EIP, 0)?;
        vmx::write64(field64::HOST_IA32_EFER, rdmsr(IA32_EFER))?;
        vmx::write64(field64::HOST_IA32_PAT, rdmsr(IA32_PAT))?;
        vmx::write_natural(natural::HOST_RIP, vmx::exit_entry_point())?;
    }
    Ok(())
}

#[repr(C, align(16))]
struct VcpuIdt(UnsafeCell<[u128; 256]>);
// SAFETY: written once under `IDT_ONCE` before any core loads it, read-only afterwards.
unsafe impl Sync for VcpuIdt {}
static VCPU_IDT: VcpuIdt = VcpuIdt(UnsafeCell::new([0; 256]));
static IDT_ONCE: spin::Once<()> = spin::Once::new();

/// Loads, on this core, a copy of the current IDT whose NMI gate is `sleep::vmx_host_nmi`.
///
/// # Safety
/// Interrupts disabled; the platform IDT must be loaded on this core.
pub unsafe fn load_vcpu_idt() {
    let current = x86_64::instructions::tables::sidt();
    IDT_ONCE.call_once(|| {
        let src = current.base.as_u64() as *const u128;
        let entries = ((usize::from(current.limit) + 1) / 16).min(256);
        // SAFETY: nobody loads VCPU_IDT before this closure finishes (Once); the source
        // is the platform IDT of `entries` gates.
        let idt = unsafe { &mut *VCPU_IDT.0.get() };
        for (i, gate) in idt.iter_mut().enumerate().take(entries) {
            // SAFETY: i < entries, inside the platform IDT.
            *gate = unsafe { src.add(i).read() };
        }
        // Keep the platform's gate attributes (selector, IST, type); change the target.
        let handler = super::sleep::vmx_host_nmi as *const () as usize as u128;
        let mut gate = idt[2];
        gate &= !((0xffff) | (0xffff << 48) | (0xffff_ffff << 64));
        gate |= (handler & 0xffff) | (((handler >> 16) & 0xffff) << 48) | ((handler >> 32) << 64);
        idt[2] = gate;
    });
    let idtr = x86_64::structures::DescriptorTablePointer {
        limit: (core::mem::size_of::<[u128; 256]>() - 1) as u16,
        base: x86_64::VirtAddr::new(VCPU_IDT.0.get() as u64),
    };
    // SAFETY: a complete IDT: the platform's gates plus a returning NMI gate.
    unsafe { x86_64::instructions::tables::lidt(&idtr) };
}

/// Sends an NMI to the core with APIC ID `apic_id`.
///
/// # Safety
/// The target must be a vCPU core of the monitor (its NMI gate is `vmx_host_nmi` in root
/// mode, and NMI exiting (VT-x) or the NMI intercept (SVM) is on for its guest), so the
/// NMI only makes it re-check its state.
pub unsafe fn send_nmi(apic_id: u32) {
    // SAFETY: per the contract.
    unsafe { crate::arch::apic::send_nmi(apic_id) };
}
