//! The VM-execution controls and the initial 64-bit guest state of a vCPU's VMCS
//! (Intel SDM Vol. 3, 25.6 and 25.4).

use super::caps::VmxCaps;
use super::instructions::{self as vmx, VmFail};
use crate::sandboxes::SandboxVmx;
use quest_abi::view::{SandboxView, VcpuView};
use quest_abi::{gdt, layout};
use quest_monitor_core::vmcs_fields::{field16, field32, field64, natural, Field32, Segment};
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

/// 32-bit controls that start at zero: no exception exits beyond the ones that always
/// happen, no page-fault filter, no CR3-target values, no MSR lists loaded or stored at
/// exit or entry, no event to inject.
const ZERO_CONTROLS: [Field32; 8] = [
    field32::EXCEPTION_BITMAP,
    field32::PAGE_FAULT_ERROR_CODE_MASK,
    field32::PAGE_FAULT_ERROR_CODE_MATCH,
    field32::CR3_TARGET_COUNT,
    field32::EXIT_MSR_STORE_COUNT,
    field32::EXIT_MSR_LOAD_COUNT,
    field32::ENTRY_MSR_LOAD_COUNT,
    field32::ENTRY_INTERRUPTION_INFO,
];

/// Points the current VMCS at a sandbox's structures: its EPT and its I/O and MSR
/// bitmaps. A migration that moves the RAM replaces all of them (and frees the old
/// frames), so a moved vCPU must take every one of them, not only the EPT pointer.
///
/// # Safety
/// A VMCS must be current on this core; `res` must stay allocated while it is used.
pub unsafe fn use_structures(res: &SandboxVmx) -> Result<(), VmFail> {
    // SAFETY: a VMCS is current (contract); addresses are frames owned by the sandbox.
    unsafe {
        vmx::write64(field64::IO_BITMAP_A, res.io_bitmaps)?;
        vmx::write64(field64::IO_BITMAP_B, res.io_bitmaps + 4096)?;
        vmx::write64(field64::MSR_BITMAP, res.msr_bitmap)?;
        vmx::write64(field64::EPT_POINTER, res.eptp)
    }
}

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
        for field in ZERO_CONTROLS {
            vmx::write32(field, 0)?;
        }
        use_structures(res)?;
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

        // Flat 64-bit code and data from the launch GDT; a null LDTR (unusable) and a
        // busy 64-bit TSS of the minimum size at 0.
        let flat = |selector, rights| (selector, 0, gdt::FLAT_LIMIT, rights);
        let code = flat(gdt::CODE_SELECTOR, gdt::CODE_ACCESS_RIGHTS);
        let data = flat(gdt::DATA_SELECTOR, gdt::DATA_ACCESS_RIGHTS);
        for (segment, (selector, base, limit, rights)) in [
            (Segment::Cs, code),
            (Segment::Ds, data),
            (Segment::Es, data),
            (Segment::Ss, data),
            (Segment::Fs, data),
            (Segment::Gs, data),
            (Segment::Ldtr, (0, 0, 0, 0x1_0000)),
            (Segment::Tr, (0, 0, 0x67, 0x8b)),
        ] {
            let fields = segment.guest_fields();
            vmx::write16(fields.selector, selector)?;
            vmx::write_natural(fields.base, base)?;
            vmx::write32(fields.limit, limit)?;
            vmx::write32(fields.access_rights, rights)?;
        }
        vmx::write_natural(natural::GUEST_GDTR_BASE, layout::GDT_GPA)?;
        vmx::write32(field32::GUEST_GDTR_LIMIT, gdt::LAUNCH_GDT_LIMIT)?;
        vmx::write_natural(natural::GUEST_IDTR_BASE, 0)?;
        vmx::write32(field32::GUEST_IDTR_LIMIT, 0)?;
    }
    Ok(())
}
