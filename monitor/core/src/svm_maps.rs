//! The SVM I/O and MSR permission maps of one sandbox (AMD APM Vol. 2, 15.10.1 "I/O
//! Permissions Map" and 15.11 "MSR Intercepts"), generated from the same policies as the
//! VT-x bitmaps so that an access exits on SVM exactly when it exits on VT-x.
//!
//! - IOPM, 12 KiB: one bit per port, ports 0-0xFFFF in order (the VT-x bitmaps A and B
//!   laid end to end are exactly this), then three more bits: an access of up to four
//!   bytes checks the bit of every port it touches, and one starting at 0xFFFD..0xFFFF
//!   reaches bits 0x10000-0x10002. They are set: VT-x exits on an access that wraps past
//!   port 0xFFFF (SDM 26.1.3), so SVM must intercept it too.
//! - MSRPM, 8 KiB: two bits per MSR, read intercept then write intercept, for three
//!   ranges: 0-0x1FFF at byte 0, 0xC000_0000-0xC000_1FFF at 0x800, 0xC001_0000-0xC001_1FFF
//!   at 0x1000 (0x1800-0x1FFF reserved). MSRs outside the ranges are always intercepted,
//!   as outside the VT-x bitmap's two ranges; the third range, which VT-x does not cover,
//!   is therefore intercepted entirely.
//!
//! What passing an MSR through means differs: VT-x switches EFER, PAT and SYSENTER_* on
//! every entry and exit, SVM keeps EFER and (with nested paging) the guest PAT in the
//! VMCB, and SYSENTER_*, STAR/LSTAR/CSTAR/SFMASK, KernelGsBase and FS/GS base only through
//! VMLOAD/VMSAVE. The SVM backend must therefore VMSAVE the host's and VMLOAD the
//! guest's around VMRUN for the same pass list to be sound.

use crate::io_bitmap::{build_io_bitmaps, IO_BITMAPS_SIZE};
use crate::msr_policy::MSR_BITMAP_SIZE;
use quest_abi::DeviceEntry;

/// Bytes of the I/O permission map (three 4 KiB pages; only 64 Ki + 3 bits are used).
pub const IOPM_SIZE: usize = 3 * 4096;
/// Bytes of the MSR permission map (two 4 KiB pages).
pub const MSRPM_SIZE: usize = 2 * 4096;

/// The MSR ranges of the MSRPM: (first MSR, byte offset of its bits).
const MSRPM_RANGES: [(u32, usize); 3] = [(0, 0), (0xC000_0000, 0x800), (0xC001_0000, 0x1000)];
/// MSRs per range.
const RANGE_MSRS: u32 = 0x2000;

/// The VT-x MSR bitmap's quarters (SDM 25.6.9): (first MSR, byte offset of the read bits,
/// byte offset of the write bits).
const VMX_RANGES: [(u32, usize, usize); 2] = [(0, 0, 2048), (0xC000_0000, 1024, 3072)];

/// Fills the IOPM so that exactly the devices' ports pass, as [`build_io_bitmaps`] does
/// for VT-x; the bits past port 0xFFFF are set.
pub fn build_iopm(devices: &[DeviceEntry], out: &mut [u8; IOPM_SIZE]) {
    if let Some((ports, rest)) = out.split_first_chunk_mut::<IO_BITMAPS_SIZE>() {
        build_io_bitmaps(devices, ports);
        rest.fill(0xff);
    }
}

/// Fills the MSRPM from the VT-x MSR bitmap `vmx` (built by
/// [`crate::msr_policy::build_msr_bitmap`]): an MSR is intercepted on SVM exactly when
/// its access exits on VT-x.
pub fn build_msrpm(vmx: &[u8; MSR_BITMAP_SIZE], out: &mut [u8; MSRPM_SIZE]) {
    out.fill(0xff);
    for (first, read_at, write_at) in VMX_RANGES {
        let Some(&(_, svm_at)) = MSRPM_RANGES.iter().find(|r| r.0 == first) else {
            continue;
        };
        for (half, vmx_at) in [(0, read_at), (1, write_at)] {
            for (byte, &bits) in vmx[vmx_at..vmx_at + 1024].iter().enumerate() {
                if bits == 0xff {
                    continue;
                }
                for bit in (0..8).filter(|b| bits & (1 << b) == 0) {
                    let k = byte * 8 + bit;
                    out[svm_at + k / 4] &= !(1 << (2 * (k % 4) + half));
                }
            }
        }
    }
}

/// Makes the MSRPM intercept reads and writes of `msr` (an MSR outside its ranges is
/// intercepted already).
pub fn intercept_msr(map: &mut [u8; MSRPM_SIZE], msr: u32) {
    if let Some(&(first, at)) = MSRPM_RANGES
        .iter()
        .find(|&&(first, _)| msr.wrapping_sub(first) < RANGE_MSRS)
    {
        let k = (msr - first) as usize;
        map[at + k / 4] |= 3 << (2 * (k % 4));
    }
}

/// Whether the MSRPM intercepts a read (or, with `write`, a write) of `msr`.
pub fn msrpm_intercepts(map: &[u8; MSRPM_SIZE], msr: u32, write: bool) -> bool {
    MSRPM_RANGES
        .iter()
        .find(|&&(first, _)| msr.wrapping_sub(first) < RANGE_MSRS)
        .is_none_or(|&(first, at)| {
            let k = (msr - first) as usize;
            map[at + k / 4] & (1 << (2 * (k % 4) + usize::from(write))) != 0
        })
}

/// Whether the IOPM intercepts a `size`-byte access at `port` (every bit the access
/// touches is checked, the extra bits included).
pub fn iopm_intercepts(map: &[u8; IOPM_SIZE], port: u16, size: u8) -> bool {
    let first = usize::from(port);
    (first..first + usize::from(size.max(1))).any(|p| map[p / 8] & (1 << (p % 8)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io_bitmap::tests::dev;
    use crate::msr_policy::{build_msr_bitmap, read_policy, write_policy, ReadPolicy, WritePolicy};

    /// VT-x's rule (SDM 26.1.3): an access exits if it wraps past 0xFFFF or if the bit of
    /// any port it touches is set in bitmap A (ports 0-0x7FFF) or B (0x8000-0xFFFF).
    fn vmx_io_exits(bitmaps: &[u8; IO_BITMAPS_SIZE], port: u16, size: u8) -> bool {
        let first = u32::from(port);
        (first..first + u32::from(size)).any(|p| {
            p > 0xffff || {
                let (map, q) = if p < 0x8000 {
                    (0, p)
                } else {
                    (4096, p - 0x8000)
                };
                bitmaps[map + q as usize / 8] & (1 << (q % 8)) != 0
            }
        })
    }

    /// VT-x's rule (SDM 25.6.9): outside the two ranges every access exits.
    fn vmx_msr_exits(map: &[u8; MSR_BITMAP_SIZE], msr: u32, write: bool) -> bool {
        VMX_RANGES
            .iter()
            .find(|r| msr.wrapping_sub(r.0) < RANGE_MSRS)
            .is_none_or(|&(first, read_at, write_at)| {
                let k = (msr - first) as usize;
                let at = if write { write_at } else { read_at };
                map[at + k / 8] & (1 << (k % 8)) != 0
            })
    }

    #[test]
    fn every_port_and_size_exits_on_svm_exactly_when_on_vt_x() {
        let configs: [&[DeviceEntry]; 3] = [
            &[],
            &[dev(0x2f8, 0x2ff), dev(0x8000, 0x8003)],
            &[dev(0xfff0, 0xffff), dev(0, 7)],
        ];
        for devices in configs {
            let mut vmx = [0u8; IO_BITMAPS_SIZE];
            build_io_bitmaps(devices, &mut vmx);
            let mut iopm = [0u8; IOPM_SIZE];
            build_iopm(devices, &mut iopm);
            let mut passed = 0;
            for port in 0..=0xffff_u16 {
                for size in [1, 2, 4] {
                    let svm = iopm_intercepts(&iopm, port, size);
                    assert_eq!(svm, vmx_io_exits(&vmx, port, size), "{port:#x}/{size}");
                    passed += usize::from(!svm);
                }
            }
            // The comparison is not vacuous: the devices' ports do pass.
            let ports: u64 = devices
                .iter()
                .map(|d| d.last.get() - d.first.get() + 1)
                .sum();
            assert_eq!(passed > 0, ports > 0);
        }
    }

    #[test]
    fn an_access_wrapping_past_the_last_port_is_intercepted() {
        let mut iopm = [0u8; IOPM_SIZE];
        build_iopm(&[dev(0xfffc, 0xffff)], &mut iopm);
        assert!(!iopm_intercepts(&iopm, 0xfffc, 4));
        assert!(!iopm_intercepts(&iopm, 0xffff, 1));
        assert!(iopm_intercepts(&iopm, 0xffff, 2), "bit 0x10000");
        assert!(iopm_intercepts(&iopm, 0xfffd, 4), "bits 0x10000-0x10002");
        assert_eq!(iopm[0x2000], 0xff);
    }

    /// VT-x's MSR bitmap and the MSR permission map built from it.
    fn both_msr_maps() -> ([u8; MSR_BITMAP_SIZE], [u8; MSRPM_SIZE]) {
        let mut vmx = [0u8; MSR_BITMAP_SIZE];
        build_msr_bitmap(&mut vmx);
        let mut msrpm = [0u8; MSRPM_SIZE];
        build_msrpm(&vmx, &mut msrpm);
        (vmx, msrpm)
    }

    #[test]
    fn every_msr_is_intercepted_on_svm_exactly_when_it_exits_on_vt_x() {
        let (vmx, msrpm) = both_msr_maps();
        let ranges = MSRPM_RANGES.iter().map(|&(first, _)| first);
        let edges = [
            0x2000,
            0x4000_0000,
            0xBFFF_FFFF,
            0xC000_2000,
            0xC001_2000,
            u32::MAX,
        ];
        let msrs = ranges
            .flat_map(|first| first..first + RANGE_MSRS)
            .chain(edges);
        let mut passed = 0;
        for msr in msrs {
            for write in [false, true] {
                let svm = msrpm_intercepts(&msrpm, msr, write);
                assert_eq!(
                    svm,
                    vmx_msr_exits(&vmx, msr, write),
                    "{msr:#x} write {write}"
                );
                let policy_passes = if write {
                    write_policy(msr) == WritePolicy::Pass
                } else {
                    read_policy(msr) == ReadPolicy::Pass
                };
                assert_eq!(!svm, policy_passes, "{msr:#x} write {write}");
                passed += usize::from(!svm);
            }
        }
        assert!(passed > 100, "the fast-path MSRs pass ({passed})");
        // The exact bit positions of the APM's layout, for two well-known MSRs: EFER
        // (0xC000_0080: passed both ways) and TSC (0x10: read passed, write intercepted).
        assert_eq!(msrpm[0x800 + 0x80 / 4] & 0b11, 0);
        assert_eq!(msrpm[0x10 / 4] & 0b11, 0b10);
        assert!(
            msrpm[0x1000..].iter().all(|&b| b == 0xff),
            "third range trapped"
        );
    }

    #[test]
    fn intercepting_one_msr_sets_both_its_bits_and_no_other() {
        let (_, mut map) = both_msr_maps();
        assert!(!msrpm_intercepts(&map, 0x80B, false) && !msrpm_intercepts(&map, 0x80B, true));
        let before = map;
        intercept_msr(&mut map, 0x80B);
        assert!(msrpm_intercepts(&map, 0x80B, false) && msrpm_intercepts(&map, 0x80B, true));
        let changed = map
            .iter()
            .zip(before.iter())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(changed, 1);
        for msr in [0x808, 0x80F, 0xC000_0100] {
            assert!(!msrpm_intercepts(&map, msr, false), "{msr:#x}");
        }
        intercept_msr(&mut map, 0x4000_0000);
        assert_eq!(
            changed,
            map.iter()
                .zip(before.iter())
                .filter(|(a, b)| a != b)
                .count()
        );
    }
}
