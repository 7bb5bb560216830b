//! The time-stamp counter: frequency (measured against PIT channel 2, else CPUID leaf
//! 0x15/0x16) and busy-wait delays.

use core::arch::x86_64::{__cpuid, _rdtsc};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use x86_64::instructions::port::Port;

/// The PIT's input clock in Hz.
const PIT_HZ: u64 = 1_193_182;
/// Length of the calibration window.
const CALIBRATION_MS: u64 = 20;
/// TSC frequency in kHz once known (0 before).
static TSC_KHZ: AtomicU32 = AtomicU32::new(0);

/// The TSC at the monitor's first instructions, stored by the 32-bit entry
/// (`arch::boot32`) before anything else runs: the origin of the boot cost.
pub static ENTRY_TSC: AtomicU64 = AtomicU64::new(0);

/// The TSC when the monitor was entered (see [`ENTRY_TSC`]).
pub fn entry() -> u64 {
    ENTRY_TSC.load(Ordering::Relaxed)
}

/// Reads the TSC.
pub fn now() -> u64 {
    // SAFETY: RDTSC exists on every x86-64 CPU and has no side effect.
    unsafe { _rdtsc() }
}

/// How the frequency was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Measured against PIT channel 2.
    Pit,
    /// CPUID leaf 0x15 (crystal clock ratio).
    CpuidCrystal,
    /// CPUID leaf 0x16 (nominal base frequency).
    CpuidBase,
}

impl Source {
    /// How the console names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pit => "measured against the PIT",
            Self::CpuidCrystal => "CPUID leaf 0x15",
            Self::CpuidBase => "CPUID leaf 0x16",
        }
    }
}

/// Finds the TSC frequency, remembers it for [`delay_us`], and returns it in kHz.
pub fn calibrate() -> Option<(u32, Source)> {
    let found = measure_with_pit()
        .map(|k| (k, Source::Pit))
        .or_else(cpuid_khz);
    if let Some((khz, _)) = found {
        TSC_KHZ.store(khz, Ordering::Relaxed);
    }
    found
}

/// The frequency found by [`calibrate`] (0 before).
pub fn khz() -> u32 {
    TSC_KHZ.load(Ordering::Relaxed)
}

/// Busy-waits at least `us` microseconds (needs [`calibrate`]; else a long guess).
pub fn delay_us(us: u64) {
    let khz = match khz() {
        0 => 3_000_000,
        k => k as u64,
    };
    let end = now().saturating_add(us * khz / 1000);
    while now() < end {
        core::hint::spin_loop();
    }
}

fn measure_with_pit() -> Option<u32> {
    let mut gate = Port::<u8>::new(0x61);
    let mut command = Port::<u8>::new(0x43);
    let mut channel2 = Port::<u8>::new(0x42);
    let count = PIT_HZ * CALIBRATION_MS / 1000;
    // SAFETY: ports 0x42, 0x43 and 0x61 are the legacy PIT and its gate; the monitor owns
    // them (no sandbox gets them at this point) and only channel 2 (the speaker) changes.
    unsafe {
        // Gate low, speaker off, while programming: mode 0 (interrupt on terminal count),
        // lobyte/hibyte, binary.
        let saved = gate.read();
        gate.write(saved & !0x03);
        command.write(0xb0);
        channel2.write(count as u8);
        channel2.write((count >> 8) as u8);
        gate.write((saved & !0x02) | 0x01);
        let start = now();
        // OUT2 (bit 5) rises at terminal count. Bound the wait so a machine without a
        // PIT falls back to CPUID instead of hanging.
        let mut spins = 0u64;
        while gate.read() & 0x20 == 0 {
            spins += 1;
            if spins > 50_000_000 {
                gate.write(saved);
                return None;
            }
        }
        let cycles = now() - start;
        gate.write(saved);
        // To the nearest kHz (the window is whole milliseconds).
        let khz = (cycles + CALIBRATION_MS / 2) / CALIBRATION_MS;
        u32::try_from(khz).ok().filter(|&k| k > 0)
    }
}

fn cpuid_khz() -> Option<(u32, Source)> {
    // Higher leaves are read only when leaf 0 reports them.
    let max = __cpuid(0).eax;
    if max >= 0x15 {
        let l = __cpuid(0x15);
        if l.eax != 0 && l.ebx != 0 && l.ecx != 0 {
            let khz = l.ecx as u64 * l.ebx as u64 / l.eax as u64 / 1000;
            return u32::try_from(khz).ok().map(|k| (k, Source::CpuidCrystal));
        }
    }
    if max >= 0x16 {
        let mhz = __cpuid(0x16).eax & 0xffff;
        if mhz != 0 {
            return Some((mhz * 1000, Source::CpuidBase));
        }
    }
    None
}
