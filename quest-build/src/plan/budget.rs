//! Host memory the planned system needs.
//!
//! The monitor places every sandbox's RAM and every channel (data and ack areas together)
//! in host memory at 2 MiB-aligned addresses, so each allocation costs its size rounded
//! up to 2 MiB; the monitor's own reservation (image, stacks, VMCS, EPT tables, channel
//! directories) comes on top.

use quest_abi::LARGE_PAGE_SIZE;

/// Host RAM the monitor reserves for itself in a system of `n_sandboxes` sandboxes.
// PROVISIONAL until manifest::budget lands: 8 MiB + 2 MiB per sandbox.
pub fn monitor_reserve(n_sandboxes: usize) -> u64 {
    (8 << 20) + (n_sandboxes as u64).saturating_mul(2 << 20)
}

/// Rounds an allocation up to the monitor's 2 MiB placement granule (saturating).
pub fn host_allocation(size: u64) -> u64 {
    size.checked_next_multiple_of(LARGE_PAGE_SIZE)
        .unwrap_or(u64::MAX)
}

/// Host RAM the whole system needs: the monitor's reservation plus every sandbox's RAM
/// and every channel's data and ack areas, each rounded up to 2 MiB. Saturating.
pub fn host_memory_needed(
    monitor_reserve: u64,
    sandbox_ram: impl IntoIterator<Item = u64>,
    channel_bytes: impl IntoIterator<Item = u64>,
) -> u64 {
    sandbox_ram
        .into_iter()
        .chain(channel_bytes)
        .fold(monitor_reserve, |total, size| {
            total.saturating_add(host_allocation(size))
        })
}
