//! Boot cost: when every vCPU made its first VM entry, in TSC cycles.
//!
//! Each vCPU core reports the TSC when it starts setting up its vCPU ([`FirstEntries::launch`])
//! and the TSC just before its first successful VM entry ([`FirstEntries::entered`]). The
//! vCPU that completes the set learns so from `entered` and prints the costs: for the
//! system, from the monitor's first instruction to the last first entry; for each
//! sandbox, from the earliest launch of one of its vCPUs to the last first entry of one.
//! Lock-free: cores report concurrently.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use quest_abi::MAX_SANDBOXES;

/// First-entry bookkeeping for up to [`MAX_SANDBOXES`] sandboxes.
#[derive(Debug)]
pub struct FirstEntries {
    /// Per sandbox: earliest launch TSC (`u64::MAX` before any).
    launched: [AtomicU64; MAX_SANDBOXES],
    /// Per sandbox: latest first-entry TSC.
    entered: [AtomicU64; MAX_SANDBOXES],
    /// Per sandbox: vCPUs that made their first entry.
    count: [AtomicUsize; MAX_SANDBOXES],
    /// Latest first-entry TSC of all.
    last: AtomicU64,
    /// vCPUs of all sandboxes that made their first entry.
    total: AtomicUsize,
}

impl Default for FirstEntries {
    fn default() -> Self {
        Self::new()
    }
}

impl FirstEntries {
    /// Nothing launched or entered yet.
    pub const fn new() -> Self {
        Self {
            launched: [const { AtomicU64::new(u64::MAX) }; MAX_SANDBOXES],
            entered: [const { AtomicU64::new(0) }; MAX_SANDBOXES],
            count: [const { AtomicUsize::new(0) }; MAX_SANDBOXES],
            last: AtomicU64::new(0),
            total: AtomicUsize::new(0),
        }
    }

    /// A vCPU of `sandbox` starts its setup at TSC `tsc`.
    pub fn launch(&self, sandbox: usize, tsc: u64) {
        if let Some(l) = self.launched.get(sandbox) {
            l.fetch_min(tsc, Ordering::Relaxed);
        }
    }

    /// A vCPU of `sandbox` entered its guest for the first time at TSC `tsc` (read just
    /// before the entry). Returns true for exactly one call: the one that makes
    /// `all_vcpus` first entries in all; its caller reports the costs.
    pub fn entered(&self, sandbox: usize, tsc: u64, all_vcpus: usize) -> bool {
        let (Some(e), Some(c)) = (self.entered.get(sandbox), self.count.get(sandbox)) else {
            return false;
        };
        e.fetch_max(tsc, Ordering::Relaxed);
        self.last.fetch_max(tsc, Ordering::Relaxed);
        c.fetch_add(1, Ordering::Relaxed);
        // AcqRel: the completing call sees every earlier call's stores above.
        self.total.fetch_add(1, Ordering::AcqRel) + 1 == all_vcpus
    }

    /// Cycles from `start` (the monitor's first TSC reading) to the last first entry.
    pub fn total_cycles(&self, start: u64) -> u64 {
        self.last.load(Ordering::Acquire).saturating_sub(start)
    }

    /// The TSC at which `sandbox`'s first vCPU started its launch (`None` before that).
    /// Guests read the same TSC (no offset), so a guest can measure from here.
    pub fn launched_at(&self, sandbox: usize) -> Option<u64> {
        let tsc = self.launched.get(sandbox)?.load(Ordering::Acquire);
        (tsc != u64::MAX).then_some(tsc)
    }

    /// Cycles from `sandbox`'s first launch to its last first entry, once `vcpus` of its
    /// vCPUs have entered; `None` before that.
    pub fn sandbox_cycles(&self, sandbox: usize, vcpus: usize) -> Option<u64> {
        let count = self.count.get(sandbox)?.load(Ordering::Acquire);
        if count < vcpus || vcpus == 0 {
            return None;
        }
        let launched = self.launched[sandbox].load(Ordering::Acquire);
        let entered = self.entered[sandbox].load(Ordering::Acquire);
        Some(entered.saturating_sub(launched))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::sync::Arc;
    use std::vec::Vec;

    #[test]
    fn the_last_entry_completes_and_costs_are_measured() {
        let f = FirstEntries::new();
        assert_eq!(f.launched_at(0), None, "not launched yet");
        f.launch(0, 100);
        f.launch(1, 120);
        f.launch(0, 90);
        assert!(!f.entered(0, 200, 3));
        assert_eq!(f.sandbox_cycles(0, 2), None, "one of two vCPUs entered");
        assert!(!f.entered(1, 400, 3));
        assert!(f.entered(0, 300, 3), "third of three completes");
        assert_eq!(f.total_cycles(10), 390);
        assert_eq!(f.sandbox_cycles(0, 2), Some(300 - 90));
        assert_eq!(f.sandbox_cycles(1, 1), Some(400 - 120));
        assert_eq!(f.sandbox_cycles(MAX_SANDBOXES, 1), None);
        assert_eq!(f.launched_at(0), Some(90), "the earliest launch");
        assert_eq!(f.launched_at(MAX_SANDBOXES), None);
        assert!(
            !f.entered(MAX_SANDBOXES, 1, 1),
            "out-of-range sandbox is ignored"
        );
    }

    #[test]
    fn exactly_one_of_many_concurrent_cores_completes() {
        const CORES: usize = 8;
        for _ in 0..50 {
            let f = Arc::new(FirstEntries::new());
            let threads: Vec<_> = (0..CORES)
                .map(|i| {
                    let f = Arc::clone(&f);
                    std::thread::spawn(move || {
                        f.launch(i % 3, 1000 + i as u64);
                        f.entered(i % 3, 5000 + i as u64, CORES)
                    })
                })
                .collect();
            let done = threads
                .into_iter()
                .map(|t| t.join().unwrap())
                .filter(|&d| d)
                .count();
            assert_eq!(done, 1);
            assert_eq!(f.total_cycles(0), 5000 + CORES as u64 - 1);
        }
    }
}
