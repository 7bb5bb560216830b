//! Initial sandbox memory: payloads copied to their guest-physical destinations, the RAM
//! they leave uncovered and the directory pages zeroed, channels zeroed. Used at boot and
//! to restart a sandbox from its pristine image.

use crate::sandboxes::record;
use crate::system::System;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use quest_abi::layout::DIRECTORY_SIZE;
use quest_abi::view::SandboxView;
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

/// Sandbox RAM is loaded in windows of this size: at boot every started core claims
/// windows ([`boot_share`]) until none is left.
const WINDOW: u64 = 2 << 20;

/// Loads sandbox `s`: zeroes its RAM and directory page and copies its payloads.
/// `payload_area` and `table` must be the validated, hash-checked blob.
pub fn load_sandbox(table: &TableView<'_>, payload_area: &[u8], s: SandboxId) {
    let Some(sandbox) = table.sandbox(s) else {
        return;
    };
    for part in 0..parts(&sandbox) {
        load_part(table, payload_area, s, part);
    }
}

/// The parts [`load_part`] loads sandbox `sandbox` in: its RAM windows, then the directory.
fn parts(sandbox: &SandboxView<'_>) -> u64 {
    sandbox.ram_size().div_ceil(WINDOW) + 1
}

/// Loads part `part` of sandbox `s` (see [`parts`]) at its current placement (its
/// record's): window `part` of its RAM (the bytes no payload covers zeroed, the payloads'
/// bytes in it copied), or the directory page (zeroed, its payloads copied) for the last
/// part. `payload_area` and `table` must be the validated blob.
fn load_part(table: &TableView<'_>, payload_area: &[u8], s: SandboxId, part: u64) {
    let Some(sandbox) = table.sandbox(s) else {
        return;
    };
    let place = record(s).placement();
    let ram = sandbox.ram_size();
    let window = (
        part.saturating_mul(WINDOW),
        (part + 1).saturating_mul(WINDOW).min(ram),
    );
    let directory = window.0 >= ram;
    if directory {
        let Some(directory_hpa) = place.directory_hpa else {
            return;
        };
        // SAFETY: placement gave this sandbox one directory page at `directory_hpa`,
        // identity mapped, overlapping nothing else; its vCPUs are not running.
        unsafe { zero(directory_hpa, DIRECTORY_SIZE) };
    } else {
        // Only the RAM no payload covers is zeroed (the copies below write the rest).
        let in_window = sandbox
            .payloads()
            .map(|p| p.gpa())
            .filter(|gpa| gpa.end.as_u64() <= ram)
            .map(|gpa| {
                (
                    gpa.start.as_u64().max(window.0),
                    gpa.end.as_u64().min(window.1),
                )
            })
            .filter(|&(start, end)| start < end)
            .map(|(start, end)| (start - window.0, end - window.0));
        let started = crate::arch::tsc::now();
        let mut zeroed = 0;
        uncovered(window.1 - window.0, in_window, |start, end| {
            if let Some(hpa) = place.ram_hpa.checked_add(window.0 + start) {
                // SAFETY: placement gave this sandbox `ram` bytes at `ram_hpa`, identity
                // mapped, overlapping nothing else; its vCPUs are not running (boot, or a
                // stopped sandbox being restarted). `uncovered` only emits ranges inside
                // the window, which lies inside `[0, ram)`.
                unsafe { zero(hpa, end - start) };
                zeroed += end - start;
            }
        });
        ZEROED_CYCLES.fetch_add(
            crate::arch::tsc::now().saturating_sub(started),
            Ordering::Relaxed,
        );
        ZEROED_BYTES.fetch_add(zeroed, Ordering::Relaxed);
    }
    for p in sandbox.payloads() {
        let Some(bytes) = p.bytes_in(payload_area) else {
            continue;
        };
        // Validate put every payload inside RAM or the directory; check again anyway so
        // a copy can never leave the sandbox's own memory.
        let gpa = p.gpa();
        let (start, end) = (gpa.start.as_u64(), gpa.end.as_u64());
        let (from, to, dest) = if directory {
            let dest = sandbox
                .directory_gpa()
                .zip(place.directory_hpa)
                .filter(|_| end > ram)
                .and_then(|(dir, dir_hpa)| {
                    let offset = gpa.start.checked_offset_from(dir)?;
                    let end = gpa.end.checked_offset_from(dir)?;
                    (end <= DIRECTORY_SIZE).then(|| dir_hpa.checked_add(offset))?
                });
            (0, bytes.len(), dest)
        } else if end <= ram && start < window.1 && end > window.0 {
            let (from, to) = (start.max(window.0), end.min(window.1));
            (
                (from - start) as usize,
                (to - start) as usize,
                place.ram_hpa.checked_add(from),
            )
        } else {
            continue;
        };
        let (Some(dest), Some(src)) = (dest, bytes.get(from..to)) else {
            continue;
        };
        // SAFETY: `dest..dest + src.len()` lies inside this sandbox's placed memory
        // (checked above); the source is the monitor image, which never overlaps placed
        // memory.
        unsafe {
            core::ptr::copy_nonoverlapping(src.as_ptr(), dest.as_u64() as *mut u8, src.len())
        };
    }
}

/// The next boot job to claim ([`boot_share`]).
static NEXT_JOB: AtomicUsize = AtomicUsize::new(0);

/// This core's share of loading every sandbox and zeroing every channel at boot: each
/// started core claims one job at a time (a sandbox's RAM window or directory, a
/// channel) until none is left. Called by every core before its payload check, whose
/// wait for all cores also covers this, so no vCPU runs before all memory is loaded.
pub fn boot_share(system: &System) {
    let table = &system.table;
    loop {
        let mut job = NEXT_JOB.fetch_add(1, Ordering::Relaxed) as u64;
        let mut claimed = None;
        for s in table.sandboxes() {
            let n = parts(&s);
            if job < n {
                claimed = Some(s.id());
                break;
            }
            job -= n;
        }
        if let Some(s) = claimed {
            load_part(table, system.payload_area, s, job);
            continue;
        }
        let Some((c, hpa)) = usize::try_from(job)
            .ok()
            .and_then(|c| table.channels().zip(system.channels()).nth(c))
        else {
            return;
        };
        // SAFETY: placement gave this channel `data_size + ack_size` bytes at `hpa`;
        // no sandbox runs yet.
        unsafe { zero(*hpa, c.size()) };
    }
}
