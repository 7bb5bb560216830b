//! Initial sandbox memory: payloads copied to their guest-physical destinations, the RAM
//! they leave uncovered and the directory pages zeroed, channels zeroed. Used at boot and
//! to restart a sandbox from its pristine image.

use crate::system::{ChannelPlacement, SandboxPlacement};
use core::sync::atomic::{AtomicU64, Ordering};
use quest_abi::layout::DIRECTORY_SIZE;
use quest_abi::{HostPhysAddr, SandboxId, TableView};
use quest_monitor_core::uncovered::uncovered;

/// Bytes of sandbox RAM zeroed at boot and the TSC cycles that took: the monitor's own
/// measure of one pass over memory, against which the boot cost is put.
static ZEROED_BYTES: AtomicU64 = AtomicU64::new(0);
static ZEROED_CYCLES: AtomicU64 = AtomicU64::new(0);

/// TSC cycles one pass (zeroing) over `bytes` of sandbox memory takes, extrapolated from
/// the zeroing at boot (`None` if payloads covered everything, so nothing was timed).
pub fn one_pass_cycles(bytes: u64) -> Option<u64> {
    let zeroed = ZEROED_BYTES.load(Ordering::Relaxed);
    let cycles = ZEROED_CYCLES.load(Ordering::Relaxed);
    (zeroed != 0).then(|| (u128::from(cycles) * u128::from(bytes) / u128::from(zeroed)) as u64)
}

/// Zeroes `len` bytes of host memory at `hpa`.
///
/// # Safety
/// The range must be identity-mapped RAM placed for a sandbox or channel, not in use.
unsafe fn zero(hpa: HostPhysAddr, len: u64) {
    // SAFETY: per the contract.
    unsafe { core::ptr::write_bytes(hpa.as_u64() as *mut u8, 0, len as usize) };
}

/// Loads sandbox `s`: zeroes its RAM and directory page and copies its payloads.
/// `payload_area` and `table` must be the validated, hash-checked blob.
pub fn load_sandbox(
    table: &TableView<'_>,
    payload_area: &[u8],
    placements: &[SandboxPlacement],
    s: SandboxId,
) {
    let (Some(sandbox), Some(place)) = (table.sandbox(s), placements.get(s.index())) else {
        return;
    };
    let ram = sandbox.ram_size();
    // Only the RAM no payload covers is zeroed (the copies below write the rest).
    let in_ram = sandbox
        .payloads()
        .map(|p| p.gpa())
        .map(|gpa| (gpa.start.as_u64(), gpa.end.as_u64()))
        .filter(|&(_, end)| end <= ram);
    let started = crate::arch::tsc::now();
    let mut zeroed = 0;
    // SAFETY: placement gave this sandbox `ram` bytes at `ram_hpa` and one directory
    // page at `directory_hpa`, identity mapped, overlapping nothing else; its vCPUs are
    // not running (boot, or a stopped sandbox being restarted). `uncovered` only emits
    // ranges inside `[0, ram)`.
    unsafe {
        uncovered(ram, in_ram, |start, end| {
            if let Some(hpa) = place.ram_hpa.checked_add(start) {
                zero(hpa, end - start);
                zeroed += end - start;
            }
        });
        if let Some(directory_hpa) = place.directory_hpa {
            zero(directory_hpa, DIRECTORY_SIZE);
        }
    }
    ZEROED_CYCLES.fetch_add(
        crate::arch::tsc::now().saturating_sub(started),
        Ordering::Relaxed,
    );
    ZEROED_BYTES.fetch_add(zeroed, Ordering::Relaxed);
    for p in sandbox.payloads() {
        let Some(bytes) = p.bytes_in(payload_area) else {
            continue;
        };
        // Validate put every payload inside RAM or the directory; check again anyway so
        // a copy can never leave the sandbox's own memory.
        let gpa = p.gpa();
        let dest = if gpa.end.as_u64() <= ram {
            place.ram_hpa.checked_add(gpa.start.as_u64())
        } else {
            sandbox
                .directory_gpa()
                .zip(place.directory_hpa)
                .and_then(|(dir, dir_hpa)| {
                    let start = gpa.start.checked_offset_from(dir)?;
                    let end = gpa.end.checked_offset_from(dir)?;
                    (end <= DIRECTORY_SIZE).then(|| dir_hpa.checked_add(start))?
                })
        };
        let Some(dest) = dest else {
            continue;
        };
        // SAFETY: `dest..dest + size` lies inside this sandbox's placed memory (checked
        // above); the source is the monitor image, which never overlaps placed memory.
        unsafe {
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), dest.as_u64() as *mut u8, bytes.len())
        };
    }
}

/// Zeroes every channel's data and ack areas.
pub fn zero_channels(table: &TableView<'_>, placements: &[ChannelPlacement]) {
    for (c, place) in table.channels().zip(placements) {
        // SAFETY: placement gave this channel `data_size + ack_size` bytes at `hpa`;
        // no sandbox runs yet.
        unsafe { zero(place.hpa, c.size()) };
    }
}
