//! How an endpoint that has waited long enough sleeps, and how its peer wakes it.
//!
//! Spinning costs no VM exit but burns the core. An endpoint given a [`Doorbell`] spins a
//! while, then announces that it sleeps (a counter in its own area, see [`crate::wire`]) and
//! calls [`Doorbell::wait`]; its peer, after every message it publishes or consumes, checks
//! that counter and calls [`Doorbell::ring`] once per new value. Both endpoints of a
//! channel must have a doorbell for sleeping to work: a peer without one never rings.

/// A runtime's way to sleep until woken and to wake the peer of a channel. Bare
/// sandboxes use `quest_rt::doorbell::VmcallDoorbell` (the monitor's `WAIT` and
/// `DOORBELL` hypercalls).
pub trait Doorbell {
    /// Whether this doorbell sleeps at all. Endpoints skip the sleep protocol (a fence and
    /// a load per message) when it is `false`.
    const SLEEPS: bool = true;

    /// Wakes the peer of the channel at `directory_index` in this sandbox's directory
    /// (the peer's [`Doorbell::wait`] returns, now or at its next call).
    fn ring(&self, directory_index: usize);

    /// Sleeps until a doorbell for this core arrives; returns at once if one arrived since
    /// the last call. May return spuriously: callers re-check the channel.
    fn wait(&self);
}

/// No doorbell: endpoints spin with `pause` until they can go on. The default.
#[derive(Clone, Copy, Debug, Default)]
pub struct Spin;

impl Doorbell for Spin {
    const SLEEPS: bool = false;

    fn ring(&self, _directory_index: usize) {}

    fn wait(&self) {
        core::hint::spin_loop();
    }
}
