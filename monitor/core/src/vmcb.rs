//! The VMCB fields the SVM backend uses, as byte offsets into the 4 KiB VMCB (AMD APM
//! Vol. 2, Appendix B "Layout of VMCB": Table B-1, control area at 0x000, and Table B-2,
//! state-save area at 0x400, its offsets given here from the start of the VMCB), the exit
//! codes (Appendix C "SVM Intercept Exit Codes") and the field encodings the backend
//! writes or decodes (intercept vectors, IOIO EXITINFO1 in 15.10, EVENTINJ in 15.20,
//! the nested page fault's EXITINFO1 in 15.25).
//!
//! Written from the APM's tables; the tests check what the APM fixes: each field inside
//! its area, no two fields overlapping, the segment registers in their order and size,
//! and the intercept bits in the order of their exit codes.

/// Size of a VMCB (one page, 4 KiB aligned).
pub const VMCB_SIZE: usize = 4096;
/// Offset of the state-save area.
pub const SAVE_AREA: usize = 0x400;

/// Control-area offsets (APM Table B-1).
pub mod control {
    /// u32: intercept reads of CR0-15 (bits 15:0) and writes (bits 31:16).
    pub const INTERCEPT_CR: usize = 0x000;
    /// u32: intercept reads of DR0-15 (15:0) and writes (31:16).
    pub const INTERCEPT_DR: usize = 0x004;
    /// u32: intercept exception vectors 0-31.
    pub const INTERCEPT_EXCEPTIONS: usize = 0x008;
    /// u32: the first miscellaneous intercept vector ([`super::intercept3`]).
    pub const INTERCEPT_MISC3: usize = 0x00C;
    /// u32: the second miscellaneous intercept vector ([`super::intercept4`]).
    pub const INTERCEPT_MISC4: usize = 0x010;
    /// u64: physical base of the I/O permission map (4 KiB aligned).
    pub const IOPM_BASE_PA: usize = 0x040;
    /// u64: physical base of the MSR permission map (4 KiB aligned).
    pub const MSRPM_BASE_PA: usize = 0x048;
    /// u64: TSC offset added to the guest's RDTSC.
    pub const TSC_OFFSET: usize = 0x050;
    /// u32: the guest's ASID.
    pub const GUEST_ASID: usize = 0x058;
    /// u8: TLB_CONTROL (bits 39:32 of the quadword at 0x58; [`super::tlb_control`]).
    pub const TLB_CONTROL: usize = 0x05C;
    /// u64: virtual interrupt control (V_TPR, V_IRQ, V_INTR_MASKING, ...).
    pub const VINTR: usize = 0x060;
    /// u64: bit 0 interrupt shadow, bit 1 guest interrupt mask.
    pub const INTERRUPT_SHADOW: usize = 0x068;
    /// u64: EXITCODE ([`super::exit_code`]).
    pub const EXIT_CODE: usize = 0x070;
    /// u64: EXITINFO1.
    pub const EXIT_INFO1: usize = 0x078;
    /// u64: EXITINFO2.
    pub const EXIT_INFO2: usize = 0x080;
    /// u64: EXITINTINFO (an event being delivered when the exit happened).
    pub const EXIT_INT_INFO: usize = 0x088;
    /// u64: bit 0 NP_ENABLE (nested paging).
    pub const NP_CONTROL: usize = 0x090;
    /// u64: EVENTINJ ([`super::event_inject`]).
    pub const EVENT_INJ: usize = 0x0A8;
    /// u64: nCR3, the nested page tables' PML4.
    pub const N_CR3: usize = 0x0B0;
    /// u64: bit 0 LBR virtualization, bit 1 virtualized VMSAVE/VMLOAD.
    pub const LBR_VIRT: usize = 0x0B8;
    /// u32: VMCB clean bits.
    pub const CLEAN_BITS: usize = 0x0C0;
    /// u64: nRIP, the next instruction's RIP (with NRIPS).
    pub const NEXT_RIP: usize = 0x0C8;
    /// u8: number of instruction bytes fetched (with decode assists), then up to 15 bytes.
    pub const INSN_LEN: usize = 0x0D0;
    /// 15 bytes: the fetched instruction bytes.
    pub const INSN_BYTES: usize = 0x0D1;
}

/// State-save-area offsets from the start of the VMCB (APM Table B-2 plus 0x400).
pub mod save {
    use super::SAVE_AREA;

    /// ES; each segment is 16 bytes: selector u16, attributes u16, limit u32, base u64.
    pub const ES: usize = SAVE_AREA;
    /// CS.
    pub const CS: usize = SAVE_AREA + 0x010;
    /// SS.
    pub const SS: usize = SAVE_AREA + 0x020;
    /// DS.
    pub const DS: usize = SAVE_AREA + 0x030;
    /// FS.
    pub const FS: usize = SAVE_AREA + 0x040;
    /// GS.
    pub const GS: usize = SAVE_AREA + 0x050;
    /// GDTR (limit and base only).
    pub const GDTR: usize = SAVE_AREA + 0x060;
    /// LDTR.
    pub const LDTR: usize = SAVE_AREA + 0x070;
    /// IDTR (limit and base only).
    pub const IDTR: usize = SAVE_AREA + 0x080;
    /// TR.
    pub const TR: usize = SAVE_AREA + 0x090;
    /// u8: CPL.
    pub const CPL: usize = SAVE_AREA + 0x0CB;
    /// u64: EFER.
    pub const EFER: usize = SAVE_AREA + 0x0D0;
    /// u64: CR4.
    pub const CR4: usize = SAVE_AREA + 0x148;
    /// u64: CR3.
    pub const CR3: usize = SAVE_AREA + 0x150;
    /// u64: CR0.
    pub const CR0: usize = SAVE_AREA + 0x158;
    /// u64: DR7.
    pub const DR7: usize = SAVE_AREA + 0x160;
    /// u64: DR6.
    pub const DR6: usize = SAVE_AREA + 0x168;
    /// u64: RFLAGS.
    pub const RFLAGS: usize = SAVE_AREA + 0x170;
    /// u64: RIP.
    pub const RIP: usize = SAVE_AREA + 0x178;
    /// u64: RSP.
    pub const RSP: usize = SAVE_AREA + 0x1D8;
    /// u64: RAX (the only general-purpose register in the VMCB; the others stay in the
    /// processor across VMRUN and #VMEXIT and are saved by the backend).
    pub const RAX: usize = SAVE_AREA + 0x1F8;
    /// u64: STAR (VMLOAD/VMSAVE).
    pub const STAR: usize = SAVE_AREA + 0x200;
    /// u64: LSTAR (VMLOAD/VMSAVE).
    pub const LSTAR: usize = SAVE_AREA + 0x208;
    /// u64: CSTAR (VMLOAD/VMSAVE).
    pub const CSTAR: usize = SAVE_AREA + 0x210;
    /// u64: SFMASK (VMLOAD/VMSAVE).
    pub const SFMASK: usize = SAVE_AREA + 0x218;
    /// u64: KernelGsBase (VMLOAD/VMSAVE).
    pub const KERNEL_GS_BASE: usize = SAVE_AREA + 0x220;
    /// u64: SYSENTER_CS (VMLOAD/VMSAVE).
    pub const SYSENTER_CS: usize = SAVE_AREA + 0x228;
    /// u64: SYSENTER_ESP (VMLOAD/VMSAVE).
    pub const SYSENTER_ESP: usize = SAVE_AREA + 0x230;
    /// u64: SYSENTER_EIP (VMLOAD/VMSAVE).
    pub const SYSENTER_EIP: usize = SAVE_AREA + 0x238;
    /// u64: CR2.
    pub const CR2: usize = SAVE_AREA + 0x240;
    /// u64: G_PAT, the guest's PAT under nested paging.
    pub const G_PAT: usize = SAVE_AREA + 0x268;

    /// Within a segment: the selector (u16).
    pub const SEG_SELECTOR: usize = 0;
    /// Within a segment: the attributes (u16, [`super::segment_attributes`]).
    pub const SEG_ATTRIB: usize = 2;
    /// Within a segment: the limit (u32).
    pub const SEG_LIMIT: usize = 4;
    /// Within a segment: the base (u64).
    pub const SEG_BASE: usize = 8;
    /// Bytes per segment register.
    pub const SEG_SIZE: usize = 16;
}

/// The intercept vector at [`control::INTERCEPT_MISC3`]: bit `n` causes exit code
/// `0x60 + n`.
pub mod intercept3 {
    /// Physical interrupt.
    pub const INTR: u32 = 1 << 0;
    /// NMI (the stop protocol's NMI IPI).
    pub const NMI: u32 = 1 << 1;
    /// SMI.
    pub const SMI: u32 = 1 << 2;
    /// INIT.
    pub const INIT: u32 = 1 << 3;
    /// CPUID.
    pub const CPUID: u32 = 1 << 18;
    /// INVD.
    pub const INVD: u32 = 1 << 22;
    /// HLT.
    pub const HLT: u32 = 1 << 24;
    /// IN/OUT/INS/OUTS through the IOPM.
    pub const IOIO_PROT: u32 = 1 << 27;
    /// RDMSR/WRMSR through the MSRPM.
    pub const MSR_PROT: u32 = 1 << 28;
    /// Task switches.
    pub const TASK_SWITCH: u32 = 1 << 29;
    /// Shutdown (what VT-x reports as a triple fault).
    pub const SHUTDOWN: u32 = 1 << 31;
}

/// The intercept vector at [`control::INTERCEPT_MISC4`]: bit `n` causes exit code
/// `0x80 + n`.
pub mod intercept4 {
    /// VMRUN (must be set, or VMRUN fails with VMEXIT_INVALID).
    pub const VMRUN: u32 = 1 << 0;
    /// VMMCALL (Quest's hypercalls on AMD).
    pub const VMMCALL: u32 = 1 << 1;
    /// VMLOAD.
    pub const VMLOAD: u32 = 1 << 2;
    /// VMSAVE.
    pub const VMSAVE: u32 = 1 << 3;
    /// STGI.
    pub const STGI: u32 = 1 << 4;
    /// CLGI.
    pub const CLGI: u32 = 1 << 5;
    /// SKINIT.
    pub const SKINIT: u32 = 1 << 6;
    /// XSETBV.
    pub const XSETBV: u32 = 1 << 13;
    /// Every SVM instruction a guest could use to reach nested virtualization.
    pub const SVM_INSTRUCTIONS: u32 = VMRUN | VMMCALL | VMLOAD | VMSAVE | STGI | CLGI | SKINIT;
}

/// TLB_CONTROL values (APM 15.16, TLB control).
pub mod tlb_control {
    /// Flush nothing.
    pub const NOTHING: u8 = 0;
    /// Flush the whole TLB (every ASID; the only value without flush-by-ASID).
    pub const ALL: u8 = 1;
    /// Flush this guest's ASID (needs flush-by-ASID).
    pub const GUEST: u8 = 3;
}

/// EXITCODE values (APM Appendix C).
pub mod exit_code {
    /// Exception vector `n` is `EXCP_BASE + n`.
    pub const EXCP_BASE: u64 = 0x40;
    /// Physical interrupt.
    pub const INTR: u64 = 0x60;
    /// NMI.
    pub const NMI: u64 = 0x61;
    /// SMI.
    pub const SMI: u64 = 0x62;
    /// INIT.
    pub const INIT: u64 = 0x63;
    /// CPUID.
    pub const CPUID: u64 = 0x72;
    /// INVD.
    pub const INVD: u64 = 0x76;
    /// HLT.
    pub const HLT: u64 = 0x78;
    /// I/O instruction (EXITINFO1: [`super::IoInfo`]; EXITINFO2: next RIP).
    pub const IOIO: u64 = 0x7B;
    /// RDMSR (EXITINFO1 = 0) or WRMSR (EXITINFO1 = 1).
    pub const MSR: u64 = 0x7C;
    /// Task switch.
    pub const TASK_SWITCH: u64 = 0x7D;
    /// Shutdown (triple fault).
    pub const SHUTDOWN: u64 = 0x7F;
    /// VMRUN.
    pub const VMRUN: u64 = 0x80;
    /// VMMCALL.
    pub const VMMCALL: u64 = 0x81;
    /// VMLOAD.
    pub const VMLOAD: u64 = 0x82;
    /// VMSAVE.
    pub const VMSAVE: u64 = 0x83;
    /// STGI.
    pub const STGI: u64 = 0x84;
    /// CLGI.
    pub const CLGI: u64 = 0x85;
    /// SKINIT.
    pub const SKINIT: u64 = 0x86;
    /// XSETBV.
    pub const XSETBV: u64 = 0x8D;
    /// Nested page fault (EXITINFO1: [`super::NptFault`]; EXITINFO2: the guest-physical
    /// address).
    pub const NPF: u64 = 0x400;
    /// VMRUN failed: the VMCB's state was invalid (all ones, -1).
    pub const INVALID: u64 = u64::MAX;
}

/// EVENTINJ (APM 15.20): injects exception `vector` (type 3), with `error_code` when
/// given; the valid bit is 31.
pub fn event_inject(vector: u8, error_code: Option<u32>) -> u64 {
    const TYPE_EXCEPTION: u64 = 3 << 8;
    const ERROR_VALID: u64 = 1 << 11;
    const VALID: u64 = 1 << 31;
    let code = error_code.map_or(0, |c| (u64::from(c) << 32) | ERROR_VALID);
    u64::from(vector) | TYPE_EXCEPTION | VALID | code
}

/// EXITINFO1 of an IOIO intercept (APM 15.10.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoInfo {
    /// `in` (true) or `out`.
    pub input: bool,
    /// A string instruction.
    pub string: bool,
    /// Has a `rep` prefix.
    pub rep: bool,
    /// Access size in bytes (1, 2 or 4).
    pub size: u8,
    /// The port.
    pub port: u16,
}

impl IoInfo {
    /// Decodes EXITINFO1; `None` unless exactly one of SZ8/SZ16/SZ32 (bits 4-6) is set.
    pub fn decode(info: u64) -> Option<Self> {
        let size = match (info >> 4) & 7 {
            1 => 1,
            2 => 2,
            4 => 4,
            _ => return None,
        };
        Some(Self {
            input: info & 1 != 0,
            string: info & (1 << 2) != 0,
            rep: info & (1 << 3) != 0,
            size,
            port: (info >> 16) as u16,
        })
    }
}

/// EXITINFO1 of a nested page fault (APM 15.25: a #PF error code plus bits 32/33).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NptFault {
    /// The nested translation was present (a permission fault, else not mapped).
    pub present: bool,
    /// A write.
    pub write: bool,
    /// An instruction fetch.
    pub fetch: bool,
    /// A reserved bit was set in a nested entry (a builder bug, like an EPT
    /// misconfiguration).
    pub reserved: bool,
    /// The fault was on the final guest-physical address (bit 32), not on a guest
    /// page-table access (bit 33).
    pub final_address: bool,
}

impl NptFault {
    /// Decodes EXITINFO1.
    pub fn decode(info: u64) -> Self {
        Self {
            present: info & 1 != 0,
            write: info & (1 << 1) != 0,
            reserved: info & (1 << 3) != 0,
            fetch: info & (1 << 4) != 0,
            final_address: info & (1 << 32) != 0,
        }
    }

    /// The same fault as VT-x reports it, for the backend-neutral handlers; `allowed` is
    /// the `ACCESS_*` of the nested translation (0: not mapped), which EXITINFO1 does not
    /// carry. SVM gives no guest-linear address.
    pub fn as_ept_violation(&self, allowed: u32) -> crate::exit::EptViolation {
        crate::exit::EptViolation {
            read: !self.write && !self.fetch,
            write: self.write,
            fetch: self.fetch,
            allowed,
            linear_valid: false,
        }
    }
}

/// The VMCB's 12-bit segment attributes from VT-x access rights (SDM 25.4.1, Table
/// 25-2): type, S, DPL and P stay in bits 7:0; AVL, L, D/B and G move from bits 15:12 to
/// 11:8. An unusable VT-x segment (bit 16) becomes a null, not-present one.
pub fn segment_attributes(vmx_access_rights: u32) -> u16 {
    if vmx_access_rights & (1 << 16) != 0 {
        return 0;
    }
    ((vmx_access_rights & 0xff) | ((vmx_access_rights >> 4) & 0xf00)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every control field the backend uses with its size.
    const CONTROL: [(usize, usize); 24] = [
        (control::INTERCEPT_CR, 4),
        (control::INTERCEPT_DR, 4),
        (control::INTERCEPT_EXCEPTIONS, 4),
        (control::INTERCEPT_MISC3, 4),
        (control::INTERCEPT_MISC4, 4),
        (control::IOPM_BASE_PA, 8),
        (control::MSRPM_BASE_PA, 8),
        (control::TSC_OFFSET, 8),
        (control::GUEST_ASID, 4),
        (control::TLB_CONTROL, 1),
        (control::VINTR, 8),
        (control::INTERRUPT_SHADOW, 8),
        (control::EXIT_CODE, 8),
        (control::EXIT_INFO1, 8),
        (control::EXIT_INFO2, 8),
        (control::EXIT_INT_INFO, 8),
        (control::NP_CONTROL, 8),
        (control::EVENT_INJ, 8),
        (control::N_CR3, 8),
        (control::LBR_VIRT, 8),
        (control::CLEAN_BITS, 4),
        (control::NEXT_RIP, 8),
        (control::INSN_LEN, 1),
        (control::INSN_BYTES, 15),
    ];

    const SEGMENTS: [usize; 10] = [
        save::ES,
        save::CS,
        save::SS,
        save::DS,
        save::FS,
        save::GS,
        save::GDTR,
        save::LDTR,
        save::IDTR,
        save::TR,
    ];

    const SAVE_U64: [usize; 20] = [
        save::EFER,
        save::CR4,
        save::CR3,
        save::CR0,
        save::DR7,
        save::DR6,
        save::RFLAGS,
        save::RIP,
        save::RSP,
        save::RAX,
        save::STAR,
        save::LSTAR,
        save::CSTAR,
        save::SFMASK,
        save::KERNEL_GS_BASE,
        save::SYSENTER_CS,
        save::SYSENTER_ESP,
        save::SYSENTER_EIP,
        save::CR2,
        save::G_PAT,
    ];

    fn assert_disjoint(fields: &mut [(usize, usize)]) {
        fields.sort_unstable();
        for w in fields.windows(2) {
            assert!(
                w[0].0 + w[0].1 <= w[1].0,
                "{:#x} overlaps {:#x}",
                w[0].0,
                w[1].0
            );
        }
    }

    #[test]
    fn fields_lie_in_their_area_aligned_and_apart() {
        let mut c = CONTROL.to_vec();
        for &(off, size) in &c {
            assert!(off + size <= SAVE_AREA, "{off:#x} in the control area");
            if size == 4 || size == 8 {
                assert_eq!(off % size, 0, "{off:#x} aligned");
            }
        }
        assert_disjoint(&mut c);
        // The ASID is the low half, TLB_CONTROL bits 39:32, of the quadword at 0x58.
        assert_eq!(control::TLB_CONTROL, control::GUEST_ASID + 4);
        let mut s: Vec<(usize, usize)> = SEGMENTS.iter().map(|&o| (o, save::SEG_SIZE)).collect();
        s.extend(SAVE_U64.iter().map(|&o| (o, 8)));
        s.push((save::CPL, 1));
        for &(off, size) in &s {
            assert!((SAVE_AREA..VMCB_SIZE).contains(&off) && off + size <= VMCB_SIZE);
            assert_eq!(off % size.min(8), 0, "{off:#x} aligned");
        }
        assert_disjoint(&mut s);
    }

    #[test]
    fn segments_follow_one_another_in_the_apm_order() {
        for (i, &seg) in SEGMENTS.iter().enumerate() {
            assert_eq!(seg, SAVE_AREA + i * save::SEG_SIZE);
        }
        assert_eq!(
            (
                save::SEG_SELECTOR,
                save::SEG_ATTRIB,
                save::SEG_LIMIT,
                save::SEG_BASE
            ),
            (0, 2, 4, 8)
        );
    }

    #[test]
    fn the_offsets_the_apm_fixes() {
        // Table B-1 (control area).
        assert_eq!(control::INTERCEPT_MISC3, 0x0C);
        assert_eq!(control::IOPM_BASE_PA, 0x40);
        assert_eq!(control::EXIT_CODE, 0x70);
        assert_eq!(control::N_CR3, 0xB0);
        assert_eq!(control::NEXT_RIP, 0xC8);
        // Table B-2 (state save area, offsets from 0x400).
        assert_eq!(save::EFER - SAVE_AREA, 0xD0);
        assert_eq!(save::CR4 - SAVE_AREA, 0x148);
        assert_eq!(save::RIP - SAVE_AREA, 0x178);
        assert_eq!(save::RSP - SAVE_AREA, 0x1D8);
        assert_eq!(save::RAX - SAVE_AREA, 0x1F8);
        assert_eq!(save::G_PAT - SAVE_AREA, 0x268);
        // CR4, CR3, CR0, DR7, DR6, RFLAGS, RIP are consecutive quadwords; so are STAR
        // through CR2.
        let run = [
            save::CR4,
            save::CR3,
            save::CR0,
            save::DR7,
            save::DR6,
            save::RFLAGS,
            save::RIP,
        ];
        assert!(run.windows(2).all(|w| w[1] == w[0] + 8));
        let run = [
            save::STAR,
            save::LSTAR,
            save::CSTAR,
            save::SFMASK,
            save::KERNEL_GS_BASE,
            save::SYSENTER_CS,
            save::SYSENTER_ESP,
            save::SYSENTER_EIP,
            save::CR2,
        ];
        assert!(run.windows(2).all(|w| w[1] == w[0] + 8));
    }

    #[test]
    fn intercept_bits_are_in_exit_code_order() {
        let vector3 = [
            (intercept3::INTR, exit_code::INTR),
            (intercept3::NMI, exit_code::NMI),
            (intercept3::SMI, exit_code::SMI),
            (intercept3::INIT, exit_code::INIT),
            (intercept3::CPUID, exit_code::CPUID),
            (intercept3::INVD, exit_code::INVD),
            (intercept3::HLT, exit_code::HLT),
            (intercept3::IOIO_PROT, exit_code::IOIO),
            (intercept3::MSR_PROT, exit_code::MSR),
            (intercept3::TASK_SWITCH, exit_code::TASK_SWITCH),
            (intercept3::SHUTDOWN, exit_code::SHUTDOWN),
        ];
        for (bit, code) in vector3 {
            assert_eq!(0x60 + u64::from(bit.trailing_zeros()), code, "{code:#x}");
        }
        let vector4 = [
            (intercept4::VMRUN, exit_code::VMRUN),
            (intercept4::VMMCALL, exit_code::VMMCALL),
            (intercept4::VMLOAD, exit_code::VMLOAD),
            (intercept4::VMSAVE, exit_code::VMSAVE),
            (intercept4::STGI, exit_code::STGI),
            (intercept4::CLGI, exit_code::CLGI),
            (intercept4::SKINIT, exit_code::SKINIT),
            (intercept4::XSETBV, exit_code::XSETBV),
        ];
        for (bit, code) in vector4 {
            assert_eq!(0x80 + u64::from(bit.trailing_zeros()), code, "{code:#x}");
        }
        assert_eq!(intercept4::SVM_INSTRUCTIONS, 0x7f);
    }

    #[test]
    fn encodings() {
        // #GP(0) and #UD.
        assert_eq!(event_inject(13, Some(0)), 0x8000_0B0D);
        assert_eq!(event_inject(6, None), 0x8000_0306);
        assert_eq!(event_inject(14, Some(2)) >> 32, 2);
        // `in al, 0x71`: IN, SZ8, A64, port 0x71; `rep outsw` to 0x3f8.
        let io = IoInfo::decode(0x0071_0000 | 1 | (1 << 4) | (1 << 9)).unwrap();
        assert_eq!(
            (io.input, io.size, io.port, io.string),
            (true, 1, 0x71, false)
        );
        let io = IoInfo::decode(0x03f8_0000 | (1 << 2) | (1 << 3) | (1 << 5)).unwrap();
        assert_eq!(
            (io.input, io.size, io.string, io.rep),
            (false, 2, true, true)
        );
        assert_eq!(IoInfo::decode(0x71_0000 | (3 << 4)), None);
        // A write to a present, read-only page, on the final address.
        let f = NptFault::decode((1 << 32) | 0b11);
        assert!(f.present && f.write && f.final_address && !f.fetch && !f.reserved);
        let v = f.as_ept_violation(quest_abi::ACCESS_READ);
        assert_eq!(
            (v.write, v.read, v.allowed),
            (true, false, quest_abi::ACCESS_READ)
        );
        assert_eq!(v.access_name(), "write");
        let f = NptFault::decode((1 << 33) | (1 << 4));
        assert!(!f.present && !f.final_address);
        assert_eq!(f.as_ept_violation(0).access_name(), "fetch");
        assert!(NptFault::decode(0).as_ept_violation(0).read);
        // 64-bit code (type 0xB, S, P, L, G): VT-x 0xA09B -> VMCB 0xA9B; unusable -> 0.
        assert_eq!(segment_attributes(0xA09B), 0xA9B);
        assert_eq!(segment_attributes(0xC093), 0xC93);
        assert_eq!(segment_attributes(1 << 16), 0);
    }
}
