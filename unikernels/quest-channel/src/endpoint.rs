//! What both ends of a channel hold: the shared memory, the poisoned flag, the doorbell
//! and its sleep/ring bookkeeping, the spin limit and the directory claim. [`Sender`]
//! and [`Receiver`] each embed one [`Endpoint`] by value (no extra indirection) next to
//! their own two indices.
//!
//! The sleep protocol is symmetric: an endpoint that finds no progress announces a sleep
//! by bumping its own sleep counter, then sleeps unless the peer's index moved meanwhile;
//! an endpoint that made progress rings the peer once per announced sleep. Which counter
//! and index are "own" and "peer" is passed in as a field accessor of [`Shared`] (a
//! function item, so every call is resolved at compile time).
//!
//! [`Sender`]: crate::Sender
//! [`Receiver`]: crate::Receiver

use crate::directory::Opened;
use crate::doorbell::{Doorbell, Spin};
use crate::shared::Shared;
use core::sync::atomic::{fence, AtomicU64, Ordering};

/// How many times a blocked endpoint polls before it sleeps (when it has a doorbell).
const DEFAULT_SPIN_LIMIT: u32 = 1 << 14;

/// The state both ends of a channel share in shape (see the module documentation).
#[derive(Debug)]
pub(crate) struct Endpoint<D: Doorbell> {
    pub(crate) shared: Shared,
    /// Set for good once the peer broke the protocol.
    pub(crate) poisoned: bool,
    doorbell: D,
    /// The value we last wrote to our sleep counter.
    sleep_count: u64,
    /// The peer's sleep counter value we last rang for.
    rung_for: u64,
    spin_limit: u32,
    pub(crate) opened: Opened,
}

impl Endpoint<Spin> {
    /// A spinning endpoint over `shared`, picking up our sleep counter where `own_sleep`
    /// says it is (an endpoint may be re-created over the same memory).
    pub(crate) fn new(
        shared: Shared,
        poisoned: bool,
        own_sleep: impl Fn(&Shared) -> &AtomicU64,
    ) -> Self {
        Self {
            sleep_count: own_sleep(&shared).load(Ordering::Relaxed),
            shared,
            poisoned,
            doorbell: Spin,
            rung_for: 0,
            spin_limit: DEFAULT_SPIN_LIMIT,
            opened: Opened::default(),
        }
    }
}

impl<D: Doorbell> Endpoint<D> {
    /// The same endpoint with `doorbell`.
    pub(crate) fn with_doorbell<E: Doorbell>(self, doorbell: E) -> Endpoint<E> {
        Endpoint {
            shared: self.shared,
            poisoned: self.poisoned,
            doorbell,
            sleep_count: self.sleep_count,
            rung_for: self.rung_for,
            spin_limit: self.spin_limit,
            opened: self.opened,
        }
    }

    /// Sets how many polls without progress come before a sleep (only with a doorbell).
    pub(crate) fn set_spin_limit(&mut self, polls: u32) {
        self.spin_limit = polls;
    }

    /// Largest message this channel can carry.
    pub(crate) fn max_message_len(&self) -> usize {
        self.shared.max_message()
    }

    /// Rings the peer if it announced (in `peer_sleep`) a sleep we have not rung for.
    /// Called after publishing our new index.
    #[inline]
    pub(crate) fn wake_peer(&mut self, peer_sleep: impl Fn(&Shared) -> &AtomicU64) {
        // Pairs with the peer's fence between announcing its sleep and re-reading our
        // index: either it sees our new index, or we see its announcement.
        fence(Ordering::SeqCst);
        let sleeping = peer_sleep(&self.shared).load(Ordering::Relaxed);
        if sleeping != self.rung_for {
            self.rung_for = sleeping;
            self.doorbell.ring(self.opened.index);
        }
    }

    /// One wait for the peer after `polls` polls without progress: a `pause`, or (with a
    /// doorbell, after the spin limit) a sleep announced in `own_sleep`, skipped if
    /// `peer_index` has moved from `seen` meanwhile.
    #[inline]
    pub(crate) fn pause(
        &mut self,
        polls: &mut u32,
        own_sleep: impl Fn(&Shared) -> &AtomicU64,
        peer_index: impl Fn(&Shared) -> &AtomicU64,
        seen: u64,
    ) {
        if D::SLEEPS && *polls >= self.spin_limit {
            self.sleep_count = self.sleep_count.wrapping_add(1);
            own_sleep(&self.shared).store(self.sleep_count, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            if peer_index(&self.shared).load(Ordering::Relaxed) == seen {
                self.doorbell.wait();
            }
            *polls = 0;
        } else {
            core::hint::spin_loop();
            *polls = polls.saturating_add(1);
        }
    }
}

/// The public methods [`Sender`](crate::Sender) and [`Receiver`](crate::Receiver) share
/// word for word, written once: each type holds its [`Endpoint`] in a field `ep` next to
/// its two indices. `$verb` is what the sandbox does to the channel ("writes"/"reads"),
/// `$blocking` the method that waits, `$role` the directory role. Each type sets itself
/// up over checked shared memory in its own `from_shared`.
macro_rules! endpoint_methods {
    ($End:ident, $role:expr, $verb:literal, $blocking:ident, [$($index:ident),*]) => {
        impl $End<$crate::doorbell::Spin> {
            #[doc = concat!("A ", stringify!($End), " over memory the caller provides.")]
            ///
            /// # Safety
            #[doc = concat!("`memory` meets the crate's [memory contract](crate#memory-contract) for the end that ", $verb, ".")]
            pub unsafe fn from_memory(
                memory: $crate::shared::ChannelMemory,
            ) -> Result<Self, $crate::error::LayoutError> {
                // SAFETY: forwarded from our caller.
                let shared = unsafe { $crate::shared::Shared::new(memory) }?;
                Ok(Self::from_shared(shared))
            }

            #[doc = concat!("Opens the channel `name`, which this sandbox ", $verb, ", from the directory")]
            /// the monitor maps at [`quest_abi::layout::DIRECTORY_GPA`].
            ///
            /// Only in a Quest sandbox (bare or Hermit); see [`crate::Directory::fixed`].
            #[cfg(any(target_os = "none", target_os = "hermit", doc))]
            pub fn open(name: &str) -> Result<Self, crate::OpenError> {
                let (mut end, opened) = crate::directory::open(name, $role, Self::from_memory)?;
                end.ep.opened = opened;
                end.opened();
                Ok(end)
            }
        }

        impl<D: $crate::doorbell::Doorbell> $End<D> {
            #[doc = concat!("The same ", stringify!($End), ", sleeping through `doorbell` when [`", stringify!($End), "::", stringify!($blocking), "`]")]
            /// cannot go on, and ringing it when a sleeping peer can go on again.
            pub fn with_doorbell<E: $crate::doorbell::Doorbell>(self, doorbell: E) -> $End<E> {
                $End {
                    ep: self.ep.with_doorbell(doorbell),
                    $($index: self.$index,)*
                }
            }

            #[doc = concat!("Sets how many times [`", stringify!($End), "::", stringify!($blocking), "`] polls the ring before it sleeps")]
            /// (only with a doorbell).
            pub fn with_spin_limit(mut self, polls: u32) -> Self {
                self.ep.set_spin_limit(polls);
                self
            }

            /// Largest message this channel can carry (a receive buffer this long takes any
            /// message).
            pub fn max_message_len(&self) -> usize {
                self.ep.max_message_len()
            }

            /// The channel's index in this sandbox's directory (0 for an end built from
            /// memory).
            pub fn directory_index(&self) -> usize {
                self.ep.opened.index
            }

            /// Whether the channel has been found corrupt (every call fails from then on).
            pub fn is_corrupt(&self) -> bool {
                self.ep.poisoned
            }
        }
    };
}
pub(crate) use endpoint_methods;
