//! SVM exits in backend-neutral terms: [`decode`] turns each #VMEXIT (AMD APM Vol. 2,
//! Appendix C) into the [`Exit`] the shared handlers take, and names the VMX basic exit
//! reason (Intel SDM Vol. 3, Table C-1) it is counted under, so the summary counts exits
//! under the same names on both backends ([`classify`]).
//!
//! Only the guest's own SVM instructions have no VT-x counterpart (a VT-x guest's VMRUN
//! is #UD without an exit): they are counted as VMLAUNCH and get #UD, as VMX
//! instructions do.

use crate::exit::{IoQualification, REASON_COUNT};
use crate::handlers::Exit;
use crate::vmcb::{exit_code as code, IoInfo, NptFault};

/// How the backend-neutral side handles one #VMEXIT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SvmExit {
    /// Handled and counted as VMX basic exit reason `n` ([`crate::exit::reason_name`]).
    Like(u16),
    /// A guest SVM instruction other than VMMCALL (VMRUN, VMLOAD, VMSAVE, STGI, CLGI,
    /// SKINIT): undefined in a sandbox; inject #UD.
    SvmInstruction,
    /// VMRUN refused the VMCB (EXITCODE -1): VT-x's entry failure for invalid guest
    /// state (basic reason 33 with the entry-failure bit).
    InvalidState,
    /// Anything the backend does not intercept, by exit code.
    Unexpected(u64),
}

/// VMX basic exit reasons used below (SDM Table C-1).
mod vmx {
    pub const EXCEPTION_OR_NMI: u16 = 0;
    pub const EXTERNAL_INTERRUPT: u16 = 1;
    pub const TRIPLE_FAULT: u16 = 2;
    pub const INIT: u16 = 3;
    pub const OTHER_SMI: u16 = 6;
    pub const TASK_SWITCH: u16 = 9;
    pub const CPUID: u16 = 10;
    pub const HLT: u16 = 12;
    pub const INVD: u16 = 13;
    pub const INVLPG: u16 = 14;
    pub const RDPMC: u16 = 15;
    pub const RDTSC: u16 = 16;
    pub const RSM: u16 = 17;
    pub const VMCALL: u16 = 18;
    pub const CR_ACCESS: u16 = 28;
    pub const DR_ACCESS: u16 = 29;
    pub const IO: u16 = 30;
    pub const RDMSR: u16 = 31;
    pub const WRMSR: u16 = 32;
    pub const MWAIT: u16 = 36;
    pub const MONITOR: u16 = 39;
    pub const PAUSE: u16 = 40;
    pub const EPT_VIOLATION: u16 = 48;
    pub const EPT_MISCONFIG: u16 = 49;
    pub const VMLAUNCH: u16 = 20;
    pub const INVALID_GUEST_STATE: u32 = 33;
    pub const RDTSCP: u16 = 51;
    pub const WBINVD: u16 = 54;
    pub const XSETBV: u16 = 55;
}

/// Classifies #VMEXIT `exit_code` with its EXITINFO1 (which tells RDMSR from WRMSR and a
/// nested-table misconfiguration from a violation).
pub fn classify(exit_code: u64, info1: u64) -> SvmExit {
    let like = match exit_code {
        0x00..=0x1F => vmx::CR_ACCESS,
        0x20..=0x3F => vmx::DR_ACCESS,
        0x40..=0x5F | code::NMI => vmx::EXCEPTION_OR_NMI,
        code::INTR => vmx::EXTERNAL_INTERRUPT,
        code::SMI => vmx::OTHER_SMI,
        code::INIT => vmx::INIT,
        0x6E => vmx::RDTSC,
        0x6F => vmx::RDPMC,
        code::CPUID => vmx::CPUID,
        0x73 => vmx::RSM,
        code::INVD => vmx::INVD,
        0x77 => vmx::PAUSE,
        code::HLT => vmx::HLT,
        0x79 => vmx::INVLPG,
        code::IOIO => vmx::IO,
        // EXITINFO1 bit 0: 0 = RDMSR, 1 = WRMSR (APM 15.11).
        code::MSR if info1 & 1 == 0 => vmx::RDMSR,
        code::MSR => vmx::WRMSR,
        code::TASK_SWITCH => vmx::TASK_SWITCH,
        code::SHUTDOWN => vmx::TRIPLE_FAULT,
        code::VMMCALL => vmx::VMCALL,
        code::VMRUN | code::VMLOAD | code::VMSAVE | code::STGI | code::CLGI | code::SKINIT => {
            return SvmExit::SvmInstruction
        }
        0x87 => vmx::RDTSCP,
        0x89 => vmx::WBINVD,
        0x8A => vmx::MONITOR,
        0x8B | 0x8C => vmx::MWAIT,
        code::XSETBV => vmx::XSETBV,
        code::NPF if NptFault::decode(info1).reserved => vmx::EPT_MISCONFIG,
        code::NPF => vmx::EPT_VIOLATION,
        code::INVALID => return SvmExit::InvalidState,
        other => return SvmExit::Unexpected(other),
    };
    debug_assert!((like as usize) < REASON_COUNT);
    SvmExit::Like(like)
}

impl IoInfo {
    /// The same access as VT-x's exit qualification describes it.
    pub fn as_qualification(&self) -> IoQualification {
        IoQualification {
            size: self.size,
            input: self.input,
            string: self.string,
            rep: self.rep,
            port: self.port,
        }
    }
}

/// #VMEXIT `exit_code` with its EXITINFO1 and EXITINFO2 as the shared handlers take it,
/// and the VMX basic exit reason it is counted under (`None`: not counted).
pub fn decode(exit_code: u64, info1: u64, info2: u64) -> (Option<u16>, Exit) {
    let unexpected = Exit::Unexpected((exit_code & 0xffff) as u32);
    let like = match classify(exit_code, info1) {
        SvmExit::Like(n) => n,
        SvmExit::SvmInstruction => return (Some(vmx::VMLAUNCH), Exit::VirtualizationInstruction),
        // VMRUN refused the VMCB: VT-x's entry failure for invalid guest state.
        SvmExit::InvalidState => {
            return (
                None,
                Exit::EntryFailed {
                    reason: vmx::INVALID_GUEST_STATE,
                },
            )
        }
        SvmExit::Unexpected(_) => return (None, unexpected),
    };
    let exit = match exit_code {
        code::IOIO => {
            IoInfo::decode(info1).map_or(unexpected, |io| Exit::Io(io.as_qualification()))
        }
        code::NPF => {
            let fault = NptFault::decode(info1);
            if fault.reserved {
                Exit::NestedMisconfig { gpa: info2 }
            } else {
                // SVM does not report what the nested translation allowed.
                Exit::NestedPageFault {
                    access: fault.as_ept_violation(0),
                    gpa: info2,
                }
            }
        }
        code::NMI => Exit::Nmi,
        c if (code::EXCP_BASE..code::EXCP_BASE + 32).contains(&c) => {
            Exit::Exception((c - code::EXCP_BASE) as u8)
        }
        code::CPUID => Exit::Cpuid,
        code::HLT => Exit::Hlt,
        code::VMMCALL => Exit::Hypercall,
        code::MSR if like == vmx::RDMSR => Exit::MsrRead,
        code::MSR => Exit::MsrWrite,
        code::XSETBV => Exit::Xsetbv,
        code::SHUTDOWN => Exit::Shutdown,
        // Intercepted or not, nothing else has a handler: by its VT-x name.
        _ => Exit::Unexpected(u32::from(like)),
    };
    (Some(like), exit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::{reason_name, ExitReason};

    fn name(exit_code: u64, info1: u64) -> &'static str {
        match classify(exit_code, info1) {
            SvmExit::Like(n) => reason_name(n as usize),
            other => panic!("{exit_code:#x} is {other:?}"),
        }
    }

    #[test]
    fn every_exit_quest_intercepts_gets_the_vt_x_name_and_handler() {
        assert_eq!(name(code::VMMCALL, 0), "vmcall");
        assert_eq!(name(code::CPUID, 0), "cpuid");
        assert_eq!(name(code::HLT, 0), "hlt");
        assert_eq!(name(code::INVD, 0), "invd");
        assert_eq!(name(code::IOIO, 0x3f8_0010), "io");
        assert_eq!(name(code::MSR, 0), "rdmsr");
        assert_eq!(name(code::MSR, 1), "wrmsr");
        assert_eq!(name(code::XSETBV, 0), "xsetbv");
        assert_eq!(name(code::NMI, 0), "exception/nmi");
        assert_eq!(name(code::EXCP_BASE + 14, 0), "exception/nmi");
        assert_eq!(name(code::SHUTDOWN, 0), "triple-fault");
        assert_eq!(name(code::TASK_SWITCH, 0), "task-switch");
        assert_eq!(name(code::INTR, 0), "external-interrupt");
        assert_eq!(name(code::NPF, 0b110), "ept-violation");
        assert_eq!(name(code::NPF, 0b1001), "ept-misconfig", "reserved bit");
        assert_eq!(name(0x10, 0), "cr-access", "a CR0 write");
        // The handler dispatch is the VT-x one.
        let SvmExit::Like(n) = classify(code::VMMCALL, 0) else {
            unreachable!()
        };
        assert_eq!(ExitReason::from_raw(u32::from(n)), ExitReason::Vmcall);
    }

    #[test]
    fn guest_svm_instructions_and_failures_are_told_apart() {
        for c in [
            code::VMRUN,
            code::VMLOAD,
            code::VMSAVE,
            code::STGI,
            code::CLGI,
            code::SKINIT,
        ] {
            assert_eq!(classify(c, 0), SvmExit::SvmInstruction, "{c:#x}");
        }
        assert_eq!(classify(code::INVALID, 0), SvmExit::InvalidState);
        assert_eq!(classify(0x401, 0), SvmExit::Unexpected(0x401));
        assert_eq!(classify(0x8F, 0), SvmExit::Unexpected(0x8F));
        // Every code maps to a reason the summary can name.
        for c in (0..0x500).chain([u64::MAX - 1, u64::MAX]) {
            if let SvmExit::Like(n) = classify(c, 0) {
                assert!((n as usize) < REASON_COUNT, "{c:#x}");
            }
        }
    }

    #[test]
    fn io_and_npf_details_convert_to_the_vt_x_forms() {
        // `out dx, ax` to 0x3f8: SZ16, A64.
        let io = IoInfo::decode(0x03f8_0000 | (1 << 5) | (1 << 9)).expect("valid");
        let q = io.as_qualification();
        assert_eq!(
            (q.size, q.input, q.port, q.string),
            (2, false, 0x3f8, false)
        );
        // The VT-x qualification of the same access decodes to the same value.
        assert_eq!(IoQualification::decode(0x03f8_0001), Some(q));
    }

    #[test]
    fn exits_decode_to_the_neutral_form_with_their_counted_name() {
        let exit = |c: u64, info1: u64, info2: u64| decode(c, info1, info2);
        let counted = |c: u64, info1: u64| decode(c, info1, 0).0.map(|n| reason_name(n.into()));
        assert_eq!(exit(code::CPUID, 0, 0), (Some(10), Exit::Cpuid));
        assert_eq!(exit(code::VMMCALL, 0, 0).1, Exit::Hypercall);
        assert_eq!(exit(code::HLT, 0, 0).1, Exit::Hlt);
        assert_eq!(exit(code::MSR, 0, 0).1, Exit::MsrRead);
        assert_eq!(exit(code::MSR, 1, 0).1, Exit::MsrWrite);
        assert_eq!(exit(code::XSETBV, 0, 0).1, Exit::Xsetbv);
        assert_eq!(exit(code::SHUTDOWN, 0, 0), (Some(2), Exit::Shutdown));
        assert_eq!(exit(code::NMI, 0, 0), (Some(0), Exit::Nmi));
        assert_eq!(
            exit(code::EXCP_BASE + 14, 0, 0),
            (Some(0), Exit::Exception(14))
        );
        // `out dx, ax` to 0x3f8; an IOIO with a size SVM never reports is unexpected.
        let io = IoInfo::decode(0x03f8_0000 | (1 << 5) | (1 << 9)).expect("valid");
        assert_eq!(
            exit(code::IOIO, 0x03f8_0000 | (1 << 5) | (1 << 9), 0).1,
            Exit::Io(io.as_qualification())
        );
        assert_eq!(exit(code::IOIO, 0, 0), (Some(30), Exit::Unexpected(0x7B)));
        // A write to a read-only page; a reserved bit in a nested entry.
        assert_eq!(
            exit(code::NPF, (1 << 32) | 0b111, 0x1234_5000),
            (
                Some(48),
                Exit::NestedPageFault {
                    access: NptFault::decode((1 << 32) | 0b111).as_ept_violation(0),
                    gpa: 0x1234_5000
                }
            )
        );
        assert_eq!(
            exit(code::NPF, 0b1001, 0x1000),
            (Some(49), Exit::NestedMisconfig { gpa: 0x1000 })
        );
        // Guest SVM instructions: #UD, counted as VMLAUNCH.
        for c in [
            code::VMRUN,
            code::VMLOAD,
            code::VMSAVE,
            code::STGI,
            code::CLGI,
            code::SKINIT,
        ] {
            assert_eq!(exit(c, 0, 0).1, Exit::VirtualizationInstruction);
            assert_eq!(counted(c, 0), Some("vmlaunch"));
        }
        assert_eq!(
            exit(code::INVALID, 0, 0),
            (None, Exit::EntryFailed { reason: 33 })
        );
        // Intercepted without a handler: stopped under the VT-x name.
        assert_eq!(exit(code::INIT, 0, 0), (Some(3), Exit::Unexpected(3)));
        assert_eq!(exit(code::INVD, 0, 0), (Some(13), Exit::Unexpected(13)));
        assert_eq!(
            exit(code::TASK_SWITCH, 0, 0),
            (Some(9), Exit::Unexpected(9))
        );
        assert_eq!(
            exit(0x10, 0, 0),
            (Some(28), Exit::Unexpected(28)),
            "CR0 write"
        );
        // Never intercepted: stopped under its own exit code, not counted.
        assert_eq!(exit(0x401, 0, 0), (None, Exit::Unexpected(0x401)));
    }
}
