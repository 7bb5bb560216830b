//! A single-producer single-consumer byte ring: the interrupt handler pushes what it
//! drains from the UART's receive FIFO, the echo loop pops. Only atomics, no locks (the
//! handler interrupts the loop on the same vCPU, so it must never wait for it).

use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// Bytes a ring holds (a power of two, so the free-running indices wrap cleanly).
pub const CAPACITY: usize = 1024;
const _: () = assert!(CAPACITY.is_power_of_two());

pub struct Ring {
    bytes: [AtomicU8; CAPACITY],
    /// Bytes pushed so far (written by the producer only).
    head: AtomicUsize,
    /// Bytes popped so far (written by the consumer only).
    tail: AtomicUsize,
}

impl Ring {
    pub const fn new() -> Self {
        Self {
            bytes: [const { AtomicU8::new(0) }; CAPACITY],
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
        }
    }

    /// Appends `b` (producer); false when the ring is full (`b` is not stored).
    pub fn push(&self, b: u8) -> bool {
        let head = self.head.load(Ordering::Relaxed);
        if head.wrapping_sub(self.tail.load(Ordering::Acquire)) >= CAPACITY {
            return false;
        }
        self.bytes[head % CAPACITY].store(b, Ordering::Relaxed);
        self.head.store(head.wrapping_add(1), Ordering::Release);
        true
    }

    /// The oldest byte, if any (consumer).
    pub fn pop(&self) -> Option<u8> {
        let tail = self.tail.load(Ordering::Relaxed);
        if tail == self.head.load(Ordering::Acquire) {
            return None;
        }
        let b = self.bytes[tail % CAPACITY].load(Ordering::Relaxed);
        self.tail.store(tail.wrapping_add(1), Ordering::Release);
        Some(b)
    }

    /// Whether a push would store its byte (producer).
    pub fn has_room(&self) -> bool {
        self.head
            .load(Ordering::Relaxed)
            .wrapping_sub(self.tail.load(Ordering::Acquire))
            < CAPACITY
    }

    /// Whether nothing is waiting (consumer).
    pub fn is_empty(&self) -> bool {
        self.tail.load(Ordering::Relaxed) == self.head.load(Ordering::Acquire)
    }
}
