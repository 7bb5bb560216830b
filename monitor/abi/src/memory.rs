//! Host memory a system needs: the one calculation behind the host's budget check (does
//! the manifest fit in `system.memory`?) and the monitor's check at boot (does the table
//! fit this machine's usable RAM?).
//!
//! The monitor places every allocation (its frame pool, each sandbox's RAM and directory
//! page, each channel's data and ack areas together) at a 2 MiB-aligned host address,
//! because sandbox memory is mapped with 2 MiB EPT pages, so each allocation costs its size
//! rounded up to 2 MiB ([`host_allocation`]). The first MiB of physical memory belongs to
//! the firmware and the AP trampoline ([`LOW_MEMORY_RESERVE`]).

use crate::layout::CHANNEL_ACK_SIZE;
use crate::table::LARGE_PAGE_SIZE;

/// The first MiB of physical memory (real-mode vectors, BIOS data, EBDA, ROMs, the AP
/// trampoline): never usable for sandboxes.
pub const LOW_MEMORY_RESERVE: u64 = 1 << 20;

/// Rounds an allocation up to the monitor's 2 MiB placement granule (saturating).
pub const fn host_allocation(size: u64) -> u64 {
    match size.checked_next_multiple_of(LARGE_PAGE_SIZE) {
        Some(v) => v,
        None => u64::MAX,
    }
}

/// Host bytes of one channel of `size` data bytes before rounding: data plus its ack area.
pub const fn channel_bytes(size: u64) -> u64 {
    size.saturating_add(CHANNEL_ACK_SIZE)
}

/// Host RAM needed: the first MiB, `monitor_reserve` (taken as is), and every one of
/// `allocations` rounded up to 2 MiB ([`host_allocation`]). Saturating.
pub fn host_memory_needed(monitor_reserve: u64, allocations: impl IntoIterator<Item = u64>) -> u64 {
    allocations.into_iter().fold(
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
    fn allocations_round_to_two_mib() {
        assert_eq!(host_allocation(0), 0);
        assert_eq!(host_allocation(1), 2 * MIB);
        assert_eq!(host_allocation(2 * MIB), 2 * MIB);
        assert_eq!(host_allocation(2 * MIB + 1), 4 * MIB);
        assert_eq!(host_allocation(u64::MAX), u64::MAX);
    }

    #[test]
    fn needed_counts_low_memory_reserve_and_rounded_allocations() {
        assert_eq!(host_memory_needed(0, []), MIB);
        assert_eq!(host_memory_needed(32 * MIB, [8 * MIB, 1]), 43 * MIB);
        // A 64 KiB channel with its ack page costs one 2 MiB granule.
        assert_eq!(channel_bytes(64 << 10), (64 << 10) + CHANNEL_ACK_SIZE);
        assert_eq!(host_memory_needed(0, [channel_bytes(64 << 10)]), 3 * MIB);
        assert_eq!(host_memory_needed(u64::MAX, [1]), u64::MAX);
    }

    proptest! {
        #[test]
        fn never_below_the_sum(reserve in any::<u64>(), sizes in proptest::collection::vec(any::<u64>(), 0..8)) {
            let need = host_memory_needed(reserve, sizes.iter().copied());
            let sum = sizes.iter().fold(reserve, |a, &b| a.saturating_add(b));
            prop_assert!(need >= sum);
        }
    }
}
