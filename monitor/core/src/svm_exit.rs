//! SVM exits in backend-neutral terms: [`decode`] turns each #VMEXIT (AMD APM Vol. 2,
//! Appendix C) into the [`Exit`] the shared handlers take, and names the VMX basic exit
//! reason (Intel SDM Vol. 3, Table C-1) it is counted under, so the summary counts exits
//! under the same names on both backends.
//!
//! Only the guest's own SVM instructions have no VT-x counterpart (a VT-x guest's VMRUN
//! is #UD without an exit): they are counted as VMLAUNCH and get #UD, as VMX
//! instructions do.

use crate::exit::{basic, IoQualification, REASON_COUNT};
use crate::handlers::Exit;
use crate::vmcb::{exit_code as code, IoInfo, NptFault};

/// Exit codes 0x60..=0x8F (APM Table C-1) by the VMX basic exit reason they are counted
/// and handled as; the rest of that range Quest never intercepts.
const NAMED: [(u64, u16); 27] = [
    (code::INTR, basic::EXTERNAL_INTERRUPT),
    (code::NMI, basic::EXCEPTION_OR_NMI),
    (code::SMI, basic::OTHER_SMI),
    (code::INIT, basic::INIT),
    (0x6E, basic::RDTSC),
    (0x6F, basic::RDPMC),
    (code::CPUID, basic::CPUID),
    (0x73, basic::RSM),
    (code::INVD, basic::INVD),
    (0x77, basic::PAUSE),
    (code::HLT, basic::HLT),
    (0x79, basic::INVLPG),
    (code::IOIO, basic::IO),
    (code::MSR, basic::RDMSR),
    (code::TASK_SWITCH, basic::TASK_SWITCH),
    (code::SHUTDOWN, basic::TRIPLE_FAULT),
    (code::VMMCALL, basic::VMCALL),
    // The guest's own SVM instructions, as VMX instructions (#UD).
    (code::VMRUN, basic::VMLAUNCH),
    (code::VMLOAD, basic::VMLAUNCH),
    (code::VMSAVE, basic::VMLAUNCH),
    (code::STGI, basic::VMLAUNCH),
    (code::CLGI, basic::VMLAUNCH),
    (code::SKINIT, basic::VMLAUNCH),
    (0x87, basic::RDTSCP),
    (0x89, basic::WBINVD),
    (0x8A, basic::MONITOR),
    (code::XSETBV, basic::XSETBV),
];

/// No VMX name: [`NAMED`] as a table indexed by `code - 0x60`.
const NONE: u8 = u8::MAX;
const NAMES: [u8; 0x30] = {
    let mut t = [NONE; 0x30];
    let mut i = 0;
    while i < NAMED.len() {
        t[(NAMED[i].0 - 0x60) as usize] = NAMED[i].1 as u8;
        i += 1;
    }
    // MWAIT and conditional MWAIT.
    t[0x8B - 0x60] = basic::MWAIT as u8;
    t[0x8C - 0x60] = basic::MWAIT as u8;
    t
};

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
    let like = match exit_code {
        0x00..=0x1F => basic::CR_ACCESS,
        0x20..=0x3F => basic::DR_ACCESS,
        0x40..=0x5F => basic::EXCEPTION_OR_NMI,
        // EXITINFO1 bit 0: 0 = RDMSR, 1 = WRMSR (APM 15.11).
        code::MSR => basic::RDMSR + (info1 & 1) as u16,
        0x60..=0x8F => match NAMES[(exit_code - 0x60) as usize] {
            NONE => return (None, unexpected),
            n => u16::from(n),
        },
        code::NPF if NptFault::decode(info1).reserved => basic::EPT_MISCONFIG,
        code::NPF => basic::EPT_VIOLATION,
        // VMRUN refused the VMCB: VT-x's entry failure for invalid guest state.
        code::INVALID => {
            let reason = basic::INVALID_GUEST_STATE.into();
            return (None, Exit::EntryFailed { reason });
        }
        // Never intercepted: not counted, stopped by its own code.
        _ => return (None, unexpected),
    };
    let exit = match exit_code {
        0x40..=0x5F => Exit::Exception((exit_code - code::EXCP_BASE) as u8),
        code::NMI => Exit::Nmi,
        // A size SVM never reports: unexpected, by its own code.
        code::IOIO => {
            IoInfo::decode(info1).map_or(unexpected, |io| Exit::Io(io.as_qualification()))
        }
        code::NPF if like == basic::EPT_MISCONFIG => Exit::NestedMisconfig { gpa: info2 },
        // SVM does not report what the nested translation allowed.
        code::NPF => Exit::NestedPageFault {
            access: NptFault::decode(info1).as_ept_violation(0),
            gpa: info2,
        },
        // The rest carry no detail (a CR access would: SVM intercepts none).
        _ => Exit::plain(like),
    };
    debug_assert!((like as usize) < REASON_COUNT);
    (Some(like), exit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::{reason_name, ExitReason};

    fn name(exit_code: u64, info1: u64) -> &'static str {
        match decode(exit_code, info1, 0) {
            (Some(n), _) => reason_name(n as usize),
            other => panic!("{exit_code:#x} is {other:?}"),
        }
    }

    #[test]
    fn every_exit_quest_intercepts_gets_the_vt_x_name() {
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
        // The name is the VT-x exit of the same handler.
        let (Some(n), exit) = decode(code::VMMCALL, 0, 0) else {
            unreachable!()
        };
        assert_eq!(ExitReason::from_raw(u32::from(n)), ExitReason::Vmcall);
        assert_eq!(exit, crate::exit::from_vmx(u32::from(n), |_| 0));
    }

    #[test]
    fn every_code_is_named_or_refused_and_decoding_never_panics() {
        for c in (0..0x500).chain([u64::MAX - 1, u64::MAX]) {
            for info1 in [0, 1, u64::MAX] {
                match decode(c, info1, u64::MAX) {
                    (Some(n), _) => assert!((n as usize) < REASON_COUNT, "{c:#x}"),
                    (None, Exit::Unexpected(_) | Exit::EntryFailed { .. }) => {}
                    other => panic!("{c:#x}: {other:?}"),
                }
            }
        }
        assert_eq!(decode(0x8F, 0, 0), (None, Exit::Unexpected(0x8F)));
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
