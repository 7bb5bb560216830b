//! How an endpoint that has waited long enough sleeps, and how its peer wakes it.
//!
//! Spinning costs no VM exit but burns the core. An endpoint given a [`Doorbell`] spins a
//! while, then announces that it sleeps (a counter in its own area, see [`crate::wire`]) and
//! calls [`Doorbell::wait`]; its peer, after every message it publishes or consumes, checks
//! that counter and calls [`Doorbell::ring`] once per new value. Both endpoints of a
//! channel must have a doorbell for sleeping to work: a peer without one never rings.

/// A runtime's way to sleep until woken and to wake the peer of a channel.
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

/// The Quest monitor's doorbell: hypercalls `DOORBELL` and `WAIT`
/// ([`quest_abi::hypercall`]) through `VMCALL`.
#[cfg(target_arch = "x86_64")]
#[derive(Debug)]
pub struct VmcallDoorbell {
    _private: (),
}

#[cfg(target_arch = "x86_64")]
impl VmcallDoorbell {
    /// The monitor's doorbell.
    ///
    /// # Safety
    /// The caller runs inside a Quest sandbox (VMX non-root under the Quest monitor), in
    /// ring 0: anywhere else `VMCALL` raises #UD.
    pub unsafe fn new() -> Self {
        Self { _private: () }
    }

    /// Issues one hypercall and returns RAX.
    fn vmcall(call: quest_abi::hypercall::Hypercall, arg0: u64) -> u64 {
        let ret: u64;
        // SAFETY: `new`'s contract puts us in a Quest sandbox, where VMCALL enters the
        // monitor, which validates the arguments, touches no guest memory for DOORBELL and
        // WAIT, and returns with every register but RAX preserved.
        unsafe {
            core::arch::asm!(
                "vmcall",
                inlateout("rax") call.number() => ret,
                in("rdi") arg0,
                options(nostack),
            );
        }
        ret
    }
}

#[cfg(target_arch = "x86_64")]
impl Doorbell for VmcallDoorbell {
    fn ring(&self, directory_index: usize) {
        // An error means the monitor does not know the channel; the peer then wakes only
        // from its own spinning, which is all we could do about it anyway.
        let _ = Self::vmcall(
            quest_abi::hypercall::Hypercall::Doorbell,
            directory_index as u64,
        );
    }

    fn wait(&self) {
        let _ = Self::vmcall(quest_abi::hypercall::Hypercall::Wait, 0);
    }
}
