//! Time from the TSC, scaled with the frequency the monitor measured at boot.

use core::sync::atomic::{AtomicU32, Ordering};

/// TSC kHz from the boot info (set once by vCPU 0 before `main`).
static TSC_KHZ: AtomicU32 = AtomicU32::new(0);

pub(crate) fn set_tsc_khz(khz: u32) {
    TSC_KHZ.store(khz, Ordering::Relaxed);
}

/// The TSC frequency in kHz (0 if the monitor could not tell).
pub fn tsc_khz() -> u32 {
    TSC_KHZ.load(Ordering::Relaxed)
}

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the counter; the monitor does not trap it (CR4.TSD is 0).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Converts TSC ticks to microseconds (`None` if the frequency is unknown).
pub fn ticks_to_micros(ticks: u64) -> Option<u64> {
    let khz = tsc_khz() as u128;
    if khz == 0 {
        return None;
    }
    u64::try_from(ticks as u128 * 1000 / khz).ok()
}

/// A point in time, in TSC ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant(u64);

impl Instant {
    /// Now.
    pub fn now() -> Self {
        Self(rdtsc())
    }
    /// Ticks since `self`.
    pub fn elapsed_ticks(&self) -> u64 {
        rdtsc().saturating_sub(self.0)
    }
    /// Microseconds since `self` (`None` if the TSC frequency is unknown).
    pub fn elapsed_micros(&self) -> Option<u64> {
        ticks_to_micros(self.elapsed_ticks())
    }
}

/// Spins for about `micros` microseconds (returns at once if the frequency is unknown).
pub fn delay_micros(micros: u64) {
    let start = Instant::now();
    while start.elapsed_micros().is_some_and(|e| e < micros) {
        core::hint::spin_loop();
    }
}
