//! Which MSRs a sandbox may touch, and the MSR bitmap that enforces it (Intel SDM Vol. 3,
//! 25.6.9 "MSR-Bitmap Address").
//!
//! Principle: an MSR passes through only when the guest can affect nothing but its own
//! core with it, or when VMX switches it on every entry and exit. Everything that could
//! reach other cores or the platform is trapped:
//! - Passed (read and write): FS/GS/kernel-GS base, SYSENTER_*, PAT and EFER (the VMCS
//!   loads and saves them), STAR/LSTAR/CSTAR/FMASK and TSC_AUX (not switched, but the
//!   monitor never uses SYSCALL or RDTSCP), TSC_DEADLINE, and the local x2APIC registers
//!   a guest needs on its fast path (TPR, EOI, SVR, ESR, LVTs, timer count and divide,
//!   self-IPI, and the read-only ISR/TMR/IRR/PPR/version).
//! - Read-only (writes trapped): TSC (writing it would desynchronise the sandbox's TSCs),
//!   IA32_APIC_BASE (a write may only repeat the current value: disabling the x2APIC
//!   would make the core unreachable for the monitor's NMI), the MTRRs (memory types
//!   are a platform-wide contract), MISC_ENABLE, PLATFORM_INFO, MPERF/APERF.
//! - Emulated: x2APIC ID (0x802) and logical destination (0x80D) read back as the
//!   virtual APIC ID = vCPU index; ICR (0x830) writes are translated and checked by
//!   [`crate::x2apic_icr`].
//! - Everything else: a read gets #GP (as on a CPU without that MSR), a write is a
//!   forbidden access that stops the sandbox.

/// Bytes of the MSR bitmap page.
pub const MSR_BITMAP_SIZE: usize = 4096;

/// x2APIC ID register.
pub const X2APIC_ID: u32 = 0x802;
/// x2APIC logical destination register.
pub const X2APIC_LDR: u32 = 0x80D;
/// x2APIC interrupt command register.
pub const X2APIC_ICR: u32 = 0x830;
/// IA32_APIC_BASE.
pub const IA32_APIC_BASE: u32 = 0x1B;
/// IA32_TSC_DEADLINE.
pub const TSC_DEADLINE: u32 = 0x6E0;

/// What a guest read of an MSR does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadPolicy {
    /// Reads the real MSR without a VM exit.
    Pass,
    /// Exits; the monitor returns the virtual x2APIC ID (the vCPU index).
    VirtualApicId,
    /// Exits; the monitor returns the logical ID derived from the virtual APIC ID.
    VirtualLogicalId,
    /// Exits; the monitor injects #GP.
    InjectGp,
}

/// What a guest write of an MSR does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WritePolicy {
    /// Writes the real MSR without a VM exit.
    Pass,
    /// Exits; an IPI request the monitor translates and checks.
    Icr,
    /// Exits; allowed only when the value equals the current one (then a no-op).
    SameValueOnly,
    /// Exits; the register is read-only: the monitor injects #GP.
    InjectGp,
    /// Exits; a forbidden write that stops the sandbox.
    Forbidden,
}

const PASS_BOTH: &[(u32, u32)] = &[
    (0x174, 0x176),             // SYSENTER_CS/ESP/EIP (VMCS-switched)
    (0x277, 0x277),             // PAT (VMCS-switched)
    (0x6E0, 0x6E0),             // TSC_DEADLINE
    (0x808, 0x808),             // x2APIC TPR
    (0x80B, 0x80B),             // x2APIC EOI
    (0x80F, 0x80F),             // x2APIC SVR
    (0x828, 0x828),             // x2APIC ESR
    (0x82F, 0x82F),             // x2APIC LVT CMCI
    (0x832, 0x838),             // x2APIC LVT timer..LINT1, error; timer initial count
    (0x83E, 0x83F),             // x2APIC timer divide, SELF IPI
    (0xC000_0080, 0xC000_0084), // EFER (VMCS-switched), STAR, LSTAR, CSTAR, FMASK
    (0xC000_0100, 0xC000_0103), // FS/GS/kernel GS base, TSC_AUX
];

const READ_ONLY: &[(u32, u32)] = &[
    (0x10, 0x10),   // TSC
    (0x1B, 0x1B),   // APIC_BASE (writes: same value only)
    (0xCE, 0xCE),   // PLATFORM_INFO
    (0xE7, 0xE8),   // MPERF, APERF
    (0xFE, 0xFE),   // MTRRCAP
    (0x1A0, 0x1A0), // MISC_ENABLE
    (0x200, 0x21F), // variable MTRRs
    (0x250, 0x250), // fixed MTRR 64K
    (0x258, 0x259), // fixed MTRRs 16K
    (0x268, 0x26F), // fixed MTRRs 4K
    (0x2FF, 0x2FF), // MTRR default type
    (0x803, 0x803), // x2APIC version
    (0x80A, 0x80A), // x2APIC PPR
    (0x810, 0x827), // x2APIC ISR, TMR, IRR
    (0x830, 0x830), // x2APIC ICR (writes: translated)
    (0x839, 0x839), // x2APIC timer current count
];

fn listed(list: &[(u32, u32)], msr: u32) -> bool {
    list.iter().any(|&(a, b)| (a..=b).contains(&msr))
}

/// The policy for a guest `rdmsr`.
pub fn read_policy(msr: u32) -> ReadPolicy {
    match msr {
        X2APIC_ID => ReadPolicy::VirtualApicId,
        X2APIC_LDR => ReadPolicy::VirtualLogicalId,
        _ if listed(PASS_BOTH, msr) || listed(READ_ONLY, msr) => ReadPolicy::Pass,
        _ => ReadPolicy::InjectGp,
    }
}

/// The policy for a guest `wrmsr`.
pub fn write_policy(msr: u32) -> WritePolicy {
    match msr {
        X2APIC_ICR => WritePolicy::Icr,
        IA32_APIC_BASE => WritePolicy::SameValueOnly,
        X2APIC_ID | X2APIC_LDR => WritePolicy::InjectGp,
        0x803 | 0x80A | 0x810..=0x827 | 0x839 => WritePolicy::InjectGp,
        _ if listed(PASS_BOTH, msr) => WritePolicy::Pass,
        _ => WritePolicy::Forbidden,
    }
}

/// The x2APIC logical ID (LDR) for virtual APIC ID `id` in cluster mode: cluster in
/// bits 31:16, one bit of 16 in 15:0 (SDM 11.12.10.2).
pub fn logical_apic_id(id: u32) -> u32 {
    ((id >> 4) << 16) | (1 << (id & 0xf))
}

/// Byte offset and bit of `msr` in the read half of the bitmap, `None` when the MSR is
/// outside both covered ranges (such MSRs always exit).
fn read_bit(msr: u32) -> Option<(usize, u8)> {
    let (base, idx) = match msr {
        0..=0x1FFF => (0, msr),
        0xC000_0000..=0xC000_1FFF => (1024, msr - 0xC000_0000),
        _ => return None,
    };
    Some((base + idx as usize / 8, 1 << (idx % 8)))
}

/// Fills the MSR bitmap: a clear bit lets the access run without a VM exit.
pub fn build_msr_bitmap(out: &mut [u8; MSR_BITMAP_SIZE]) {
    out.fill(0xff);
    for range in [PASS_BOTH, READ_ONLY] {
        for &(a, b) in range {
            for msr in a..=b {
                let Some((byte, bit)) = read_bit(msr) else {
                    continue;
                };
                if read_policy(msr) == ReadPolicy::Pass {
                    out[byte] &= !bit;
                }
                if write_policy(msr) == WritePolicy::Pass {
                    out[byte + 2048] &= !bit;
                }
            }
        }
    }
}

/// Makes reads and writes of TSC_DEADLINE exit, for a sandbox whose migrations hide their
/// pause from its clock (`downtime_clock = "hidden"`): its TSC offset then differs from 0,
/// and the processor compares the deadline with the host's TSC, not the guest's (TSC
/// offsetting changes what RDTSC, RDTSCP and RDMSR of IA32_TSC return, not the deadline
/// MSR), so the monitor
/// translates each access (`crate::migration::host_deadline`). It costs such a sandbox
/// one VM exit per timer it arms; other sandboxes keep the pass-through.
pub fn trap_tsc_deadline(out: &mut [u8; MSR_BITMAP_SIZE]) {
    if let Some((byte, bit)) = read_bit(TSC_DEADLINE) {
        out[byte] |= bit;
        out[byte + 2048] |= bit;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trapped_tsc_deadline_exits_both_ways_and_nothing_else_changes() {
        let mut plain = [0u8; MSR_BITMAP_SIZE];
        build_msr_bitmap(&mut plain);
        let mut trapped = plain;
        trap_tsc_deadline(&mut trapped);
        assert!(!exits(&plain, TSC_DEADLINE, false) && !exits(&plain, TSC_DEADLINE, true));
        assert!(exits(&trapped, TSC_DEADLINE, false) && exits(&trapped, TSC_DEADLINE, true));
        let differing = plain.iter().zip(&trapped).filter(|(a, b)| a != b).count();
        assert_eq!(differing, 2, "one read bit and one write bit");
    }

    fn exits(map: &[u8; MSR_BITMAP_SIZE], msr: u32, write: bool) -> bool {
        match read_bit(msr) {
            Some((byte, bit)) => map[byte + if write { 2048 } else { 0 }] & bit != 0,
            None => true,
        }
    }

    #[test]
    fn bitmap_matches_policy() {
        let mut map = [0u8; MSR_BITMAP_SIZE];
        build_msr_bitmap(&mut map);
        for msr in (0..0x2000).chain(0xC000_0000..0xC000_2000) {
            assert_eq!(
                exits(&map, msr, false),
                read_policy(msr) != ReadPolicy::Pass,
                "read {msr:#x}"
            );
            assert_eq!(
                exits(&map, msr, true),
                write_policy(msr) != WritePolicy::Pass,
                "write {msr:#x}"
            );
        }
    }

    #[test]
    fn fast_path_registers_do_not_exit() {
        let mut map = [0u8; MSR_BITMAP_SIZE];
        build_msr_bitmap(&mut map);
        for msr in [0x808, 0x80B, 0x832, 0x838, 0x83E, 0x6E0, 0x80F, 0xC000_0100] {
            assert!(!exits(&map, msr, true), "write {msr:#x}");
        }
        assert!(!exits(&map, 0x839, false), "current count readable");
        assert!(!exits(&map, 0x830, false), "ICR readable");
    }

    #[test]
    fn dangerous_writes_exit() {
        let mut map = [0u8; MSR_BITMAP_SIZE];
        build_msr_bitmap(&mut map);
        for msr in [
            0x830,
            0x1B,
            0x10,
            0x2FF,
            0x200,
            0x1A0,
            0x3A,
            0x48,
            0xC000_0104,
        ] {
            assert!(exits(&map, msr, true), "write {msr:#x}");
        }
        assert!(exits(&map, 0x802, false), "APIC ID read is virtualised");
        assert!(exits(&map, 0x4000_0000, false), "outside the bitmap ranges");
        assert_eq!(write_policy(0x830), WritePolicy::Icr);
        assert_eq!(write_policy(0x1B), WritePolicy::SameValueOnly);
        assert_eq!(write_policy(0x2FF), WritePolicy::Forbidden);
        assert_eq!(write_policy(0x839), WritePolicy::InjectGp);
        assert_eq!(read_policy(0x3A), ReadPolicy::InjectGp);
    }

    #[test]
    fn logical_ids() {
        assert_eq!(logical_apic_id(0), 1);
        assert_eq!(logical_apic_id(3), 8);
        assert_eq!(logical_apic_id(17), 0x1_0002);
    }
}
