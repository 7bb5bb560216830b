//! Host memory a system needs: the one calculation shared by validation (does the
//! manifest fit in `system.memory`?) and the planner (what the plan reports).
//!
//! The monitor places every sandbox's RAM and every channel (data and ack areas together)
//! at 2 MiB-aligned host addresses, because sandbox memory is mapped with 2 MiB EPT pages,
//! so each allocation costs its size rounded up to 2 MiB. On top come the monitor's own
//! reservation (image, stacks, VMCS and EPT tables, channel directories, per-sandbox
//! pristine images) and the first MiB of physical memory, which firmware owns.

use quest_abi::layout::CHANNEL_ACK_SIZE;
use quest_abi::LARGE_PAGE_SIZE;

/// The monitor's fixed reservation: its image, stacks, heap and boot modules.
pub const MONITOR_BASE_RESERVE: u64 = 32 << 20;
/// What the monitor reserves per sandbox: VMCS pages, EPT tables, I/O and MSR bitmaps.
pub const MONITOR_PER_SANDBOX_RESERVE: u64 = 2 << 20;
/// The first MiB of physical memory (real-mode vectors, BIOS data, EBDA, ROMs): never
/// usable for sandboxes.
pub const LOW_MEMORY_RESERVE: u64 = 1 << 20;

/// Host RAM the monitor reserves for itself in a system of `n_sandboxes` sandboxes.
/// Saturating.
pub fn monitor_reserve(n_sandboxes: usize) -> u64 {
    let n = u64::try_from(n_sandboxes).unwrap_or(u64::MAX);
    MONITOR_BASE_RESERVE.saturating_add(n.saturating_mul(MONITOR_PER_SANDBOX_RESERVE))
}

/// Rounds an allocation up to the monitor's 2 MiB placement granule (saturating).
pub fn host_allocation(size: u64) -> u64 {
    size.checked_next_multiple_of(LARGE_PAGE_SIZE)
        .unwrap_or(u64::MAX)
}

/// Host bytes of one channel of `size` data bytes before rounding: data plus its ack area.
pub fn channel_bytes(size: u64) -> u64 {
    size.saturating_add(CHANNEL_ACK_SIZE)
}

/// Host RAM the whole system needs: the first MiB, the monitor's reservation, and every
/// sandbox's RAM and every channel's data and ack areas ([`channel_bytes`]), each rounded
/// up to 2 MiB. Saturating.
pub fn host_memory_needed(
    monitor_reserve: u64,
    sandbox_ram: impl IntoIterator<Item = u64>,
    channel_bytes: impl IntoIterator<Item = u64>,
) -> u64 {
    sandbox_ram.into_iter().chain(channel_bytes).fold(
        LOW_MEMORY_RESERVE.saturating_add(monitor_reserve),
        |total, size| total.saturating_add(host_allocation(size)),
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
    fn allocations_round_to_two_mib() {
        assert_eq!(host_allocation(0), 0);
        assert_eq!(host_allocation(1), 2 * MIB);
        assert_eq!(host_allocation(2 * MIB), 2 * MIB);
        assert_eq!(host_allocation(2 * MIB + 1), 4 * MIB);
        assert_eq!(host_allocation(u64::MAX), u64::MAX);
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
