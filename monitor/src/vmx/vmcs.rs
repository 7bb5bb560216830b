//! The VM-execution controls and the initial 64-bit guest state of a vCPU's VMCS
//! (Intel SDM Vol. 3, 25.6 and 25.4).

use super::caps::VmxCaps;
use super::instructions::{self as vmx, VmFail};
use super::sandbox::SandboxVmx;
use quest_abi::view::{SandboxView, VcpuView};
use quest_abi::{gdt, layout};
use quest_monitor_core::vmcs_fields::{field16, field32, field64, natural};
use quest_monitor_core::vmx_controls::apply_fixed;

/// What the guest sees in CR0 at launch: PG | NE | ET | PE (as uhyve starts Hermit).
pub const GUEST_CR0: u64 = 0x8000_0031;
/// What the guest sees in CR4 at launch: PAE.
pub const GUEST_CR4: u64 = 0x20;
/// CR0 bits the monitor owns: PE, NE, NW, CD, PG. Leaving long mode or paging is not
/// supported; the guest may freely toggle TS (lazy FPU), MP, EM, WP, AM without an exit.
pub const CR0_MASK: u64 = (1 << 0) | (1 << 5) | (1 << 29) | (1 << 30) | (1 << 31);
/// CR4 bits the monitor owns: PAE, VMXE (host only; reads as 0), SMXE, LA57.
pub const CR4_MASK: u64 = (1 << 5) | (1 << 12) | (1 << 13) | (1 << 14);
/// EFER at launch: LME | LMA | NXE.
const GUEST_EFER: u64 = (1 << 8) | (1 << 10) | (1 << 11);
/// Power-on PAT (WB, WT, UC-, UC, repeated).
const DEFAULT_PAT: u64 = 0x0007_0406_0007_0406;

/// Writes the execution, exit and entry controls for a vCPU of a sandbox.
///
/// # Safety
/// A VMCS must be current on this core; `res` must stay allocated while it is used.
pub unsafe fn write_controls(caps: &VmxCaps, res: &SandboxVmx, vpid: u16) -> Result<(), VmFail> {
    // SAFETY: a VMCS is current (contract); addresses are frames owned by the sandbox.
    unsafe {
        vmx::write32(field32::PIN_BASED_CONTROLS, caps.pin)?;
        vmx::write32(field32::PRIMARY_PROC_CONTROLS, caps.primary)?;
        vmx::write32(field32::SECONDARY_PROC_CONTROLS, caps.secondary)?;
        vmx::write32(field32::EXIT_CONTROLS, caps.exit)?;
        vmx::write32(field32::ENTRY_CONTROLS, caps.entry)?;
        vmx::write32(field32::EXCEPTION_BITMAP, 0)?;
        vmx::write32(field32::PAGE_FAULT_ERROR_CODE_MASK, 0)?;
        vmx::write32(field32::PAGE_FAULT_ERROR_CODE_MATCH, 0)?;
        vmx::write32(field32::CR3_TARGET_COUNT, 0)?;
        vmx::write32(field32::EXIT_MSR_STORE_COUNT, 0)?;
        vmx::write32(field32::EXIT_MSR_LOAD_COUNT, 0)?;
        vmx::write32(field32::ENTRY_MSR_LOAD_COUNT, 0)?;
        vmx::write32(field32::ENTRY_INTERRUPTION_INFO, 0)?;
        vmx::write64(field64::IO_BITMAP_A, res.io_bitmaps)?;
        vmx::write64(field64::IO_BITMAP_B, res.io_bitmaps + 4096)?;
        vmx::write64(field64::MSR_BITMAP, res.msr_bitmap)?;
        vmx::write64(field64::EPT_POINTER, res.eptp)?;
        vmx::write64(field64::TSC_OFFSET, 0)?;
        vmx::write16(field16::VPID, vpid)?;
        vmx::write_natural(natural::CR0_GUEST_HOST_MASK, CR0_MASK)?;
        vmx::write_natural(natural::CR4_GUEST_HOST_MASK, CR4_MASK)?;
        vmx::write_natural(natural::CR0_READ_SHADOW, GUEST_CR0)?;
        vmx::write_natural(natural::CR4_READ_SHADOW, GUEST_CR4)?;
        vmx::write64(field64::VMCS_LINK_POINTER, u64::MAX)?;
    }
    Ok(())
}

/// Writes the launch state of `vcpu`: 64-bit mode at its entry, flat segments from the
/// launch GDT at `layout::GDT_GPA` ([`quest_abi::gdt`]), CR3 = the sandbox's page tables.
///
/// # Safety
/// A VMCS must be current on this core.
pub unsafe fn write_guest_state(
    caps: &VmxCaps,
    sandbox: &SandboxView<'_>,
    vcpu: &VcpuView<'_>,
) -> Result<(), VmFail> {
    let cr0 = apply_fixed(GUEST_CR0, caps.cr0_fixed.0, caps.cr0_fixed.1);
    let cr4 = apply_fixed(GUEST_CR4, caps.cr4_fixed.0, caps.cr4_fixed.1);
    // SAFETY: a VMCS is current (contract).
    unsafe {
        vmx::write_natural(natural::GUEST_CR0, cr0)?;
        vmx::write_natural(natural::GUEST_CR3, sandbox.page_table_gpa().as_u64())?;
        vmx::write_natural(natural::GUEST_CR4, cr4)?;
        vmx::write_natural(natural::GUEST_DR7, 0x400)?;
        vmx::write_natural(natural::GUEST_RSP, vcpu.rsp())?;
        vmx::write_natural(natural::GUEST_RIP, vcpu.rip())?;
        vmx::write_natural(natural::GUEST_RFLAGS, 0x2)?;
        vmx::write_natural(natural::GUEST_PENDING_DEBUG, 0)?;
        vmx::write64(field64::GUEST_IA32_EFER, GUEST_EFER)?;
        vmx::write64(field64::GUEST_IA32_PAT, DEFAULT_PAT)?;
        vmx::write64(field64::GUEST_IA32_DEBUGCTL, 0)?;
        vmx::write32(field32::GUEST_SYSENTER_CS, 0)?;
        vmx::write_natural(natural::GUEST_SYSENTER_ESP, 0)?;
        vmx::write_natural(natural::GUEST_SYSENTER_EIP, 0)?;
        vmx::write32(field32::GUEST_INTERRUPTIBILITY, 0)?;
        vmx::write32(field32::GUEST_ACTIVITY_STATE, 0)?;
        vmx::write32(field32::ENTRY_INTERRUPTION_INFO, 0)?;

        vmx::write16(field16::GUEST_CS_SELECTOR, gdt::CODE_SELECTOR)?;
        vmx::write_natural(natural::GUEST_CS_BASE, 0)?;
        vmx::write32(field32::GUEST_CS_LIMIT, gdt::FLAT_LIMIT)?;
        vmx::write32(field32::GUEST_CS_ACCESS_RIGHTS, gdt::CODE_ACCESS_RIGHTS)?;
        let data = [
            (
                field16::GUEST_DS_SELECTOR,
                natural::GUEST_DS_BASE,
                field32::GUEST_DS_LIMIT,
                field32::GUEST_DS_ACCESS_RIGHTS,
            ),
            (
                field16::GUEST_ES_SELECTOR,
                natural::GUEST_ES_BASE,
                field32::GUEST_ES_LIMIT,
                field32::GUEST_ES_ACCESS_RIGHTS,
            ),
            (
                field16::GUEST_SS_SELECTOR,
                natural::GUEST_SS_BASE,
                field32::GUEST_SS_LIMIT,
                field32::GUEST_SS_ACCESS_RIGHTS,
            ),
            (
                field16::GUEST_FS_SELECTOR,
                natural::GUEST_FS_BASE,
                field32::GUEST_FS_LIMIT,
                field32::GUEST_FS_ACCESS_RIGHTS,
            ),
            (
                field16::GUEST_GS_SELECTOR,
                natural::GUEST_GS_BASE,
                field32::GUEST_GS_LIMIT,
                field32::GUEST_GS_ACCESS_RIGHTS,
            ),
        ];
        for (sel, base, limit, rights) in data {
            vmx::write16(sel, gdt::DATA_SELECTOR)?;
            vmx::write_natural(base, 0)?;
            vmx::write32(limit, gdt::FLAT_LIMIT)?;
            vmx::write32(rights, gdt::DATA_ACCESS_RIGHTS)?;
        }
        vmx::write16(field16::GUEST_LDTR_SELECTOR, 0)?;
        vmx::write_natural(natural::GUEST_LDTR_BASE, 0)?;
        vmx::write32(field32::GUEST_LDTR_LIMIT, 0)?;
        vmx::write32(field32::GUEST_LDTR_ACCESS_RIGHTS, 0x1_0000)?;
        vmx::write16(field16::GUEST_TR_SELECTOR, 0)?;
        vmx::write_natural(natural::GUEST_TR_BASE, 0)?;
        vmx::write32(field32::GUEST_TR_LIMIT, 0x67)?;
        vmx::write32(field32::GUEST_TR_ACCESS_RIGHTS, 0x8b)?;
        vmx::write_natural(natural::GUEST_GDTR_BASE, layout::GDT_GPA)?;
        vmx::write32(field32::GUEST_GDTR_LIMIT, gdt::LAUNCH_GDT_LIMIT)?;
        vmx::write_natural(natural::GUEST_IDTR_BASE, 0)?;
        vmx::write32(field32::GUEST_IDTR_LIMIT, 0)?;
    }
    Ok(())
}
