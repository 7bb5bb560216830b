//! Host memory a system needs: the one calculation shared by validation (does the
//! manifest fit in `system.memory`?) and the planner (what the plan reports).
//!
//! The rounding to the monitor's 2 MiB granules and the first MiB are quest-abi's
//! ([`quest_abi::memory`], which the monitor checks at boot with); the host adds its own
//! reservation policy for the monitor (image, stacks, VMCS and EPT tables, channel
//! directories, per-sandbox pristine images).

/// The monitor's fixed reservation: its image, stacks, heap and boot modules.
pub const MONITOR_BASE_RESERVE: u64 = 32 << 20;
/// What the monitor reserves per sandbox: VMCS pages, EPT tables, I/O and MSR bitmaps.
pub const MONITOR_PER_SANDBOX_RESERVE: u64 = 2 << 20;

/// Host RAM the monitor reserves for itself in a system of `n_sandboxes` sandboxes.
/// Saturating.
pub fn monitor_reserve(n_sandboxes: usize) -> u64 {
    let n = u64::try_from(n_sandboxes).unwrap_or(u64::MAX);
    MONITOR_BASE_RESERVE.saturating_add(n.saturating_mul(MONITOR_PER_SANDBOX_RESERVE))
}

/// The monitor's 2 MiB granules and the first MiB: one definition, shared with the monitor.
pub use quest_abi::memory::{channel_bytes, host_allocation, LOW_MEMORY_RESERVE};

/// Host RAM the whole system needs: the first MiB, the monitor's reservation, and every
/// sandbox's RAM and every channel's data and ack areas ([`channel_bytes`]), each rounded
/// up to 2 MiB ([`quest_abi::memory::host_memory_needed`]). Saturating.
pub fn host_memory_needed(
    monitor_reserve: u64,
    sandbox_ram: impl IntoIterator<Item = u64>,
    channel_bytes: impl IntoIterator<Item = u64>,
) -> u64 {
    quest_abi::memory::host_memory_needed(
        monitor_reserve,
        sandbox_ram.into_iter().chain(channel_bytes),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn reserve_grows_per_sandbox() {
        assert_eq!(monitor_reserve(0), 32 * MIB);
        assert_eq!(monitor_reserve(3), 38 * MIB);
        assert_eq!(monitor_reserve(usize::MAX), u64::MAX);
    }

    #[test]
    fn hello_example_needs() {
        // Three 8 MiB sandboxes, no channels: 1 + 38 + 24 MiB.
        let need = host_memory_needed(monitor_reserve(3), [8 * MIB; 3], []);
        assert_eq!(need, 63 * MIB);
        // Two 64 KiB channels cost 2 MiB each.
        let need = host_memory_needed(
            monitor_reserve(2),
            [4 * MIB, 4 * MIB],
            [channel_bytes(64 << 10), channel_bytes(64 << 10)],
        );
        assert_eq!(need, MIB + 36 * MIB + 8 * MIB + 4 * MIB);
    }

    proptest! {
        #[test]
        fn never_below_the_sum(ram in proptest::collection::vec(any::<u64>(), 0..8)) {
            let need = host_memory_needed(monitor_reserve(ram.len()), ram.iter().copied(), []);
            let sum = ram.iter().fold(monitor_reserve(ram.len()), |a, &b| a.saturating_add(b));
            prop_assert!(need >= sum);
        }
    }
}
