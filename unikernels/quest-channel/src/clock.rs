//! The clock messages are stamped with: the core's time-stamp counter, which the monitor
//! leaves untrapped and calibrates across cores.

/// Reads the time-stamp counter (0 on targets without one).
#[inline]
pub(crate) fn now() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC only reads the counter; nothing in a sandbox traps it (CR4.TSD is
        // 0) and on the host it is an ordinary user-mode instruction.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}
