//! The monitor's own frame pool: 4 KiB frames for VMXON regions, VMCSs, EPT tables,
//! I/O and MSR bitmaps and per-core stacks.
//!
//! The pool is one contiguous host-physical range reserved at boot, before any sandbox is
//! placed, so sandbox memory and monitor memory never mix. Bookkeeping is a fixed-size
//! bitmap (no allocation, no writes into the managed memory), so this module is pure and
//! host-tested; zeroing a frame before use is the caller's job (it needs the memory).

use core::fmt;

/// Size of one frame.
pub const FRAME_SIZE: u64 = 4096;
/// Most frames one pool manages (128 MiB); a larger reservation is cut to this.
pub const MAX_POOL_FRAMES: usize = 32 * 1024;
const WORDS: usize = MAX_POOL_FRAMES / 64;

/// Why a pool operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The pool's base is not frame-aligned or its range wraps around.
    BadPool,
    /// The address is not a frame of this pool.
    NotInPool(u64),
    /// The frame is already free.
    DoubleFree(u64),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BadPool => f.write_str("frame pool is unaligned or wraps around"),
            Self::NotInPool(a) => write!(f, "address {a:#x} is not a frame of the pool"),
            Self::DoubleFree(a) => write!(f, "frame {a:#x} freed twice"),
        }
    }
}

/// A pool of 4 KiB frames `[base, base + frames * FRAME_SIZE)`.
#[derive(Clone, Debug)]
pub struct FramePool {
    base: u64,
    frames: usize,
    /// Bit set = frame in use.
    used: [u64; WORDS],
    /// No free frame lies below this index (speeds up the common allocate-only pattern).
    lowest_free: usize,
}

impl FramePool {
    /// A pool with no frames (every allocation fails).
    pub const fn empty() -> Self {
        Self {
            base: 0,
            frames: 0,
            used: [0; WORDS],
            lowest_free: 0,
        }
    }

    /// A pool over `[base, base + size)`; `size` is rounded down to whole frames and cut
    /// to [`MAX_POOL_FRAMES`].
    pub fn new(base: u64, size: u64) -> Result<Self, FrameError> {
        if base % FRAME_SIZE != 0 || base.checked_add(size).is_none() {
            return Err(FrameError::BadPool);
        }
        let frames = ((size / FRAME_SIZE) as usize).min(MAX_POOL_FRAMES);
        Ok(Self {
            base,
            frames,
            ..Self::empty()
        })
    }

    /// The host-physical range the pool manages.
    pub fn range(&self) -> (u64, u64) {
        (self.base, self.base + self.frames as u64 * FRAME_SIZE)
    }

    /// Number of frames not in use.
    pub fn free_frames(&self) -> usize {
        (0..self.frames).filter(|&i| !self.is_used(i)).count()
    }

    /// Takes the lowest free frame; `None` when the pool is exhausted.
    pub fn alloc(&mut self) -> Option<u64> {
        self.alloc_contiguous(1)
    }

    /// Takes the lowest run of `count` free, contiguous frames and returns its base.
    pub fn alloc_contiguous(&mut self, count: usize) -> Option<u64> {
        if count == 0 {
            return None;
        }
        let mut start = self.lowest_free;
        while start.checked_add(count)? <= self.frames {
            match (start..start + count).find(|&i| self.is_used(i)) {
                Some(used) => start = used + 1,
                None => {
                    (start..start + count).for_each(|i| self.set(i, true));
                    if start == self.lowest_free {
                        self.lowest_free = self.next_free_from(start + count);
                    }
                    return Some(self.base + start as u64 * FRAME_SIZE);
                }
            }
        }
        None
    }

    /// Returns one frame to the pool.
    pub fn free(&mut self, addr: u64) -> Result<(), FrameError> {
        let offset = addr
            .checked_sub(self.base)
            .filter(|o| o % FRAME_SIZE == 0)
            .ok_or(FrameError::NotInPool(addr))?;
        let index = (offset / FRAME_SIZE) as usize;
        if index >= self.frames {
            return Err(FrameError::NotInPool(addr));
        }
        if !self.is_used(index) {
            return Err(FrameError::DoubleFree(addr));
        }
        self.set(index, false);
        self.lowest_free = self.lowest_free.min(index);
        Ok(())
    }

    fn next_free_from(&self, from: usize) -> usize {
        (from..self.frames)
            .find(|&i| !self.is_used(i))
            .unwrap_or(self.frames)
    }

    fn is_used(&self, i: usize) -> bool {
        self.used[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, i: usize, used: bool) {
        if used {
            self.used[i / 64] |= 1 << (i % 64);
        } else {
            self.used[i / 64] &= !(1 << (i % 64));
        }
    }
}

impl Default for FramePool {
    fn default() -> Self {
        Self::empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BASE: u64 = 0x40_0000;

    #[test]
    fn allocates_lowest_frames_first_and_exhausts() {
        let mut pool = FramePool::new(BASE, 3 * FRAME_SIZE + 100).unwrap();
        assert_eq!(pool.range(), (BASE, BASE + 3 * FRAME_SIZE));
        assert_eq!(pool.alloc(), Some(BASE));
        assert_eq!(pool.alloc(), Some(BASE + FRAME_SIZE));
        assert_eq!(pool.alloc(), Some(BASE + 2 * FRAME_SIZE));
        assert_eq!(pool.alloc(), None);
        assert_eq!(pool.free_frames(), 0);
    }

    #[test]
    fn freed_frames_are_reused_and_double_free_is_caught() {
        let mut pool = FramePool::new(BASE, 4 * FRAME_SIZE).unwrap();
        let a = pool.alloc().unwrap();
        let b = pool.alloc().unwrap();
        pool.free(a).unwrap();
        assert_eq!(pool.free(a), Err(FrameError::DoubleFree(a)));
        assert_eq!(pool.alloc(), Some(a));
        assert_eq!(pool.free(b + 1), Err(FrameError::NotInPool(b + 1)));
        assert_eq!(
            pool.free(BASE - FRAME_SIZE),
            Err(FrameError::NotInPool(BASE - FRAME_SIZE))
        );
        assert_eq!(
            pool.free(BASE + 4 * FRAME_SIZE),
            Err(FrameError::NotInPool(BASE + 4 * FRAME_SIZE))
        );
    }

    #[test]
    fn contiguous_runs_skip_holes() {
        let mut pool = FramePool::new(BASE, 8 * FRAME_SIZE).unwrap();
        let frames: Vec<u64> = (0..4).map(|_| pool.alloc().unwrap()).collect();
        pool.free(frames[1]).unwrap();
        // One free frame at index 1 is too small for 2; the run starts at index 4.
        assert_eq!(pool.alloc_contiguous(2), Some(BASE + 4 * FRAME_SIZE));
        assert_eq!(pool.alloc_contiguous(3), None);
        assert_eq!(pool.alloc_contiguous(2), Some(BASE + 6 * FRAME_SIZE));
        assert_eq!(pool.alloc(), Some(frames[1]));
        assert_eq!(pool.alloc_contiguous(0), None);
    }

    #[test]
    fn bad_pools_are_rejected_and_large_ones_capped() {
        assert_eq!(
            FramePool::new(BASE + 1, FRAME_SIZE).unwrap_err(),
            FrameError::BadPool
        );
        assert_eq!(
            FramePool::new(u64::MAX - 4095, 8192).unwrap_err(),
            FrameError::BadPool
        );
        let big = FramePool::new(0, u64::MAX / 2).unwrap();
        assert_eq!(big.free_frames(), MAX_POOL_FRAMES);
        let mut empty = FramePool::empty();
        assert_eq!(empty.alloc(), None);
    }

    proptest! {
        /// Against a simple model: allocations never overlap, stay in the pool, and
        /// every free frame can be allocated again.
        #[test]
        fn behaves_like_a_set_of_frames(ops in prop::collection::vec((0u8..3, 1usize..5), 1..200)) {
            let frames = 64;
            let mut pool = FramePool::new(BASE, frames * FRAME_SIZE).unwrap();
            let mut held: Vec<(u64, usize)> = Vec::new();
            for (op, n) in ops {
                match op {
                    0 => if let Some(a) = pool.alloc_contiguous(n) {
                        let run = (a, a + n as u64 * FRAME_SIZE);
                        prop_assert!(run.0 >= BASE && run.1 <= BASE + frames * FRAME_SIZE);
                        for &(b, m) in &held {
                            prop_assert!(run.1 <= b || b + m as u64 * FRAME_SIZE <= run.0);
                        }
                        held.push((a, n));
                    },
                    1 => if !held.is_empty() {
                        let (a, m) = held.remove(n % held.len());
                        for k in 0..m {
                            prop_assert_eq!(pool.free(a + k as u64 * FRAME_SIZE), Ok(()));
                        }
                    },
                    _ => {
                        let in_use: usize = held.iter().map(|h| h.1).sum();
                        prop_assert_eq!(pool.free_frames(), frames as usize - in_use);
                    }
                }
            }
        }
    }
}
