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

/// The guest's segment registers, in the order the SDM numbers their VMCS fields: the
/// selector, base, limit and access-rights fields of each kind are eight consecutive
/// encodings, 2 apart, ES first (SDM B.1.2, B.3.3, B.4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segment {
    /// ES.
    Es,
    /// CS.
    Cs,
    /// SS.
    Ss,
    /// DS.
    Ds,
    /// FS.
    Fs,
    /// GS.
    Gs,
    /// LDTR.
    Ldtr,
    /// TR.
    Tr,
}

/// The four guest-state fields of one segment register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentFields {
    /// Selector.
    pub selector: Field16,
    /// Base address.
    pub base: FieldNatural,
    /// Limit.
    pub limit: Field32,
    /// Access rights.
    pub access_rights: Field32,
}

impl Segment {
    /// Every segment register, in encoding order.
    pub const ALL: [Self; 8] = [
        Self::Es,
        Self::Cs,
        Self::Ss,
        Self::Ds,
        Self::Fs,
        Self::Gs,
        Self::Ldtr,
        Self::Tr,
    ];

    /// The guest-state fields of this segment register.
    pub const fn guest_fields(self) -> SegmentFields {
        let i = 2 * self as u32;
        SegmentFields {
            selector: Field16(0x0800 + i),
            base: FieldNatural(0x6806 + i),
            limit: Field32(0x4800 + i),
            access_rights: Field32(0x4814 + i),
        }
    }
}

/// 16-bit fields (SDM B.1).
pub mod field16 {
    use super::Field16;
    /// Virtual-processor identifier (B.1.1).
    pub const VPID: Field16 = Field16(0x0000);
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
    /// IDT-vectoring error code.
    pub const IDT_VECTORING_ERROR_CODE: Field32 = Field32(0x440A);
    /// VM-exit instruction length.
    pub const EXIT_INSTRUCTION_LENGTH: Field32 = Field32(0x440C);
    /// Guest GDTR limit (B.3.3; the segment limits are [`super::Segment`]'s).
    pub const GUEST_GDTR_LIMIT: Field32 = Field32(0x4810);
    /// Guest IDTR limit.
    pub const GUEST_IDTR_LIMIT: Field32 = Field32(0x4812);
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
            Segment::Tr.guest_fields().selector,
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
            Segment::Tr.guest_fields().access_rights,
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
        assert_eq!(kind_bits(Segment::Cs.guest_fields().selector.0), 2);
        assert_eq!(kind_bits(natural::HOST_RIP.0), 3);
        assert_eq!(kind_bits(field64::HOST_IA32_PAT.0), 3);
    }

    #[test]
    fn segment_fields_are_the_sdm_encodings() {
        // SDM Appendix B: ES and TR, the first and last of each run.
        let es = Segment::Es.guest_fields();
        assert_eq!(
            (es.selector.0, es.base.0, es.limit.0, es.access_rights.0),
            (0x0800, 0x6806, 0x4800, 0x4814)
        );
        let tr = Segment::Tr.guest_fields();
        assert_eq!(
            (tr.selector.0, tr.base.0, tr.limit.0, tr.access_rights.0),
            (0x080E, 0x6814, 0x480E, 0x4822)
        );
        assert_eq!(Segment::Ds.guest_fields().base.0, 0x680C);
        for seg in Segment::ALL {
            let f = seg.guest_fields();
            assert_eq!(width_bits(f.selector.0), 0, "{seg:?}");
            assert_eq!(width_bits(f.limit.0), 2, "{seg:?}");
            assert_eq!(width_bits(f.access_rights.0), 2, "{seg:?}");
            assert_eq!(width_bits(f.base.0), 3, "{seg:?}");
            for e in [f.selector.0, f.base.0, f.limit.0, f.access_rights.0] {
                assert_eq!(kind_bits(e), 2, "guest state: {seg:?} {e:#x}");
            }
        }
        // The runs end where the next fields (GDTR, IDTR, ...) begin.
        assert_eq!(natural::GUEST_GDTR_BASE.0, 0x6816);
        assert_eq!(field32::GUEST_GDTR_LIMIT.0, 0x4810);
        assert_eq!(field32::GUEST_INTERRUPTIBILITY.0, 0x4824);
    }
}
