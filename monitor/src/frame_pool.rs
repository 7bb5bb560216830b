//! The monitor's frame pool (see `quest_monitor_core::frames`): zeroed 4 KiB frames for
//! VMXON regions, VMCSs, EPT tables, bitmaps and stacks, shared by all cores.

use quest_monitor_core::frames::{FramePool, FRAME_SIZE};
use quest_monitor_core::placement::Range;
use spin::Mutex;

static POOL: Mutex<FramePool> = Mutex::new(FramePool::empty());

/// Hands the reserved range to the pool (boot core, once, before anyone allocates).
pub fn init(range: Range) {
    // The range comes from placement: frame-aligned and far from wrapping.
    if let Ok(pool) = FramePool::new(range.start, range.size()) {
        *POOL.lock() = pool;
    }
}

/// Allocates `count` contiguous frames, zeroed; returns the host-physical (= monitor
/// virtual) address of the first, or `None` when the pool is exhausted.
pub fn alloc_zeroed(count: usize) -> Option<u64> {
    let addr = POOL.lock().alloc_contiguous(count)?;
    // SAFETY: the frames were just taken from the pool, which owns identity-mapped RAM
    // reserved for the monitor alone; nobody else refers to them yet.
    unsafe { core::ptr::write_bytes(addr as *mut u8, 0, count * FRAME_SIZE as usize) };
    Some(addr)
}

/// Returns one frame to the pool (false if it was not an allocated frame of the pool).
#[allow(dead_code)] // API for the vmx half.
pub fn free(addr: u64) -> bool {
    POOL.lock().free(addr).is_ok()
}

/// Frames still free.
pub fn free_frames() -> usize {
    POOL.lock().free_frames()
}
