//! Does this CPU have what Quest needs? VT-x (checked with CPUID before any VMX MSR is
//! touched), VMXON allowed by firmware, the controls the monitor uses, and EPT with a
//! 4-level walk, write-back, 2 MiB pages and single-context INVEPT (Intel SDM Vol. 3,
//! 24.7 "Enabling and Entering VMX Operation" and Appendix A).

use core::arch::x86_64::__cpuid;
use core::fmt;
use quest_monitor_core::vmx_controls::{
    self as ctl, adjust, basic_has_true_controls, basic_memory_type_wb, basic_revision,
    basic_vmcs_size, entry, exit, msr, pin, primary, secondary, FEATURE_CONTROL_LOCKED,
    FEATURE_CONTROL_VMX_OUTSIDE_SMX, REQUIRED_EPT_CAPS,
};
use x86_64::registers::model_specific::Msr;

/// The VMX facts every core uses (the same on all cores of one machine).
#[derive(Clone, Copy, Debug)]
pub struct VmxCaps {
    /// VMCS revision identifier (first word of VMXON and VMCS regions).
    pub revision: u32,
    /// Pin-based controls to write.
    pub pin: u32,
    /// Primary processor-based controls.
    pub primary: u32,
    /// Secondary processor-based controls.
    pub secondary: u32,
    /// VM-exit controls.
    pub exit: u32,
    /// VM-entry controls.
    pub entry: u32,
    /// CR0 bits that must be 1 / may be 1 in VMX operation.
    pub cr0_fixed: (u64, u64),
    /// CR4 bits that must be 1 / may be 1.
    pub cr4_fixed: (u64, u64),
    /// Single-context INVVPID is available.
    pub invvpid: bool,
}

/// Why Quest cannot run here. Display is the line after `quest: `.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmxError {
    /// CPUID.1:ECX[5] is clear.
    NoVmx,
    /// IA32_FEATURE_CONTROL is locked with VMXON disabled.
    DisabledByFirmware,
    /// VMX_BASIC says the VMCS is not write-back or larger than a page.
    UnsupportedBasic,
    /// A required control bit is missing: (which control word, missing bits).
    MissingControl(&'static str, u32),
    /// EPT lacks a required capability (missing bits of IA32_VMX_EPT_VPID_CAP).
    MissingEpt(u64),
}

impl fmt::Display for VmxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NoVmx | Self::MissingEpt(_) => f.write_str(
                "this CPU has no VT-x with EPT; Quest needs it (QEMU: -accel kvm -cpu host)",
            )?,
            Self::DisabledByFirmware => f.write_str(
                "VMX disabled by firmware (IA32_FEATURE_CONTROL locked); enable VT-x in the firmware setup",
            )?,
            Self::UnsupportedBasic => {
                f.write_str("this CPU's VMX needs a VMCS layout Quest does not support")?
            }
            Self::MissingControl(word, bits) => write!(
                f,
                "this CPU's VT-x lacks {word} controls {bits:#x} that Quest needs"
            )?,
        }
        if let Self::MissingEpt(bits) = self {
            write!(f, " [missing EPT capabilities {bits:#x}]")?;
        }
        Ok(())
    }
}

fn rdmsr(index: u32) -> u64 {
    // SAFETY: only called for VMX MSRs after CPUID reported VMX, and for
    // IA32_FEATURE_CONTROL, which exists on every CPU with VMX; reading has no effect.
    unsafe { Msr::new(index).read() }
}

/// The primary processor-based controls the monitor needs (`vmx_controls`' module doc).
const PRIMARY_WANTED: u32 = primary::USE_IO_BITMAPS
    | primary::USE_MSR_BITMAPS
    | primary::USE_TSC_OFFSETTING
    | primary::SECONDARY_CONTROLS;
/// The VM-exit controls the monitor needs.
const EXIT_WANTED: u32 = exit::HOST_ADDRESS_SPACE_SIZE
    | exit::SAVE_EFER
    | exit::LOAD_EFER
    | exit::SAVE_PAT
    | exit::LOAD_PAT;

/// Checks VT-x and EPT support and chooses the controls. Also makes sure
/// IA32_FEATURE_CONTROL allows VMXON: when firmware left it unlocked, it is set (VMXON
/// outside SMX) and locked, as firmware should have done.
///
/// Run on the boot core before any VMXON; the result holds for every core.
pub fn check_support() -> Result<VmxCaps, VmxError> {
    let leaf1 = __cpuid(1);
    if leaf1.ecx & (1 << 5) == 0 {
        return Err(VmxError::NoVmx);
    }
    ensure_feature_control()?;

    let basic = rdmsr(msr::VMX_BASIC);
    if !basic_memory_type_wb(basic) || basic_vmcs_size(basic) > 4096 {
        return Err(VmxError::UnsupportedBasic);
    }
    let true_ctls = basic_has_true_controls(basic);
    let cap = |plain: u32, tru: u32| rdmsr(if true_ctls { tru } else { plain });

    let pin = adjust(pin::NMI_EXITING, 0, cap(msr::PINBASED, msr::TRUE_PINBASED))
        .map_err(|b| VmxError::MissingControl("pin-based", b))?;
    if pin & pin::EXTERNAL_INTERRUPT_EXITING != 0 {
        // Interrupts must reach sandboxes without exits; a CPU forcing this is unusable.
        return Err(VmxError::MissingControl(
            "pin-based",
            pin::EXTERNAL_INTERRUPT_EXITING,
        ));
    }
    // Each control word: the bits wanted, the bits used when the CPU has them, and the
    // capability MSR; a wanted bit the CPU lacks is an error naming it.
    let control = |what: &'static str, wanted: u32, optional: u32, capability: u64| {
        adjust(wanted, optional, capability).map_err(|b| VmxError::MissingControl(what, b))
    };
    let primary = control(
        "processor-based",
        PRIMARY_WANTED,
        0,
        cap(msr::PROCBASED, msr::TRUE_PROCBASED),
    )?;
    let secondary = control(
        "secondary",
        secondary::ENABLE_EPT | secondary::ENABLE_VPID,
        secondary::ENABLE_RDTSCP | secondary::ENABLE_INVPCID | secondary::ENABLE_XSAVES,
        rdmsr(msr::PROCBASED2),
    )?;
    let exit = control("VM-exit", EXIT_WANTED, 0, cap(msr::EXIT, msr::TRUE_EXIT))?;
    let entry = control(
        "VM-entry",
        entry::IA32E_MODE_GUEST | entry::LOAD_EFER | entry::LOAD_PAT,
        0,
        cap(msr::ENTRY, msr::TRUE_ENTRY),
    )?;

    let ept = rdmsr(msr::EPT_VPID_CAP);
    let missing = REQUIRED_EPT_CAPS & !ept;
    if missing != 0 {
        return Err(VmxError::MissingEpt(missing));
    }
    let invvpid_bits = ctl::ept_cap::INVVPID | ctl::ept_cap::INVVPID_SINGLE;
    Ok(VmxCaps {
        revision: basic_revision(basic),
        pin,
        primary,
        secondary,
        exit,
        entry,
        cr0_fixed: (rdmsr(msr::CR0_FIXED0), rdmsr(msr::CR0_FIXED1)),
        cr4_fixed: (rdmsr(msr::CR4_FIXED0), rdmsr(msr::CR4_FIXED1)),
        invvpid: ept & invvpid_bits == invvpid_bits,
    })
}

/// Makes IA32_FEATURE_CONTROL allow VMXON outside SMX (SDM 24.7). Run on every core:
/// the MSR is per core on some CPUs.
pub fn ensure_feature_control() -> Result<(), VmxError> {
    let value = rdmsr(msr::FEATURE_CONTROL);
    if value & FEATURE_CONTROL_LOCKED != 0 {
        if value & FEATURE_CONTROL_VMX_OUTSIDE_SMX == 0 {
            return Err(VmxError::DisabledByFirmware);
        }
        return Ok(());
    }
    let wanted = value | FEATURE_CONTROL_VMX_OUTSIDE_SMX | FEATURE_CONTROL_LOCKED;
    // SAFETY: the MSR is unlocked, so the write is allowed; it only enables VMXON, which
    // is what the monitor is about to do, and locks the setting until reset.
    unsafe { Msr::new(msr::FEATURE_CONTROL).write(wanted) };
    Ok(())
}
