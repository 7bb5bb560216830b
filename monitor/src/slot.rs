//! [`Slot`]: an optional value whose empty state is all-zero bytes.
//!
//! A static is placed in `.bss` (zeroed by the loader, no bytes in the image) only if its
//! initial value is all zeros. `Option<T>` may encode `None` in a niche of `T` with a
//! non-zero pattern, which moves a whole static array of them into `.data`: the per-core
//! arrival slots and the per-sandbox records took 278 KiB of the image that way. A `Slot`
//! is `#[repr(C, u32)]` with `Empty` as discriminant 0, so an empty one is zeros.

/// An optional value, empty as all-zero bytes.
#[repr(C, u32)]
#[derive(Debug)]
pub enum Slot<T> {
    /// Nothing (all zeros).
    Empty = 0,
    /// A value.
    Full(T),
}

impl<T> Slot<T> {
    /// Whether nothing is there.
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::Empty)
    }

    /// Takes the value out, leaving the slot empty. An empty slot is only looked at, not
    /// rewritten: callers poll slots under a spin lock, and a poll that moved the whole
    /// (large) slot each time held the lock long enough to starve the core filling it.
    pub fn take(&mut self) -> Option<T> {
        if self.is_empty() {
            return None;
        }
        match core::mem::replace(self, Self::Empty) {
            Self::Full(t) => Some(t),
            Self::Empty => None,
        }
    }

    /// A copy of the value, put there by `f` first if the slot is empty.
    pub fn get_or_insert_with(&mut self, f: impl FnOnce() -> T) -> T
    where
        T: Copy,
    {
        let t = match *self {
            Self::Full(t) => t,
            Self::Empty => f(),
        };
        *self = Self::Full(t);
        t
    }
}
