//! What CPUID tells a sandbox: the host's answer, filtered (Intel SDM Vol. 2A, CPUID).
//!
//! - Leaf 1: VMX and SMX cleared (no nested virtualisation), hypervisor bit set, the
//!   initial APIC ID and logical-processor count describe the sandbox's vCPUs. x2APIC,
//!   TSC-deadline, XSAVE, RDRAND stay visible. MONITOR/MWAIT stay visible on VT-x (MWAIT
//!   does not exit; a Hermit core idles in it, and the booted tests pass in Bochs). On SVM
//!   they are hidden (leaf 1 ECX bit 3, leaf 5), as KVM hides them: Hermit 0.11 wakes a
//!   core idling in MWAIT with no IPI and no store to the line it monitors, so there (Bochs'
//!   ryzen) vCPU 1 slept until the next monitor NMI; with MWAIT hidden Hermit halts (HLT
//!   does not exit) and wakes its cores with vector-121 IPIs through the checked ICR path.
//!   A guest that runs MWAIT anyway on SVM gets it returned at once (intercepted).
//! - Leaves 0xB/0x1F: the x2APIC ID is the virtual one (the vCPU index).
//! - Leaf 0xA: no architectural PMU (its MSRs are trapped).
//! - Leaves 0x15 and 0x16: the TSC frequency the monitor measured, not the model's
//!   nominal one (Bochs reports 3.5 GHz for a TSC that runs at its `ips`). Guests such as
//!   Hermit read these before anything the monitor patches in, so they must agree with it:
//!   0x15 as crystal 1 kHz x `tsc_khz` / 1, 0x16 as base = maximum = `tsc_khz` in MHz,
//!   rounded to the nearest.
//! - Leaves 0x4000_0000..: the Quest signature `QuestMonitor`, and leaf 0x4000_0010 with
//!   the TSC frequency in kHz (the convention Hermit and Linux read).
//!   Invariant TSC (0x8000_0007 EDX bit 8) is passed as the host reports it.

/// Highest hypervisor leaf answered.
pub const HYPERVISOR_MAX_LEAF: u32 = 0x4000_0010;
/// The hypervisor signature in EBX, ECX, EDX of leaf 0x4000_0000.
pub const SIGNATURE: &[u8; 12] = b"QuestMonitor";

/// What the filter needs to know about the asking vCPU.
#[derive(Clone, Copy, Debug)]
pub struct CpuidContext {
    /// Index of the vCPU in its sandbox (its virtual APIC ID).
    pub vcpu_index: u32,
    /// Number of vCPUs of the sandbox.
    pub vcpu_count: u32,
    /// TSC frequency in kHz.
    pub tsc_khz: u32,
    /// The monitor emulates the x2APIC over the host's xAPIC
    /// ([`crate::x2apic_emulation`]): leaf 1 reports x2APIC although the host has none.
    pub x2apic_emulated: bool,
    /// The backend lets a guest's MWAIT sleep (VT-x); when false (SVM) MONITOR/MWAIT are
    /// hidden (leaf 1 ECX bit 3, leaf 5), as KVM does, so a guest idles with HLT instead.
    pub mwait: bool,
}

/// CPUID result registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CpuidRegs {
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

const ECX_MONITOR: u32 = 1 << 3;
const ECX_VMX: u32 = 1 << 5;
const ECX_SMX: u32 = 1 << 6;
const ECX_HYPERVISOR: u32 = 1 << 31;

/// Whether `leaf` is answered by the monitor itself (no need to run the host CPUID).
pub fn is_hypervisor_leaf(leaf: u32) -> bool {
    (0x4000_0000..=0x4FFF_FFFF).contains(&leaf)
}

/// The guest's answer for `leaf`/`subleaf`, given the host's answer `host`.
pub fn filter(leaf: u32, subleaf: u32, host: CpuidRegs, ctx: &CpuidContext) -> CpuidRegs {
    let mut r = host;
    match leaf {
        1 => {
            r.ecx = (r.ecx & !(ECX_VMX | ECX_SMX)) | ECX_HYPERVISOR;
            if ctx.x2apic_emulated {
                r.ecx |= crate::x2apic_emulation::CPUID_X2APIC;
            }
            if !ctx.mwait {
                r.ecx &= !ECX_MONITOR;
            }
            let count = ctx.vcpu_count.min(255);
            r.ebx = (r.ebx & 0x0000_FFFF) | (count << 16) | ((ctx.vcpu_index & 0xff) << 24);
        }
        0xA => r = CpuidRegs::default(),
        5 if !ctx.mwait => r = CpuidRegs::default(),
        0x15 => r = tsc_info_leaf(ctx.tsc_khz),
        0x16 => r = frequency_leaf(ctx.tsc_khz),
        0xB | 0x1F => {
            let _ = subleaf;
            r.edx = ctx.vcpu_index;
        }
        0x4000_0000 => {
            let word = |i: usize| {
                u32::from_le_bytes([
                    SIGNATURE[i],
                    SIGNATURE[i + 1],
                    SIGNATURE[i + 2],
                    SIGNATURE[i + 3],
                ])
            };
            r = CpuidRegs {
                eax: HYPERVISOR_MAX_LEAF,
                ebx: word(0),
                ecx: word(4),
                edx: word(8),
            };
        }
        0x4000_0010 => {
            r = CpuidRegs {
                eax: ctx.tsc_khz,
                ..CpuidRegs::default()
            };
        }
        l if is_hypervisor_leaf(l) => r = CpuidRegs::default(),
        _ => {}
    }
    r
}

/// Leaf 0x15 (TSC = crystal x EBX / EAX): a 1 kHz "crystal" times `tsc_khz`, so the
/// ratio is exact; all zero ("not enumerated") when the frequency is unknown.
fn tsc_info_leaf(tsc_khz: u32) -> CpuidRegs {
    if tsc_khz == 0 {
        return CpuidRegs::default();
    }
    CpuidRegs {
        eax: 1,
        ebx: tsc_khz,
        ecx: 1000,
        edx: 0,
    }
}

/// Leaf 0x16: base and maximum frequency in MHz (16 bits each), no bus frequency.
/// Rounded to the nearest MHz: Hermit takes its TSC frequency from this leaf in whole
/// MHz, and a measurement a hair low (9999 kHz for a 10 MHz TSC) must not become 9 MHz,
/// which would make its clocks run 10% slow.
fn frequency_leaf(tsc_khz: u32) -> CpuidRegs {
    let mhz = tsc_khz.saturating_add(500) / 1000;
    let mhz = mhz.min(0xffff);
    CpuidRegs {
        eax: mhz,
        ebx: mhz,
        ecx: 0,
        edx: 0,
    }
}

/// Whether `xcr0` is a value XSETBV may load (SDM Vol. 1, 13.3): only bits the CPU
/// supports, x87 always on, AVX only with SSE, the three AVX-512 bits together and only
/// with AVX.
pub fn xcr0_allowed(xcr0: u64, supported: u64) -> bool {
    const X87: u64 = 1;
    const SSE: u64 = 1 << 1;
    const AVX: u64 = 1 << 2;
    const AVX512: u64 = 0b111 << 5;
    let avx512 = xcr0 & AVX512;
    xcr0 & !supported == 0
        && xcr0 & X87 != 0
        && (xcr0 & AVX == 0 || xcr0 & SSE != 0)
        && (avx512 == 0 || (avx512 == AVX512 && xcr0 & AVX != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: CpuidContext = CpuidContext {
        vcpu_index: 2,
        vcpu_count: 3,
        tsc_khz: 2_500_000,
        x2apic_emulated: false,
        mwait: true,
    };

    #[test]
    fn leaf1_hides_vmx_and_names_the_vcpu() {
        let host = CpuidRegs {
            eax: 0x906ea,
            ebx: 0x0510_0800,
            ecx: 0x7ffa_f3ff, // VMX, SMX, x2APIC, TSC-deadline set
            edx: 0xbfeb_fbff,
        };
        let r = filter(1, 0, host, &CTX);
        assert_eq!(r.ecx & (ECX_VMX | ECX_SMX), 0);
        assert_ne!(r.ecx & ECX_HYPERVISOR, 0);
        assert_ne!(r.ecx & (1 << 21), 0, "x2APIC stays");
        assert_ne!(r.ecx & (1 << 24), 0, "TSC deadline stays");
        assert_eq!(r.ebx >> 24, 2);
        assert_eq!((r.ebx >> 16) & 0xff, 3);
        assert_eq!(r.ebx & 0xffff, 0x0800, "CLFLUSH size kept");
        assert_eq!((r.eax, r.edx), (host.eax, host.edx));
    }

    #[test]
    fn monitor_and_mwait_are_hidden_where_mwait_would_not_sleep() {
        let host = CpuidRegs {
            ecx: 0x7ffa_f3ff, // MONITOR set
            ebx: 0x40,
            eax: 0x40,
            edx: 0x1120,
        };
        assert_ne!(
            filter(1, 0, host, &CTX).ecx & ECX_MONITOR,
            0,
            "VT-x keeps it"
        );
        assert_eq!(filter(5, 0, host, &CTX), host);
        let svm = CpuidContext {
            mwait: false,
            ..CTX
        };
        assert_eq!(filter(1, 0, host, &svm).ecx & ECX_MONITOR, 0);
        assert_eq!(filter(5, 0, host, &svm), CpuidRegs::default());
    }

    #[test]
    fn leaf1_reports_the_x2apic_the_monitor_emulates_and_only_then() {
        let host = CpuidRegs {
            ecx: 0x0020_0000 ^ 0x7ffa_f3ff, // an xAPIC-only host
            ..CpuidRegs::default()
        };
        assert_eq!(filter(1, 0, host, &CTX).ecx & (1 << 21), 0);
        let emulated = CpuidContext {
            x2apic_emulated: true,
            ..CTX
        };
        assert_ne!(filter(1, 0, host, &emulated).ecx & (1 << 21), 0);
    }

    #[test]
    fn hypervisor_leaves() {
        let r = filter(0x4000_0000, 0, CpuidRegs::default(), &CTX);
        let mut sig = [0u8; 12];
        sig[..4].copy_from_slice(&r.ebx.to_le_bytes());
        sig[4..8].copy_from_slice(&r.ecx.to_le_bytes());
        sig[8..].copy_from_slice(&r.edx.to_le_bytes());
        assert_eq!(&sig, b"QuestMonitor");
        assert_eq!(r.eax, HYPERVISOR_MAX_LEAF);
        assert_eq!(
            filter(0x4000_0010, 0, CpuidRegs::default(), &CTX).eax,
            2_500_000
        );
        let junk = CpuidRegs {
            eax: 1,
            ebx: 2,
            ecx: 3,
            edx: 4,
        };
        assert_eq!(filter(0x4000_0005, 0, junk, &CTX), CpuidRegs::default());
    }

    #[test]
    fn frequency_leaves_report_the_measured_tsc() {
        let nominal = CpuidRegs {
            eax: 3500,
            ebx: 3500,
            ecx: 100,
            edx: 0,
        };
        let r = filter(0x16, 0, nominal, &CTX);
        assert_eq!((r.eax, r.ebx, r.ecx), (2500, 2500, 0));
        let r = filter(0x15, 0, nominal, &CTX);
        assert_eq!(
            u64::from(r.ecx) * u64::from(r.ebx) / u64::from(r.eax),
            2_500_000_000
        );
        let slow = CpuidContext {
            tsc_khz: 10_000,
            ..CTX
        };
        assert_eq!(filter(0x16, 0, nominal, &slow).eax, 10);
        // A measurement a hair off either way still gives the right whole MHz.
        for khz in [9_999, 10_001, 9_500] {
            let near = CpuidContext {
                tsc_khz: khz,
                ..CTX
            };
            assert_eq!(filter(0x16, 0, nominal, &near).eax, 10, "{khz} kHz");
        }
        let below = CpuidContext {
            tsc_khz: 9_499,
            ..CTX
        };
        assert_eq!(filter(0x16, 0, nominal, &below).eax, 9);
        let unknown = CpuidContext { tsc_khz: 0, ..CTX };
        assert_eq!(filter(0x15, 0, nominal, &unknown), CpuidRegs::default());
        assert_eq!(filter(0x16, 0, nominal, &unknown).eax, 0);
    }

    #[test]
    fn xcr0_rules() {
        let all = 0xe7;
        assert!(xcr0_allowed(0b111, all));
        assert!(xcr0_allowed(0b1, all));
        assert!(!xcr0_allowed(0, all), "x87 must stay on");
        assert!(!xcr0_allowed(0b101, all), "AVX needs SSE");
        assert!(!xcr0_allowed(0b111, 0b11), "unsupported AVX");
        assert!(!xcr0_allowed(0b0010_0111, all), "AVX-512 bits together");
        assert!(xcr0_allowed(0xe7, all));
    }

    #[test]
    fn topology_and_pmu() {
        let host = CpuidRegs {
            eax: 1,
            ebx: 2,
            ecx: 0x100,
            edx: 99,
        };
        assert_eq!(filter(0xB, 0, host, &CTX).edx, 2);
        assert_eq!(filter(0x1F, 1, host, &CTX).edx, 2);
        assert_eq!(filter(0xA, 0, host, &CTX), CpuidRegs::default());
        assert_eq!(filter(0x8000_0007, 0, host, &CTX), host, "passed unchanged");
    }
}
