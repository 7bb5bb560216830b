//! The heap behind `alloc`: a linked-list allocator over the boot info's heap range.

use linked_list_allocator::LockedHeap;

#[global_allocator]
static ALLOCATOR: LockedHeap = LockedHeap::empty();

/// Hands `[start, end)` to the allocator.
///
/// # Safety
/// Call once, before any allocation; `[start, end)` must be RAM of this sandbox, mapped
/// writable, and used by nothing else (not the image, the stacks or the boot data).
pub(crate) unsafe fn init(start: u64, end: u64) {
    let size = end.saturating_sub(start) as usize;
    // SAFETY: the caller guarantees the range is ours alone and writable.
    unsafe { ALLOCATOR.lock().init(start as *mut u8, size) };
}
