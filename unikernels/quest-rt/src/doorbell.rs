//! The monitor's doorbell for channel endpoints: the `DOORBELL` and `WAIT` hypercalls
//! ([`quest_abi::hypercall`]) behind quest-channel's [`Doorbell`] trait.

use crate::hypercall::hypercall;
use quest_abi::hypercall::Hypercall;
use quest_channel::Doorbell;

/// Sleeps in the monitor (`WAIT`) and wakes a channel's peer (`DOORBELL`).
#[derive(Clone, Copy, Debug, Default)]
pub struct VmcallDoorbell;

impl Doorbell for VmcallDoorbell {
    fn ring(&self, directory_index: usize) {
        // An error means the monitor does not know the channel; the peer then wakes only
        // from its own spinning, which is all we could do about it anyway.
        let _ = hypercall(Hypercall::Doorbell, directory_index as u64, 0);
    }

    fn wait(&self) {
        let _ = hypercall(Hypercall::Wait, 0, 0);
    }
}
