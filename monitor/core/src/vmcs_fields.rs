//! VMCS field encodings as typed items (Intel SDM Vol. 3, Appendix B "Field Encoding in
//! VMCS").
//!
//! Every field has one of four widths and its own Rust type ([`Field16`], [`Field32`],
//! [`Field64`], [`FieldNatural`]), so the monitor's `vmwrite` wrappers only accept a value
//! of the field's width: a 16-bit selector field cannot be handed a `u64`. The width and
//! the kind (control, read-only, guest, host) are encoded in bits 14:13 and 11:10 of the
//! encoding (SDM Table B-1 ... B-13 / "Components of VMCS encodings"); a test checks every
//! constant against its declared type.

/// A 16-bit VMCS field (SDM B.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field16(pub u32);
/// A 32-bit VMCS field (SDM B.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field32(pub u32);
/// A 64-bit VMCS field, accessed in full (SDM B.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field64(pub u32);
/// A natural-width VMCS field (64 bits on a 64-bit host; SDM B.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldNatural(pub u32);

/// Width bits 14:13 of an encoding.
pub const fn width_bits(encoding: u32) -> u32 {
    (encoding >> 13) & 3
}

/// Kind bits 11:10 of an encoding (0 control, 1 read-only data, 2 guest state, 3 host state).
pub const fn kind_bits(encoding: u32) -> u32 {
    (encoding >> 10) & 3
}

/// 16-bit fields (SDM B.1).
pub mod field16 {
    use super::Field16;
    /// Virtual-processor identifier (B.1.1).
    pub const VPID: Field16 = Field16(0x0000);
    /// Guest ES selector (B.1.2).
    pub const GUEST_ES_SELECTOR: Field16 = Field16(0x0800);
    /// Guest CS selector.
    pub const GUEST_CS_SELECTOR: Field16 = Field16(0x0802);
    /// Guest SS selector.
    pub const GUEST_SS_SELECTOR: Field16 = Field16(0x0804);
    /// Guest DS selector.
    pub const GUEST_DS_SELECTOR: Field16 = Field16(0x0806);
    /// Guest FS selector.
    pub const GUEST_FS_SELECTOR: Field16 = Field16(0x0808);
    /// Guest GS selector.
    pub const GUEST_GS_SELECTOR: Field16 = Field16(0x080A);
    /// Guest LDTR selector.
    pub const GUEST_LDTR_SELECTOR: Field16 = Field16(0x080C);
    /// Guest TR selector.
    pub const GUEST_TR_SELECTOR: Field16 = Field16(0x080E);
    /// Host ES selector (B.1.3).
    pub const HOST_ES_SELECTOR: Field16 = Field16(0x0C00);
    /// Host CS selector.
    pub const HOST_CS_SELECTOR: Field16 = Field16(0x0C02);
    /// Host SS selector.
    pub const HOST_SS_SELECTOR: Field16 = Field16(0x0C04);
    /// Host DS selector.
    pub const HOST_DS_SELECTOR: Field16 = Field16(0x0C06);
    /// Host FS selector.
    pub const HOST_FS_SELECTOR: Field16 = Field16(0x0C08);
    /// Host GS selector.
    pub const HOST_GS_SELECTOR: Field16 = Field16(0x0C0A);
    /// Host TR selector.
    pub const HOST_TR_SELECTOR: Field16 = Field16(0x0C0C);
}

/// 64-bit fields (SDM B.2).
pub mod field64 {
    use super::Field64;
    /// Address of I/O bitmap A, ports 0-0x7fff (B.2.1).
    pub const IO_BITMAP_A: Field64 = Field64(0x2000);
    /// Address of I/O bitmap B, ports 0x8000-0xffff.
    pub const IO_BITMAP_B: Field64 = Field64(0x2002);
    /// Address of the MSR bitmaps.
    pub const MSR_BITMAP: Field64 = Field64(0x2004);
    /// VM-exit MSR-store address.
    pub const EXIT_MSR_STORE_ADDR: Field64 = Field64(0x2006);
    /// VM-exit MSR-load address.
    pub const EXIT_MSR_LOAD_ADDR: Field64 = Field64(0x2008);
    /// VM-entry MSR-load address.
    pub const ENTRY_MSR_LOAD_ADDR: Field64 = Field64(0x200A);
    /// TSC offset.
    pub const TSC_OFFSET: Field64 = Field64(0x2010);
    /// EPT pointer.
    pub const EPT_POINTER: Field64 = Field64(0x201A);
    /// Guest-physical address of an EPT violation or misconfiguration (B.2.2, read-only).
    pub const GUEST_PHYSICAL_ADDRESS: Field64 = Field64(0x2400);
    /// VMCS link pointer (B.2.3); must be all ones.
    pub const VMCS_LINK_POINTER: Field64 = Field64(0x2800);
    /// Guest IA32_DEBUGCTL.
    pub const GUEST_IA32_DEBUGCTL: Field64 = Field64(0x2802);
    /// Guest IA32_PAT.
    pub const GUEST_IA32_PAT: Field64 = Field64(0x2804);
    /// Guest IA32_EFER.
    pub const GUEST_IA32_EFER: Field64 = Field64(0x2806);
    /// Host IA32_PAT (B.2.4).
    pub const HOST_IA32_PAT: Field64 = Field64(0x2C00);
    /// Host IA32_EFER.
    pub const HOST_IA32_EFER: Field64 = Field64(0x2C02);
}

/// 32-bit fields (SDM B.3).
pub mod field32 {
    use super::Field32;
    /// Pin-based VM-execution controls (B.3.1).
    pub const PIN_BASED_CONTROLS: Field32 = Field32(0x4000);
    /// Primary processor-based VM-execution controls.
    pub const PRIMARY_PROC_CONTROLS: Field32 = Field32(0x4002);
    /// Exception bitmap.
    pub const EXCEPTION_BITMAP: Field32 = Field32(0x4004);
    /// Page-fault error-code mask.
    pub const PAGE_FAULT_ERROR_CODE_MASK: Field32 = Field32(0x4006);
    /// Page-fault error-code match.
    pub const PAGE_FAULT_ERROR_CODE_MATCH: Field32 = Field32(0x4008);
    /// CR3-target count.
    pub const CR3_TARGET_COUNT: Field32 = Field32(0x400A);
    /// VM-exit controls.
    pub const EXIT_CONTROLS: Field32 = Field32(0x400C);
    /// VM-exit MSR-store count.
    pub const EXIT_MSR_STORE_COUNT: Field32 = Field32(0x400E);
    /// VM-exit MSR-load count.
    pub const EXIT_MSR_LOAD_COUNT: Field32 = Field32(0x4010);
    /// VM-entry controls.
    pub const ENTRY_CONTROLS: Field32 = Field32(0x4012);
    /// VM-entry MSR-load count.
    pub const ENTRY_MSR_LOAD_COUNT: Field32 = Field32(0x4014);
    /// VM-entry interruption-information field (event injection).
    pub const ENTRY_INTERRUPTION_INFO: Field32 = Field32(0x4016);
    /// VM-entry exception error code.
    pub const ENTRY_EXCEPTION_ERROR_CODE: Field32 = Field32(0x4018);
    /// VM-entry instruction length.
    pub const ENTRY_INSTRUCTION_LENGTH: Field32 = Field32(0x401A);
    /// Secondary processor-based VM-execution controls.
    pub const SECONDARY_PROC_CONTROLS: Field32 = Field32(0x401E);
    /// VM-instruction error (B.3.2, read-only).
    pub const VM_INSTRUCTION_ERROR: Field32 = Field32(0x4400);
    /// Exit reason.
    pub const EXIT_REASON: Field32 = Field32(0x4402);
    /// VM-exit interruption information.
    pub const EXIT_INTERRUPTION_INFO: Field32 = Field32(0x4404);
    /// VM-exit interruption error code.
    pub const EXIT_INTERRUPTION_ERROR_CODE: Field32 = Field32(0x4406);
    /// IDT-vectoring information.
    pub const IDT_VECTORING_INFO: Field32 = Field32(0x4408);
    /// VM-exit instruction length.
    pub const EXIT_INSTRUCTION_LENGTH: Field32 = Field32(0x440C);
    /// Guest ES limit (B.3.3).
    pub const GUEST_ES_LIMIT: Field32 = Field32(0x4800);
    /// Guest CS limit.
    pub const GUEST_CS_LIMIT: Field32 = Field32(0x4802);
    /// Guest SS limit.
    pub const GUEST_SS_LIMIT: Field32 = Field32(0x4804);
    /// Guest DS limit.
    pub const GUEST_DS_LIMIT: Field32 = Field32(0x4806);
    /// Guest FS limit.
    pub const GUEST_FS_LIMIT: Field32 = Field32(0x4808);
    /// Guest GS limit.
    pub const GUEST_GS_LIMIT: Field32 = Field32(0x480A);
    /// Guest LDTR limit.
    pub const GUEST_LDTR_LIMIT: Field32 = Field32(0x480C);
    /// Guest TR limit.
    pub const GUEST_TR_LIMIT: Field32 = Field32(0x480E);
    /// Guest GDTR limit.
    pub const GUEST_GDTR_LIMIT: Field32 = Field32(0x4810);
    /// Guest IDTR limit.
    pub const GUEST_IDTR_LIMIT: Field32 = Field32(0x4812);
    /// Guest ES access rights.
    pub const GUEST_ES_ACCESS_RIGHTS: Field32 = Field32(0x4814);
    /// Guest CS access rights.
    pub const GUEST_CS_ACCESS_RIGHTS: Field32 = Field32(0x4816);
    /// Guest SS access rights.
    pub const GUEST_SS_ACCESS_RIGHTS: Field32 = Field32(0x4818);
    /// Guest DS access rights.
    pub const GUEST_DS_ACCESS_RIGHTS: Field32 = Field32(0x481A);
    /// Guest FS access rights.
    pub const GUEST_FS_ACCESS_RIGHTS: Field32 = Field32(0x481C);
    /// Guest GS access rights.
    pub const GUEST_GS_ACCESS_RIGHTS: Field32 = Field32(0x481E);
    /// Guest LDTR access rights.
    pub const GUEST_LDTR_ACCESS_RIGHTS: Field32 = Field32(0x4820);
    /// Guest TR access rights.
    pub const GUEST_TR_ACCESS_RIGHTS: Field32 = Field32(0x4822);
    /// Guest interruptibility state.
    pub const GUEST_INTERRUPTIBILITY: Field32 = Field32(0x4824);
    /// Guest activity state (0 active, 1 HLT).
    pub const GUEST_ACTIVITY_STATE: Field32 = Field32(0x4826);
    /// Guest IA32_SYSENTER_CS.
    pub const GUEST_SYSENTER_CS: Field32 = Field32(0x482A);
    /// Host IA32_SYSENTER_CS (B.3.4).
    pub const HOST_SYSENTER_CS: Field32 = Field32(0x4C00);
}

/// Natural-width fields (SDM B.4).
pub mod natural {
    use super::FieldNatural;
    /// CR0 guest/host mask (B.4.1): set bits are owned by the monitor.
    pub const CR0_GUEST_HOST_MASK: FieldNatural = FieldNatural(0x6000);
    /// CR4 guest/host mask.
    pub const CR4_GUEST_HOST_MASK: FieldNatural = FieldNatural(0x6002);
    /// CR0 read shadow: what the guest reads in monitor-owned bits.
    pub const CR0_READ_SHADOW: FieldNatural = FieldNatural(0x6004);
    /// CR4 read shadow.
    pub const CR4_READ_SHADOW: FieldNatural = FieldNatural(0x6006);
    /// Exit qualification (B.4.2, read-only).
    pub const EXIT_QUALIFICATION: FieldNatural = FieldNatural(0x6400);
    /// Guest-linear address (EPT violations with a valid linear address).
    pub const GUEST_LINEAR_ADDRESS: FieldNatural = FieldNatural(0x640A);
    /// Guest CR0 (B.4.3).
    pub const GUEST_CR0: FieldNatural = FieldNatural(0x6800);
    /// Guest CR3.
    pub const GUEST_CR3: FieldNatural = FieldNatural(0x6802);
    /// Guest CR4.
    pub const GUEST_CR4: FieldNatural = FieldNatural(0x6804);
    /// Guest ES base.
    pub const GUEST_ES_BASE: FieldNatural = FieldNatural(0x6806);
    /// Guest CS base.
    pub const GUEST_CS_BASE: FieldNatural = FieldNatural(0x6808);
    /// Guest SS base.
    pub const GUEST_SS_BASE: FieldNatural = FieldNatural(0x680A);
    /// Guest DS base.
    pub const GUEST_DS_BASE: FieldNatural = FieldNatural(0x680C);
    /// Guest FS base.
    pub const GUEST_FS_BASE: FieldNatural = FieldNatural(0x680E);
    /// Guest GS base.
    pub const GUEST_GS_BASE: FieldNatural = FieldNatural(0x6810);
    /// Guest LDTR base.
    pub const GUEST_LDTR_BASE: FieldNatural = FieldNatural(0x6812);
    /// Guest TR base.
    pub const GUEST_TR_BASE: FieldNatural = FieldNatural(0x6814);
    /// Guest GDTR base.
    pub const GUEST_GDTR_BASE: FieldNatural = FieldNatural(0x6816);
    /// Guest IDTR base.
    pub const GUEST_IDTR_BASE: FieldNatural = FieldNatural(0x6818);
    /// Guest DR7.
    pub const GUEST_DR7: FieldNatural = FieldNatural(0x681A);
    /// Guest RSP.
    pub const GUEST_RSP: FieldNatural = FieldNatural(0x681C);
    /// Guest RIP.
    pub const GUEST_RIP: FieldNatural = FieldNatural(0x681E);
    /// Guest RFLAGS.
    pub const GUEST_RFLAGS: FieldNatural = FieldNatural(0x6820);
    /// Guest pending debug exceptions.
    pub const GUEST_PENDING_DEBUG: FieldNatural = FieldNatural(0x6822);
    /// Guest IA32_SYSENTER_ESP.
    pub const GUEST_SYSENTER_ESP: FieldNatural = FieldNatural(0x6824);
    /// Guest IA32_SYSENTER_EIP.
    pub const GUEST_SYSENTER_EIP: FieldNatural = FieldNatural(0x6826);
    /// Host CR0 (B.4.4).
    pub const HOST_CR0: FieldNatural = FieldNatural(0x6C00);
    /// Host CR3.
    pub const HOST_CR3: FieldNatural = FieldNatural(0x6C02);
    /// Host CR4.
    pub const HOST_CR4: FieldNatural = FieldNatural(0x6C04);
    /// Host FS base.
    pub const HOST_FS_BASE: FieldNatural = FieldNatural(0x6C06);
    /// Host GS base.
    pub const HOST_GS_BASE: FieldNatural = FieldNatural(0x6C08);
    /// Host TR base.
    pub const HOST_TR_BASE: FieldNatural = FieldNatural(0x6C0A);
    /// Host GDTR base.
    pub const HOST_GDTR_BASE: FieldNatural = FieldNatural(0x6C0C);
    /// Host IDTR base.
    pub const HOST_IDTR_BASE: FieldNatural = FieldNatural(0x6C0E);
    /// Host IA32_SYSENTER_ESP.
    pub const HOST_SYSENTER_ESP: FieldNatural = FieldNatural(0x6C10);
    /// Host IA32_SYSENTER_EIP.
    pub const HOST_SYSENTER_EIP: FieldNatural = FieldNatural(0x6C12);
    /// Host RSP (written just before every VM entry).
    pub const HOST_RSP: FieldNatural = FieldNatural(0x6C14);
    /// Host RIP (the VM-exit entry point).
    pub const HOST_RIP: FieldNatural = FieldNatural(0x6C16);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_match_types() {
        for f in [
            field16::VPID,
            field16::GUEST_TR_SELECTOR,
            field16::HOST_TR_SELECTOR,
        ] {
            assert_eq!(width_bits(f.0), 0, "{:#x}", f.0);
        }
        for f in [
            field64::IO_BITMAP_A,
            field64::EPT_POINTER,
            field64::GUEST_PHYSICAL_ADDRESS,
            field64::VMCS_LINK_POINTER,
            field64::GUEST_IA32_EFER,
            field64::HOST_IA32_EFER,
        ] {
            assert_eq!(width_bits(f.0), 1, "{:#x}", f.0);
            assert_eq!(f.0 & 1, 0, "full, not high, access: {:#x}", f.0);
        }
        for f in [
            field32::PIN_BASED_CONTROLS,
            field32::EXIT_REASON,
            field32::GUEST_TR_ACCESS_RIGHTS,
            field32::HOST_SYSENTER_CS,
        ] {
            assert_eq!(width_bits(f.0), 2, "{:#x}", f.0);
        }
        for f in [
            natural::CR0_GUEST_HOST_MASK,
            natural::EXIT_QUALIFICATION,
            natural::GUEST_RIP,
            natural::HOST_RIP,
        ] {
            assert_eq!(width_bits(f.0), 3, "{:#x}", f.0);
        }
    }

    #[test]
    fn kinds_match_names() {
        assert_eq!(kind_bits(field32::PIN_BASED_CONTROLS.0), 0);
        assert_eq!(kind_bits(field32::EXIT_REASON.0), 1);
        assert_eq!(kind_bits(natural::EXIT_QUALIFICATION.0), 1);
        assert_eq!(kind_bits(field64::GUEST_PHYSICAL_ADDRESS.0), 1);
        assert_eq!(kind_bits(natural::GUEST_CR3.0), 2);
        assert_eq!(kind_bits(field16::GUEST_CS_SELECTOR.0), 2);
        assert_eq!(kind_bits(natural::HOST_RIP.0), 3);
        assert_eq!(kind_bits(field64::HOST_IA32_PAT.0), 3);
    }
}
