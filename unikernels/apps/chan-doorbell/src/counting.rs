//! A doorbell that counts its hypercalls.

use core::sync::atomic::{AtomicU64, Ordering};
use quest_channel::Doorbell;
use quest_rt::doorbell::VmcallDoorbell;

/// `WAIT` hypercalls made.
pub static WAITS: AtomicU64 = AtomicU64::new(0);
/// `DOORBELL` hypercalls made.
pub static RINGS: AtomicU64 = AtomicU64::new(0);

/// The monitor's doorbell, counted.
#[derive(Debug)]
pub struct CountingDoorbell(pub VmcallDoorbell);

impl Doorbell for CountingDoorbell {
    fn ring(&self, directory_index: usize) {
        RINGS.fetch_add(1, Ordering::Relaxed);
        self.0.ring(directory_index);
    }

    fn wait(&self) {
        WAITS.fetch_add(1, Ordering::Relaxed);
        self.0.wait();
    }
}
