//! Which hardware virtualization this CPU offers the monitor: Intel VT-x or AMD SVM, from
//! CPUID leaves and two MSRs read by the caller (pure, so every refusal is host-tested).
//!
//! VT-x (Intel SDM Vol. 3, 24.6 "Discovering Support for VMX" and 24.7 "Enabling and
//! Entering VMX Operation"): `CPUID.1:ECX[5]`, and IA32_FEATURE_CONTROL (0x3A) must not be
//! locked with VMXON outside SMX disabled. EPT and the controls are checked afterwards
//! from the VMX capability MSRs (`vmx_controls`), which exist only once VMX is reported.
//!
//! SVM (AMD APM Vol. 2, 15.4 "Enabling SVM" and 15.30.1 "VM_CR MSR"): CPUID
//! `Fn8000_0001_ECX[2]` (SVM), VM_CR (0xC001_0114) bit 4 SVMDIS clear (when it is set,
//! firmware disabled SVM; CPUID `Fn8000_000A_EDX[2]` SVML says whether a key could unlock
//! it, which Quest does not attempt), and from CPUID Fn8000_000A: `EDX[0]` nested paging
//! (Quest maps sandboxes only through nested page tables) and at least two ASIDs in EBX
//! (ASID 0 is the host's). Next-RIP saving, flush-by-ASID and VMCB clean bits are
//! optional and reported, so the backend can use them when present.
//!
//! MSRs are read only when CPUID says they exist: [`CpuidFacts::needs_feature_control`]
//! and [`CpuidFacts::needs_vm_cr`] tell the caller which to read.
//!
//! When a CPU offers both (only emulators do), VT-x is chosen: it is the backend that
//! came first and is tested in Bochs.

pub use crate::vmx_controls::{FEATURE_CONTROL_LOCKED, FEATURE_CONTROL_VMX_OUTSIDE_SMX};
use core::fmt;

/// The VM_CR MSR (AMD APM Vol. 2, 15.30.1).
pub const VM_CR: u32 = 0xC001_0114;
/// VM_CR bit 3: LOCK (SVMDIS can no longer be changed).
pub const VM_CR_LOCK: u64 = 1 << 3;
/// VM_CR bit 4: SVMDIS (EFER.SVME cannot be set).
pub const VM_CR_SVMDIS: u64 = 1 << 4;
/// EFER bit 12: SVME, set to enable SVM (AMD APM Vol. 2, 15.4).
pub const EFER_SVME: u64 = 1 << 12;

/// `CPUID.1:ECX[5]`: VMX.
pub const LEAF1_ECX_VMX: u32 = 1 << 5;
/// CPUID `Fn8000_0001_ECX[2]`: SVM.
pub const EXT1_ECX_SVM: u32 = 1 << 2;

/// CPUID Fn8000_000A_EDX feature bits (AMD APM Vol. 3, Appendix E, "SVM Features").
pub mod svm_features {
    /// Nested paging.
    pub const NP: u32 = 1 << 0;
    /// SVM lock: VM_CR.SVMDIS may be unlocked with a key.
    pub const SVML: u32 = 1 << 2;
    /// Next-RIP save: the VMCB's nRIP field is written on instruction intercepts.
    pub const NRIPS: u32 = 1 << 3;
    /// VMCB clean bits.
    pub const VMCB_CLEAN: u32 = 1 << 5;
    /// TLB_CONTROL may flush one ASID (values 3 and 7).
    pub const FLUSH_BY_ASID: u32 = 1 << 6;
    /// Decode assists (EXITINFO1 details, fetched instruction bytes).
    pub const DECODE_ASSISTS: u32 = 1 << 7;
}

/// The CPU vendor, from the 12-byte string of CPUID leaf 0 (EBX, EDX, ECX).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vendor {
    /// `GenuineIntel`.
    Intel,
    /// `AuthenticAMD`.
    Amd,
    /// `HygonGenuine` (AMD's design; SVM, VMMCALL).
    Hygon,
    /// Anything else, as reported.
    Other([u8; 12]),
}

impl Vendor {
    /// The vendor of CPUID leaf 0's EBX, EDX, ECX (in that order, as the string reads).
    pub fn from_cpuid(ebx: u32, edx: u32, ecx: u32) -> Self {
        let mut s = [0u8; 12];
        s[..4].copy_from_slice(&ebx.to_le_bytes());
        s[4..8].copy_from_slice(&edx.to_le_bytes());
        s[8..].copy_from_slice(&ecx.to_le_bytes());
        match &s {
            b"GenuineIntel" => Self::Intel,
            b"AuthenticAMD" => Self::Amd,
            b"HygonGenuine" => Self::Hygon,
            _ => Self::Other(s),
        }
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Intel => f.write_str("GenuineIntel"),
            Self::Amd => f.write_str("AuthenticAMD"),
            Self::Hygon => f.write_str("HygonGenuine"),
            Self::Other(s) => s
                .iter()
                .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
                .try_for_each(|c| write!(f, "{c}")),
        }
    }
}

/// What CPUID reports (the caller runs CPUID; leaves above the maximum are passed as 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuidFacts {
    /// Leaf 0.
    pub vendor: Vendor,
    /// Leaf 1 ECX.
    pub leaf1_ecx: u32,
    /// Leaf 0x8000_0000 EAX: the highest extended leaf.
    pub max_extended_leaf: u32,
    /// Leaf 0x8000_0001 ECX (0 when the leaf does not exist).
    pub ext1_ecx: u32,
    /// Leaf 0x8000_000A EBX: number of ASIDs (0 when the leaf does not exist).
    pub svm_asids: u32,
    /// Leaf 0x8000_000A EDX: SVM features (0 when the leaf does not exist).
    pub svm_edx: u32,
}

impl CpuidFacts {
    /// Whether CPUID reports VMX (then IA32_FEATURE_CONTROL exists and may be read).
    pub fn needs_feature_control(&self) -> bool {
        self.leaf1_ecx & LEAF1_ECX_VMX != 0
    }

    /// Whether CPUID reports SVM (then VM_CR exists and may be read).
    pub fn needs_vm_cr(&self) -> bool {
        self.max_extended_leaf >= 0x8000_0001 && self.ext1_ecx & EXT1_ECX_SVM != 0
    }

    fn svm_leaf(&self) -> Option<(u32, u32)> {
        (self.max_extended_leaf >= 0x8000_000A).then_some((self.svm_asids, self.svm_edx))
    }
}

/// What the SVM backend may use beyond the required nested paging.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SvmCaps {
    /// Number of ASIDs (ASID 0 is the host; sandboxes use 1..asids).
    pub asids: u32,
    /// The VMCB's next-RIP field is written on intercepts (else the backend must know
    /// the intercepted instruction's length).
    pub next_rip: bool,
    /// TLB_CONTROL can flush one ASID (else only "flush everything", value 1).
    pub flush_by_asid: bool,
    /// VMCB clean bits are honoured.
    pub vmcb_clean: bool,
    /// Decode assists.
    pub decode_assists: bool,
}

/// The backend the monitor runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Intel VT-x (EPT and controls still to be checked from the VMX capability MSRs).
    Vmx,
    /// AMD SVM with nested paging.
    Svm(SvmCaps),
}

/// Why VT-x cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmxMissing {
    /// `CPUID.1:ECX[5]` is clear.
    NotReported,
    /// IA32_FEATURE_CONTROL is locked with VMXON outside SMX disabled.
    DisabledByFirmware,
}

/// Why SVM cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SvmMissing {
    /// CPUID `Fn8000_0001_ECX[2]` is clear (or the leaf does not exist).
    NotReported,
    /// VM_CR.SVMDIS is set; `unlockable_with_key` is CPUID `Fn8000_000A_EDX[2]`.
    DisabledByFirmware {
        /// SVML: the firmware could unlock it with a key (Quest does not try).
        unlockable_with_key: bool,
    },
    /// CPUID `Fn8000_000A_EDX[0]` (nested paging) is clear or the leaf does not exist.
    NoNestedPaging,
    /// Fewer than two ASIDs (one for the host, at least one for sandboxes).
    TooFewAsids(u32),
}

/// Neither backend can run: what is missing for each. Display is the line after
/// `quest: `.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoBackend {
    /// The CPU vendor.
    pub vendor: Vendor,
    /// What VT-x lacks.
    pub vmx: VmxMissing,
    /// What SVM lacks.
    pub svm: SvmMissing,
}

impl fmt::Display for VmxMissing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotReported => "not reported (CPUID.1:ECX.VMX[bit 5] = 0)",
            Self::DisabledByFirmware => {
                "disabled by firmware (IA32_FEATURE_CONTROL locked without VMXON outside SMX)"
            }
        })
    }
}

impl fmt::Display for SvmMissing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NotReported => f.write_str("not reported (CPUID 8000_0001h:ECX.SVM[bit 2] = 0)"),
            Self::DisabledByFirmware {
                unlockable_with_key,
            } => write!(
                f,
                "disabled by firmware (VM_CR.SVMDIS = 1{})",
                if unlockable_with_key {
                    ", locked with a key"
                } else {
                    ""
                }
            ),
            Self::NoNestedPaging => {
                f.write_str("no nested paging (CPUID 8000_000Ah:EDX.NP[bit 0] = 0)")
            }
            Self::TooFewAsids(n) => write!(f, "only {n} ASID(s) (CPUID 8000_000Ah:EBX)"),
        }
    }
}

impl fmt::Display for NoBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "this CPU ({}) offers neither VT-x with EPT nor AMD SVM with nested paging; Quest needs one: VT-x {}; SVM {}",
            self.vendor, self.vmx, self.svm
        )?;
        if matches!(
            (self.vmx, self.svm),
            (VmxMissing::NotReported, SvmMissing::NotReported)
        ) {
            f.write_str(" (QEMU: -accel kvm -cpu host, or software emulation with -cpu max)")?;
        }
        Ok(())
    }
}

fn vmx_usable(facts: &CpuidFacts, feature_control: Option<u64>) -> Result<(), VmxMissing> {
    if !facts.needs_feature_control() {
        return Err(VmxMissing::NotReported);
    }
    // An absent reading is treated as unlocked: the monitor then sets and locks it.
    let fc = feature_control.unwrap_or(0);
    if fc & FEATURE_CONTROL_LOCKED != 0 && fc & FEATURE_CONTROL_VMX_OUTSIDE_SMX == 0 {
        return Err(VmxMissing::DisabledByFirmware);
    }
    Ok(())
}

fn svm_usable(facts: &CpuidFacts, vm_cr: Option<u64>) -> Result<SvmCaps, SvmMissing> {
    if !facts.needs_vm_cr() {
        return Err(SvmMissing::NotReported);
    }
    let (asids, edx) = facts.svm_leaf().unwrap_or((0, 0));
    if vm_cr.unwrap_or(0) & VM_CR_SVMDIS != 0 {
        return Err(SvmMissing::DisabledByFirmware {
            unlockable_with_key: edx & svm_features::SVML != 0,
        });
    }
    if edx & svm_features::NP == 0 {
        return Err(SvmMissing::NoNestedPaging);
    }
    if asids < 2 {
        return Err(SvmMissing::TooFewAsids(asids));
    }
    Ok(SvmCaps {
        asids,
        next_rip: edx & svm_features::NRIPS != 0,
        flush_by_asid: edx & svm_features::FLUSH_BY_ASID != 0,
        vmcb_clean: edx & svm_features::VMCB_CLEAN != 0,
        decode_assists: edx & svm_features::DECODE_ASSISTS != 0,
    })
}

/// Chooses the backend. `feature_control` is IA32_FEATURE_CONTROL when
/// [`CpuidFacts::needs_feature_control`], `vm_cr` is VM_CR when
/// [`CpuidFacts::needs_vm_cr`] (`None` otherwise: the MSR may not exist).
pub fn choose(
    facts: &CpuidFacts,
    feature_control: Option<u64>,
    vm_cr: Option<u64>,
) -> Result<Backend, NoBackend> {
    let vmx = match vmx_usable(facts, feature_control) {
        Ok(()) => return Ok(Backend::Vmx),
        Err(why) => why,
    };
    match svm_usable(facts, vm_cr) {
        Ok(caps) => Ok(Backend::Svm(caps)),
        Err(svm) => Err(NoBackend {
            vendor: facts.vendor,
            vmx,
            svm,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    fn vendor_words(s: &[u8; 12]) -> (u32, u32, u32) {
        let w = |i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
        (w(0), w(4), w(8))
    }

    fn vendor(s: &[u8; 12]) -> Vendor {
        let (b, d, c) = vendor_words(s);
        Vendor::from_cpuid(b, d, c)
    }

    /// An Intel core with VT-x (leaf 1 ECX of a Skylake), no SVM.
    fn intel() -> CpuidFacts {
        CpuidFacts {
            vendor: vendor(b"GenuineIntel"),
            leaf1_ecx: 0x7ffa_fbff,
            max_extended_leaf: 0x8000_0008,
            ext1_ecx: 0x121,
            svm_asids: 0,
            svm_edx: 0,
        }
    }

    /// A Zen core: SVM, 32768 ASIDs, NP, NRIPS, clean bits, flush by ASID, decode assists.
    fn amd() -> CpuidFacts {
        CpuidFacts {
            vendor: vendor(b"AuthenticAMD"),
            leaf1_ecx: 0x7ed8_320b,
            max_extended_leaf: 0x8000_0020,
            ext1_ecx: 0x75c2_37ff,
            svm_asids: 0x8000,
            svm_edx: 0x0001_b4ff,
        }
    }

    #[test]
    fn vendors_are_read_in_ebx_edx_ecx_order() {
        assert_eq!(vendor(b"GenuineIntel"), Vendor::Intel);
        assert_eq!(vendor(b"AuthenticAMD"), Vendor::Amd);
        assert_eq!(vendor(b"HygonGenuine"), Vendor::Hygon);
        // CPUID leaf 0 of an Intel CPU, as the registers hold it.
        assert_eq!(
            Vendor::from_cpuid(0x756e_6547, 0x4965_6e69, 0x6c65_746e),
            Vendor::Intel
        );
        let odd = vendor(b"TCGTCGTCG\0\x01T");
        assert_eq!(odd.to_string(), "TCGTCGTCG??T");
    }

    #[test]
    fn intel_with_vmx_gets_vmx_and_amd_with_svm_gets_svm() {
        assert_eq!(choose(&intel(), Some(5), None), Ok(Backend::Vmx));
        assert_eq!(
            choose(&intel(), Some(0), None),
            Ok(Backend::Vmx),
            "unlocked"
        );
        assert_eq!(
            choose(&amd(), None, Some(0)),
            Ok(Backend::Svm(SvmCaps {
                asids: 0x8000,
                next_rip: true,
                flush_by_asid: true,
                vmcb_clean: true,
                decode_assists: true,
            }))
        );
        // VM_CR.LOCK alone (SVM enabled and locked that way) is fine.
        assert!(matches!(
            choose(&amd(), None, Some(VM_CR_LOCK)),
            Ok(Backend::Svm(_))
        ));
    }

    #[test]
    fn qemu_tcg_svm_without_optional_features_is_usable() {
        // QEMU's software emulation: SVM with NP but no next-RIP saving or clean bits.
        let tcg = CpuidFacts {
            svm_asids: 16,
            svm_edx: svm_features::NP,
            ..amd()
        };
        let Ok(Backend::Svm(caps)) = choose(&tcg, None, Some(0)) else {
            panic!("TCG SVM refused");
        };
        assert!(!caps.next_rip && !caps.flush_by_asid && !caps.vmcb_clean);
        assert_eq!(caps.asids, 16);
    }

    #[test]
    fn msrs_are_asked_for_only_when_cpuid_reports_the_feature() {
        assert!(intel().needs_feature_control() && !intel().needs_vm_cr());
        assert!(amd().needs_vm_cr() && !amd().needs_feature_control());
        let old = CpuidFacts {
            max_extended_leaf: 0x8000_0000,
            ..amd()
        };
        assert!(!old.needs_vm_cr(), "leaf 8000_0001h does not exist");
    }

    #[test]
    fn vt_x_is_preferred_when_both_are_there() {
        let both = CpuidFacts {
            leaf1_ecx: LEAF1_ECX_VMX,
            ..amd()
        };
        assert_eq!(choose(&both, Some(0), Some(0)), Ok(Backend::Vmx));
        // ... and SVM is the fallback when firmware locked VT-x off.
        assert!(matches!(
            choose(&both, Some(FEATURE_CONTROL_LOCKED), Some(0)),
            Ok(Backend::Svm(_))
        ));
    }

    #[test]
    fn each_refusal_names_what_is_missing() {
        let none = CpuidFacts {
            leaf1_ecx: 0,
            ext1_ecx: 0,
            ..intel()
        };
        let e = choose(&none, None, None).unwrap_err();
        assert_eq!(e.vmx, VmxMissing::NotReported);
        assert_eq!(e.svm, SvmMissing::NotReported);
        let text = e.to_string();
        assert!(
            text.starts_with("this CPU (GenuineIntel) offers neither"),
            "{text}"
        );
        assert!(
            text.contains("VT-x not reported (CPUID.1:ECX.VMX[bit 5] = 0)"),
            "{text}"
        );
        assert!(
            text.contains("SVM not reported (CPUID 8000_0001h:ECX.SVM[bit 2] = 0)"),
            "{text}"
        );
        assert!(text.ends_with("-cpu max)"), "{text}");

        let locked = choose(&intel(), Some(FEATURE_CONTROL_LOCKED), None).unwrap_err();
        assert_eq!(locked.vmx, VmxMissing::DisabledByFirmware);
        assert!(locked.to_string().contains("VT-x disabled by firmware"));
        assert!(
            !locked.to_string().contains("-cpu max"),
            "no QEMU hint then"
        );

        // AMD CPUs whose SVM is refused: the facts, VM_CR, what is missing, what it says.
        let nested_paging = "SVM no nested paging (CPUID 8000_000Ah:EDX.NP";
        let refusals = [
            (
                CpuidFacts {
                    svm_edx: svm_features::NRIPS,
                    ..amd()
                },
                0,
                SvmMissing::NoNestedPaging,
                nested_paging,
            ),
            // Leaf 8000_000Ah missing.
            (
                CpuidFacts {
                    max_extended_leaf: 0x8000_0008,
                    ..amd()
                },
                0,
                SvmMissing::NoNestedPaging,
                nested_paging,
            ),
            (
                amd(),
                VM_CR_SVMDIS | VM_CR_LOCK,
                SvmMissing::DisabledByFirmware {
                    unlockable_with_key: true,
                },
                "SVM disabled by firmware (VM_CR.SVMDIS = 1, locked with a key)",
            ),
            (
                CpuidFacts {
                    svm_asids: 1,
                    ..amd()
                },
                0,
                SvmMissing::TooFewAsids(1),
                "only 1 ASID(s)",
            ),
        ];
        for (facts, vm_cr, missing, says) in refusals {
            let e = choose(&facts, None, Some(vm_cr)).unwrap_err();
            assert_eq!((e.vendor, e.svm), (Vendor::Amd, missing), "{says}");
            assert!(e.to_string().contains(says), "{e}");
        }
    }
}
