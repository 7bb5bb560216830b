//! VM-exit reasons and exit-qualification decoders (Intel SDM Vol. 3, Appendix C "VMX
//! Basic Exit Reasons" and 28.2.1 "Basic VM-Exit Information"), and [`from_vmx`], which
//! turns a VT-x exit into the backend-neutral [`Exit`].

use crate::handlers::Exit;

/// Bit 31 of the exit-reason field: the VM entry failed.
pub const ENTRY_FAILURE: u32 = 1 << 31;
/// Number of basic exit reasons tracked (0..=77 in current SDMs).
pub const REASON_COUNT: usize = 78;

/// VMX basic exit reasons by name (SDM Table C-1), for decoders and counters.
pub mod basic {
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
    pub const VMLAUNCH: u16 = 20;
    pub const VMXON: u16 = 27;
    pub const CR_ACCESS: u16 = 28;
    pub const DR_ACCESS: u16 = 29;
    pub const IO: u16 = 30;
    pub const RDMSR: u16 = 31;
    pub const WRMSR: u16 = 32;
    pub const INVALID_GUEST_STATE: u16 = 33;
    pub const MWAIT: u16 = 36;
    pub const MONITOR: u16 = 39;
    pub const PAUSE: u16 = 40;
    pub const EPT_VIOLATION: u16 = 48;
    pub const EPT_MISCONFIG: u16 = 49;
    pub const INVEPT: u16 = 50;
    pub const RDTSCP: u16 = 51;
    pub const INVVPID: u16 = 53;
    pub const WBINVD: u16 = 54;
    pub const XSETBV: u16 = 55;
}

/// Basic exit reasons the monitor tells apart (SDM Table C-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// 0: exception or NMI (interruption info says which).
    ExceptionOrNmi,
    /// 1: external interrupt (not expected: external-interrupt exiting is off).
    ExternalInterrupt,
    /// 2: triple fault.
    TripleFault,
    /// 3: INIT signal.
    Init,
    /// 4: start-up IPI.
    Sipi,
    /// 9: task switch.
    TaskSwitch,
    /// 10: CPUID.
    Cpuid,
    /// 12: HLT.
    Hlt,
    /// 13: INVD.
    Invd,
    /// 18: VMCALL.
    Vmcall,
    /// 19-27, 50, 53: another VMX instruction in the guest.
    VmxInstruction,
    /// 28: control-register access.
    CrAccess,
    /// 30: I/O instruction.
    Io,
    /// 31: RDMSR.
    Rdmsr,
    /// 32: WRMSR.
    Wrmsr,
    /// 33: VM-entry failure due to invalid guest state.
    InvalidGuestState,
    /// 34: VM-entry failure due to MSR loading.
    MsrLoading,
    /// 48: EPT violation.
    EptViolation,
    /// 49: EPT misconfiguration.
    EptMisconfig,
    /// 52: VMX-preemption timer expired.
    PreemptionTimer,
    /// 55: XSETBV.
    Xsetbv,
    /// Anything else, by number.
    Other(u16),
}

impl ExitReason {
    /// Decodes the low 16 bits of the exit-reason field.
    pub fn from_raw(raw: u32) -> Self {
        let basic = (raw & 0xffff) as u16;
        match basic {
            0 => Self::ExceptionOrNmi,
            1 => Self::ExternalInterrupt,
            2 => Self::TripleFault,
            3 => Self::Init,
            4 => Self::Sipi,
            9 => Self::TaskSwitch,
            10 => Self::Cpuid,
            12 => Self::Hlt,
            13 => Self::Invd,
            18 => Self::Vmcall,
            19..=27 | 50 | 53 => Self::VmxInstruction,
            28 => Self::CrAccess,
            30 => Self::Io,
            31 => Self::Rdmsr,
            32 => Self::Wrmsr,
            33 => Self::InvalidGuestState,
            34 => Self::MsrLoading,
            48 => Self::EptViolation,
            49 => Self::EptMisconfig,
            52 => Self::PreemptionTimer,
            55 => Self::Xsetbv,
            other => Self::Other(other),
        }
    }
}

/// Short name of basic exit reason `n` for reports (SDM Table C-1).
pub fn reason_name(n: usize) -> &'static str {
    const NAMES: [&str; REASON_COUNT] = [
        "exception/nmi",
        "external-interrupt",
        "triple-fault",
        "init",
        "sipi",
        "io-smi",
        "other-smi",
        "interrupt-window",
        "nmi-window",
        "task-switch",
        "cpuid",
        "getsec",
        "hlt",
        "invd",
        "invlpg",
        "rdpmc",
        "rdtsc",
        "rsm",
        "vmcall",
        "vmclear",
        "vmlaunch",
        "vmptrld",
        "vmptrst",
        "vmread",
        "vmresume",
        "vmwrite",
        "vmxoff",
        "vmxon",
        "cr-access",
        "dr-access",
        "io",
        "rdmsr",
        "wrmsr",
        "invalid-guest-state",
        "msr-loading",
        "reserved-35",
        "mwait",
        "mtf",
        "reserved-38",
        "monitor",
        "pause",
        "machine-check",
        "reserved-42",
        "tpr-below-threshold",
        "apic-access",
        "virtualized-eoi",
        "gdtr/idtr",
        "ldtr/tr",
        "ept-violation",
        "ept-misconfig",
        "invept",
        "rdtscp",
        "preemption-timer",
        "invvpid",
        "wbinvd",
        "xsetbv",
        "apic-write",
        "rdrand",
        "invpcid",
        "vmfunc",
        "encls",
        "rdseed",
        "pml-full",
        "xsaves",
        "xrstors",
        "pconfig",
        "spp",
        "umwait",
        "tpause",
        "loadiwkey",
        "enclv",
        "reserved-71",
        "enqcmd-pasid",
        "enqcmds-pasid",
        "bus-lock",
        "instruction-timeout",
        "seamcall",
        "tdcall",
    ];
    NAMES.get(n).copied().unwrap_or("unknown")
}

/// Exit qualification of an I/O instruction (SDM Table 28-5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoQualification {
    /// Access size in bytes (1, 2 or 4).
    pub size: u8,
    /// `in` (true) or `out` (false).
    pub input: bool,
    /// A string instruction (`ins`/`outs`).
    pub string: bool,
    /// Has a `rep` prefix.
    pub rep: bool,
    /// The port.
    pub port: u16,
}

impl IoQualification {
    /// Decodes the qualification; `None` for a size encoding the SDM does not define.
    pub fn decode(q: u64) -> Option<Self> {
        let size = match q & 7 {
            0 => 1,
            1 => 2,
            3 => 4,
            _ => return None,
        };
        Some(Self {
            size,
            input: q & (1 << 3) != 0,
            string: q & (1 << 4) != 0,
            rep: q & (1 << 5) != 0,
            port: (q >> 16) as u16,
        })
    }
}

/// Exit qualification of an EPT violation (SDM Table 28-7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EptViolation {
    /// The access was a data read.
    pub read: bool,
    /// The access was a data write.
    pub write: bool,
    /// The access was an instruction fetch.
    pub fetch: bool,
    /// The `ACCESS_*` permissions the translation allowed (0: not mapped).
    pub allowed: u32,
    /// The guest-linear address field is valid.
    pub linear_valid: bool,
}

impl EptViolation {
    /// Decodes the qualification.
    pub fn decode(q: u64) -> Self {
        Self {
            read: q & 1 != 0,
            write: q & 2 != 0,
            fetch: q & 4 != 0,
            allowed: ((q >> 3) & 7) as u32,
            linear_valid: q & (1 << 7) != 0,
        }
    }

    /// One word for reports: "write", "read" or "fetch".
    pub fn access_name(&self) -> &'static str {
        if self.write {
            "write"
        } else if self.fetch {
            "fetch"
        } else {
            "read"
        }
    }
}

/// Kind of a control-register access (SDM Table 28-3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrAccessKind {
    /// `mov crN, reg`.
    MovToCr,
    /// `mov reg, crN`.
    MovFromCr,
    /// `clts`.
    Clts,
    /// `lmsw` with its 16-bit source value.
    Lmsw(u16),
}

/// Exit qualification of a control-register access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrAccess {
    /// Control register number (0, 3, 4 or 8).
    pub cr: u8,
    /// What the instruction did.
    pub kind: CrAccessKind,
    /// General-purpose register operand (0 = RAX ... 15 = R15).
    pub gpr: u8,
}

impl CrAccess {
    /// Decodes the qualification.
    pub fn decode(q: u64) -> Self {
        let kind = match (q >> 4) & 3 {
            0 => CrAccessKind::MovToCr,
            1 => CrAccessKind::MovFromCr,
            2 => CrAccessKind::Clts,
            _ => CrAccessKind::Lmsw((q >> 16) as u16),
        };
        Self {
            cr: (q & 0xf) as u8,
            kind,
            gpr: ((q >> 8) & 0xf) as u8,
        }
    }
}

/// Interruption information (exit and IDT-vectoring; SDM Table 25-17/28-?).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterruptionInfo {
    /// Vector.
    pub vector: u8,
    /// Type: 0 external, 2 NMI, 3 hardware exception, 4 software interrupt, 6 software
    /// exception.
    pub kind: u8,
    /// An error code was pushed.
    pub error_code: bool,
    /// The field is valid.
    pub valid: bool,
}

/// Interruption type "NMI".
pub const INTERRUPTION_NMI: u8 = 2;
/// Interruption type "hardware exception".
pub const INTERRUPTION_HW_EXCEPTION: u8 = 3;

impl InterruptionInfo {
    /// Decodes the field.
    pub fn decode(v: u32) -> Self {
        Self {
            vector: v as u8,
            kind: ((v >> 8) & 7) as u8,
            error_code: v & (1 << 11) != 0,
            valid: v & (1 << 31) != 0,
        }
    }

    /// The VM-entry interruption-information value injecting hardware exception
    /// `vector` (with an error code when `error_code`).
    pub fn inject_exception(vector: u8, error_code: bool) -> u32 {
        (1 << 31)
            | (u32::from(INTERRUPTION_HW_EXCEPTION) << 8)
            | (u32::from(error_code) << 11)
            | u32::from(vector)
    }
}

/// An event whose delivery a VM exit interrupted, to be injected again at the next VM
/// entry (SDM Vol. 3, "Information for VM Exits During Event Delivery" and "Reinjection
/// of Events"): otherwise a guest interrupt or exception that was being delivered when,
/// say, the monitor's NMI took the core is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reinjection {
    /// The VM-entry interruption-information value.
    pub info: u32,
    /// Copy the IDT-vectoring error code to the VM-entry exception error code.
    pub error_code: bool,
    /// Copy the VM-exit instruction length to the VM-entry instruction length (software
    /// interrupts and exceptions, which are delivered again from their instruction).
    pub instruction_length: bool,
}

/// The reinjection an IDT-vectoring information value asks for (`None`: no event was
/// being delivered, or an NMI, which the monitor never gives its guests).
pub fn reinjection(idt_vectoring: u32) -> Option<Reinjection> {
    let event = InterruptionInfo::decode(idt_vectoring);
    if !event.valid || event.kind == INTERRUPTION_NMI {
        return None;
    }
    Some(Reinjection {
        // Bit 12 (NMI unblocking due to IRET) is reserved in the entry field; bits 30:12
        // must be zero there.
        info: idt_vectoring & !(0x7FFF_F000),
        error_code: event.error_code,
        instruction_length: matches!(event.kind, 4..=6),
    })
}

/// A VT-x exit detail [`from_vmx`] may need besides the exit reason (each a VMCS field
/// the backend reads only when asked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmxDetail {
    /// The exit qualification.
    Qualification,
    /// The guest-physical address (EPT violations and misconfigurations).
    GuestPhysical,
    /// The VM-exit interruption information.
    InterruptionInfo,
}

/// The backend-neutral exit for VT-x exit-reason field `raw`; `detail` reads the VMCS
/// fields a decoding needs.
pub fn from_vmx(raw: u32, mut detail: impl FnMut(VmxDetail) -> u64) -> Exit {
    if raw & ENTRY_FAILURE != 0 {
        return Exit::EntryFailed {
            reason: raw & 0xffff,
        };
    }
    let mut qualification = || detail(VmxDetail::Qualification);
    match raw as u16 {
        basic::EXCEPTION_OR_NMI => {
            let info = InterruptionInfo::decode(detail(VmxDetail::InterruptionInfo) as u32);
            if info.valid && info.kind == INTERRUPTION_NMI {
                Exit::Nmi
            } else {
                Exit::Exception(info.vector)
            }
        }
        // An undefined size encoding: the exit is not one the SDM describes.
        basic::IO => IoQualification::decode(qualification())
            .map_or(Exit::Unexpected(basic::IO.into()), Exit::Io),
        basic::CR_ACCESS => Exit::CrAccess(CrAccess::decode(qualification())),
        basic::EPT_VIOLATION => Exit::NestedPageFault {
            access: EptViolation::decode(qualification()),
            gpa: detail(VmxDetail::GuestPhysical),
        },
        basic::EPT_MISCONFIG => Exit::NestedMisconfig {
            gpa: detail(VmxDetail::GuestPhysical),
        },
        reason => Exit::plain(reason),
    }
}

/// Text for the VM-instruction error number (SDM 31.4, Table 31-1).
pub fn instruction_error_name(n: u32) -> &'static str {
    match n {
        1 => "VMCALL executed in VMX root operation",
        2 => "VMCLEAR with invalid physical address",
        3 => "VMCLEAR with VMXON pointer",
        4 => "VMLAUNCH with non-clear VMCS",
        5 => "VMRESUME with non-launched VMCS",
        6 => "VMRESUME after VMXOFF",
        7 => "VM entry with invalid control field(s)",
        8 => "VM entry with invalid host-state field(s)",
        9 => "VMPTRLD with invalid physical address",
        10 => "VMPTRLD with VMXON pointer",
        11 => "VMPTRLD with incorrect VMCS revision identifier",
        12 => "VMREAD/VMWRITE from/to unsupported VMCS component",
        13 => "VMWRITE to read-only VMCS component",
        15 => "VMXON executed in VMX root operation",
        16 => "VM entry with invalid executive-VMCS pointer",
        17 => "VM entry with non-launched executive VMCS",
        18 => "VM entry with executive-VMCS pointer not VMXON pointer",
        26 => "VM entry with events blocked by MOV SS",
        28 => "invalid operand to INVEPT/INVVPID",
        _ => "unknown VM-instruction error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupted_deliveries_are_injected_again() {
        assert_eq!(reinjection(0), None, "nothing was being delivered");
        assert_eq!(reinjection(0x8000_0202), None, "an NMI: never the guest's");
        // External interrupt 0x30, with bit 12 set: cleared for the entry.
        assert_eq!(
            reinjection(0x8000_1030),
            Some(Reinjection {
                info: 0x8000_0030,
                error_code: false,
                instruction_length: false
            })
        );
        // #PF (hardware exception 14) with its error code.
        assert_eq!(
            reinjection(0x8000_0B0E),
            Some(Reinjection {
                info: 0x8000_0B0E,
                error_code: true,
                instruction_length: false
            })
        );
        // INT3 (software exception) and INT n (software interrupt) restart from their
        // instruction.
        for info in [0x8000_0603, 0x8000_0480] {
            assert!(reinjection(info).is_some_and(|r| r.instruction_length && r.info == info));
        }
    }

    #[test]
    fn reasons_decode() {
        assert_eq!(ExitReason::from_raw(48), ExitReason::EptViolation);
        assert_eq!(ExitReason::from_raw(30), ExitReason::Io);
        assert_eq!(
            ExitReason::from_raw(ENTRY_FAILURE | 33),
            ExitReason::InvalidGuestState
        );
        assert_eq!(
            ExitReason::from_raw(0x1_0012),
            ExitReason::Vmcall,
            "high bits ignored"
        );
        assert_eq!(ExitReason::from_raw(24), ExitReason::VmxInstruction);
        assert_eq!(ExitReason::from_raw(54), ExitReason::Other(54));
        assert_eq!(reason_name(48), "ept-violation");
        assert_eq!(reason_name(55), "xsetbv");
        assert_eq!(reason_name(18), "vmcall");
        assert_eq!(reason_name(500), "unknown");
    }

    #[test]
    fn io_qualification() {
        // out dx, eax to 0x880: size 4 (3), out, port in 31:16.
        let q = IoQualification::decode(0x0880_0003).unwrap();
        assert_eq!(
            (q.size, q.input, q.string, q.rep, q.port),
            (4, false, false, false, 0x880)
        );
        // rep insb from 0x1f0.
        let q = IoQualification::decode(0x01f0_0038).unwrap();
        assert_eq!(
            (q.size, q.input, q.string, q.rep, q.port),
            (1, true, true, true, 0x1f0)
        );
        assert!(IoQualification::decode(2).is_none());
    }

    #[test]
    fn ept_violation_qualification() {
        // Write to a read-only page, linear address valid.
        let v = EptViolation::decode(0b1000_1010);
        assert!(v.write && !v.read && !v.fetch && v.linear_valid);
        assert_eq!(v.allowed, 1);
        assert_eq!(v.access_name(), "write");
        let v = EptViolation::decode(0b100);
        assert_eq!((v.access_name(), v.allowed), ("fetch", 0));
    }

    #[test]
    fn cr_access_qualification() {
        // mov cr4, rbx.
        let c = CrAccess::decode(0x0304);
        assert_eq!((c.cr, c.kind, c.gpr), (4, CrAccessKind::MovToCr, 3));
        // lmsw with 0x1.
        let c = CrAccess::decode(0x0001_0030);
        assert_eq!(c.kind, CrAccessKind::Lmsw(1));
        assert_eq!(CrAccess::decode(0x20).kind, CrAccessKind::Clts);
        assert_eq!(CrAccess::decode(0xf13).kind, CrAccessKind::MovFromCr);
        assert_eq!(CrAccess::decode(0xf13).gpr, 15);
    }

    #[test]
    fn interruption_info() {
        let nmi = InterruptionInfo::decode(0x8000_0202);
        assert_eq!(
            (nmi.vector, nmi.kind, nmi.valid),
            (2, INTERRUPTION_NMI, true)
        );
        let gp = InterruptionInfo::inject_exception(13, true);
        assert_eq!(gp, 0x8000_0b0d);
        let d = InterruptionInfo::decode(gp);
        assert!(d.error_code && d.valid && d.kind == INTERRUPTION_HW_EXCEPTION);
    }

    #[test]
    fn vmx_exits_decode_to_the_neutral_form_reading_only_what_they_need() {
        let none = |d: VmxDetail| -> u64 { panic!("{d:?} read") };
        assert_eq!(from_vmx(10, none), Exit::Cpuid);
        assert_eq!(from_vmx(12, none), Exit::Hlt);
        assert_eq!(from_vmx(18, none), Exit::Hypercall);
        assert_eq!(from_vmx(31, none), Exit::MsrRead);
        assert_eq!(from_vmx(32, none), Exit::MsrWrite);
        assert_eq!(from_vmx(55, none), Exit::Xsetbv);
        assert_eq!(from_vmx(2, none), Exit::Shutdown);
        for vmx_instruction in [19, 20, 24, 27, 50, 53] {
            assert_eq!(
                from_vmx(vmx_instruction, none),
                Exit::VirtualizationInstruction
            );
        }
        assert_eq!(
            from_vmx(ENTRY_FAILURE | 33, none),
            Exit::EntryFailed { reason: 33 }
        );
        assert_eq!(from_vmx(3, none), Exit::Unexpected(3), "INIT");
        assert_eq!(from_vmx(0x1_000d, none), Exit::Unexpected(13), "INVD");
        let q = |value: u64| {
            move |d: VmxDetail| match d {
                VmxDetail::Qualification => value,
                VmxDetail::GuestPhysical => 0xfee0_0000,
                VmxDetail::InterruptionInfo => 0x8000_0202,
            }
        };
        assert_eq!(
            from_vmx(30, q(0x0880_0003)),
            Exit::Io(IoQualification::decode(0x0880_0003).unwrap())
        );
        assert_eq!(from_vmx(30, q(2)), Exit::Unexpected(30), "bad size");
        assert_eq!(
            from_vmx(28, q(0x0304)),
            Exit::CrAccess(CrAccess::decode(0x0304))
        );
        assert_eq!(
            from_vmx(48, q(0b10)),
            Exit::NestedPageFault {
                access: EptViolation::decode(0b10),
                gpa: 0xfee0_0000
            }
        );
        assert_eq!(
            from_vmx(49, q(0)),
            Exit::NestedMisconfig { gpa: 0xfee0_0000 }
        );
        assert_eq!(from_vmx(0, q(0)), Exit::Nmi);
        let page_fault = |_: VmxDetail| 0x8000_0b0e;
        assert_eq!(from_vmx(0, page_fault), Exit::Exception(14));
    }
}
