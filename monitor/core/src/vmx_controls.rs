//! Choosing VM-execution, VM-exit and VM-entry controls from the capability MSRs
//! (Intel SDM Vol. 3, Appendix A "VMX Capability Reporting Facility").
//!
//! Each control word is `(wanted | allowed0) & allowed1`: bits the CPU requires are set,
//! bits it cannot do are cleared; a *required* bit the CPU cannot do is an error naming
//! the missing bits. The monitor's choices, and why:
//! - pin: NMI exiting (the monitor takes a core back with an NMI IPI); external-interrupt
//!   exiting OFF, so device and timer interrupts reach the guest without a VM exit.
//! - primary: I/O bitmaps, MSR bitmaps, TSC offsetting, secondary controls. No HLT exiting (a halted
//!   vCPU sleeps in the guest until its own interrupt), no CR3/CR8/INVLPG/RDTSC exiting.
//! - secondary: EPT and VPID required; RDTSCP, INVPCID and XSAVES enabled when available
//!   (otherwise those instructions raise #UD in the guest).
//! - exit: 64-bit host, save/load EFER and PAT (guests may write both freely).
//! - entry: IA-32e guest, load EFER and PAT.

/// Pin-based control bits (SDM 25.6.1).
pub mod pin {
    /// External-interrupt exiting.
    pub const EXTERNAL_INTERRUPT_EXITING: u32 = 1 << 0;
    /// NMI exiting.
    pub const NMI_EXITING: u32 = 1 << 3;
    /// Virtual NMIs.
    pub const VIRTUAL_NMIS: u32 = 1 << 5;
}

/// Primary processor-based control bits (SDM 25.6.2, Table 25-6).
pub mod primary {
    /// Use TSC offsetting: the guest's TSC reads the host's plus the VMCS TSC offset (0
    /// at launch; a migration may change it, see `downtime_clock`).
    pub const USE_TSC_OFFSETTING: u32 = 1 << 3;
    /// HLT exiting.
    pub const HLT_EXITING: u32 = 1 << 7;
    /// CR3-load exiting.
    pub const CR3_LOAD_EXITING: u32 = 1 << 15;
    /// CR3-store exiting.
    pub const CR3_STORE_EXITING: u32 = 1 << 16;
    /// Unconditional I/O exiting.
    pub const UNCONDITIONAL_IO_EXITING: u32 = 1 << 24;
    /// Use I/O bitmaps.
    pub const USE_IO_BITMAPS: u32 = 1 << 25;
    /// Use MSR bitmaps.
    pub const USE_MSR_BITMAPS: u32 = 1 << 28;
    /// Activate secondary controls.
    pub const SECONDARY_CONTROLS: u32 = 1 << 31;
}

/// Secondary processor-based control bits (SDM 25.6.2, Table 25-7).
pub mod secondary {
    /// Enable EPT.
    pub const ENABLE_EPT: u32 = 1 << 1;
    /// Enable RDTSCP.
    pub const ENABLE_RDTSCP: u32 = 1 << 3;
    /// Enable VPID.
    pub const ENABLE_VPID: u32 = 1 << 5;
    /// Unrestricted guest.
    pub const UNRESTRICTED_GUEST: u32 = 1 << 7;
    /// Enable INVPCID.
    pub const ENABLE_INVPCID: u32 = 1 << 12;
    /// Enable XSAVES/XRSTORS.
    pub const ENABLE_XSAVES: u32 = 1 << 20;
}

/// VM-exit control bits (SDM 25.7.1).
pub mod exit {
    /// Host address-space size (64-bit host).
    pub const HOST_ADDRESS_SPACE_SIZE: u32 = 1 << 9;
    /// Save IA32_PAT.
    pub const SAVE_PAT: u32 = 1 << 18;
    /// Load IA32_PAT.
    pub const LOAD_PAT: u32 = 1 << 19;
    /// Save IA32_EFER.
    pub const SAVE_EFER: u32 = 1 << 20;
    /// Load IA32_EFER.
    pub const LOAD_EFER: u32 = 1 << 21;
}

/// VM-entry control bits (SDM 25.8.1).
pub mod entry {
    /// IA-32e mode guest.
    pub const IA32E_MODE_GUEST: u32 = 1 << 9;
    /// Load IA32_PAT.
    pub const LOAD_PAT: u32 = 1 << 14;
    /// Load IA32_EFER.
    pub const LOAD_EFER: u32 = 1 << 15;
}

/// Capability MSR numbers (SDM Appendix A).
pub mod msr {
    /// IA32_FEATURE_CONTROL.
    pub const FEATURE_CONTROL: u32 = 0x3A;
    /// IA32_VMX_BASIC.
    pub const VMX_BASIC: u32 = 0x480;
    /// IA32_VMX_PINBASED_CTLS.
    pub const PINBASED: u32 = 0x481;
    /// IA32_VMX_PROCBASED_CTLS.
    pub const PROCBASED: u32 = 0x482;
    /// IA32_VMX_EXIT_CTLS.
    pub const EXIT: u32 = 0x483;
    /// IA32_VMX_ENTRY_CTLS.
    pub const ENTRY: u32 = 0x484;
    /// IA32_VMX_CR0_FIXED0.
    pub const CR0_FIXED0: u32 = 0x486;
    /// IA32_VMX_CR0_FIXED1.
    pub const CR0_FIXED1: u32 = 0x487;
    /// IA32_VMX_CR4_FIXED0.
    pub const CR4_FIXED0: u32 = 0x488;
    /// IA32_VMX_CR4_FIXED1.
    pub const CR4_FIXED1: u32 = 0x489;
    /// IA32_VMX_PROCBASED_CTLS2.
    pub const PROCBASED2: u32 = 0x48B;
    /// IA32_VMX_EPT_VPID_CAP.
    pub const EPT_VPID_CAP: u32 = 0x48C;
    /// IA32_VMX_TRUE_PINBASED_CTLS.
    pub const TRUE_PINBASED: u32 = 0x48D;
    /// IA32_VMX_TRUE_PROCBASED_CTLS.
    pub const TRUE_PROCBASED: u32 = 0x48E;
    /// IA32_VMX_TRUE_EXIT_CTLS.
    pub const TRUE_EXIT: u32 = 0x48F;
    /// IA32_VMX_TRUE_ENTRY_CTLS.
    pub const TRUE_ENTRY: u32 = 0x490;
}

/// IA32_FEATURE_CONTROL bit 0: locked.
pub const FEATURE_CONTROL_LOCKED: u64 = 1;
/// IA32_FEATURE_CONTROL bit 2: VMXON allowed outside SMX.
pub const FEATURE_CONTROL_VMX_OUTSIDE_SMX: u64 = 1 << 2;

/// EPT/VPID capability bits the monitor requires (IA32_VMX_EPT_VPID_CAP, SDM A.10).
pub mod ept_cap {
    /// Page-walk length of 4.
    pub const WALK_LENGTH_4: u64 = 1 << 6;
    /// Write-back paging-structure memory type.
    pub const WRITE_BACK: u64 = 1 << 14;
    /// 2 MiB pages.
    pub const PAGE_2M: u64 = 1 << 16;
    /// INVEPT supported.
    pub const INVEPT: u64 = 1 << 20;
    /// Single-context INVEPT.
    pub const INVEPT_SINGLE: u64 = 1 << 25;
    /// INVVPID supported.
    pub const INVVPID: u64 = 1 << 32;
    /// Single-context INVVPID.
    pub const INVVPID_SINGLE: u64 = 1 << 41;
}

/// The EPT/VPID capabilities the monitor cannot work without.
pub const REQUIRED_EPT_CAPS: u64 = ept_cap::WALK_LENGTH_4
    | ept_cap::WRITE_BACK
    | ept_cap::PAGE_2M
    | ept_cap::INVEPT
    | ept_cap::INVEPT_SINGLE;

/// Combines `required | optional` with a capability MSR value (allowed-0 settings in bits
/// 31:0, allowed-1 in 63:32). Returns the control word, or the required bits the CPU
/// cannot set.
pub fn adjust(required: u32, optional: u32, cap: u64) -> Result<u32, u32> {
    let allowed0 = cap as u32;
    let allowed1 = (cap >> 32) as u32;
    let missing = required & !allowed1;
    if missing != 0 {
        return Err(missing);
    }
    Ok((required | optional | allowed0) & allowed1)
}

/// Applies the VMX fixed bits to a CR0/CR4 value (SDM A.7, A.8).
pub fn apply_fixed(value: u64, fixed0: u64, fixed1: u64) -> u64 {
    (value | fixed0) & fixed1
}

/// Revision identifier (bits 30:0) of IA32_VMX_BASIC.
pub fn basic_revision(basic: u64) -> u32 {
    (basic as u32) & 0x7fff_ffff
}

/// IA32_VMX_BASIC bit 55: the TRUE_* capability MSRs exist.
pub fn basic_has_true_controls(basic: u64) -> bool {
    basic & (1 << 55) != 0
}

/// IA32_VMX_BASIC bits 53:50: VMCS memory type must be write-back (6).
pub fn basic_memory_type_wb(basic: u64) -> bool {
    (basic >> 50) & 0xf == 6
}

/// IA32_VMX_BASIC bits 44:32: VMCS region size in bytes (at most 4096).
pub fn basic_vmcs_size(basic: u64) -> u32 {
    ((basic >> 32) & 0x1fff) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjust_sets_required_and_clears_unsupported() {
        // allowed0 = 0x16 (default-1 bits), allowed1 = 0x7f.
        let cap = (0x7fu64 << 32) | 0x16;
        assert_eq!(adjust(pin::NMI_EXITING, 0, cap), Ok(0x1e));
        assert_eq!(adjust(0, 1 << 7, cap), Ok(0x16), "optional bit dropped");
        assert_eq!(adjust(1 << 8, 0, cap), Err(1 << 8));
    }

    #[test]
    fn bochs_basic_msr() {
        let basic = 0x00d8_1000_0000_002b;
        assert_eq!(basic_revision(basic), 0x2b);
        assert!(basic_has_true_controls(basic));
        assert!(basic_memory_type_wb(basic));
        assert_eq!(basic_vmcs_size(basic), 0x1000);
    }

    #[test]
    fn fixed_bits() {
        // Bochs: CR0_FIXED0 = PG|NE|PE, CR4_FIXED0 = VMXE.
        assert_eq!(
            apply_fixed(0x8000_0031, 0x8000_0021, u64::from(u32::MAX)),
            0x8000_0031
        );
        assert_eq!(apply_fixed(0x20, 0x2000, 0x3f_ffff), 0x2020);
        assert_eq!(apply_fixed(0x60_0000, 0, 0x3f_ffff), 0x20_0000);
    }
}
