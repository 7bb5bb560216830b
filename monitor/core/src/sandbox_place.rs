//! Where one sandbox lives: its host memory and the core of each of its vCPUs. The
//! monitor keeps one of these per sandbox in its sandbox record; it is chosen at boot
//! and may change at run time (migration), only while every vCPU of the sandbox is
//! parked.

use quest_abi::{CoreId, HostPhysAddr, MAX_VCPUS_PER_SANDBOX};

/// The core of each vCPU of one sandbox, vCPU order (index = the vCPU's APIC ID).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreSet {
    cores: [CoreId; MAX_VCPUS_PER_SANDBOX],
    len: usize,
}

impl CoreSet {
    /// No vCPU.
    pub const EMPTY: Self = Self {
        cores: [CoreId::new(0); MAX_VCPUS_PER_SANDBOX],
        len: 0,
    };

    /// The cores of `cores` in order; `None` if there are more than
    /// [`MAX_VCPUS_PER_SANDBOX`].
    pub fn new(cores: impl IntoIterator<Item = CoreId>) -> Option<Self> {
        let mut set = Self::EMPTY;
        for core in cores {
            *set.cores.get_mut(set.len)? = core;
            set.len += 1;
        }
        Some(set)
    }

    /// The core of vCPU `vcpu`.
    pub fn of_vcpu(&self, vcpu: usize) -> Option<CoreId> {
        self.as_slice().get(vcpu).copied()
    }

    /// The vCPU that runs on `core`, if any.
    pub fn vcpu_on(&self, core: CoreId) -> Option<usize> {
        self.as_slice().iter().position(|&c| c == core)
    }

    /// The cores, vCPU order.
    pub fn as_slice(&self) -> &[CoreId] {
        &self.cores[..self.len]
    }

    /// Number of vCPUs.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no vCPU.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Host placement of one sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SandboxPlacement {
    /// Host-physical base of guest RAM (guest-physical 0), 2 MiB aligned.
    pub ram_hpa: HostPhysAddr,
    /// Host-physical base of the sandbox's channel directory page, if it has one.
    pub directory_hpa: Option<HostPhysAddr>,
    /// The core of each vCPU.
    pub cores: CoreSet,
}

impl SandboxPlacement {
    /// Not placed (yet).
    pub const UNPLACED: Self = Self {
        ram_hpa: HostPhysAddr::ZERO,
        directory_hpa: None,
        cores: CoreSet::EMPTY,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_sets_keep_vcpu_order_and_their_bound() {
        let c = |i| CoreId::new(i);
        let set = CoreSet::new([c(3), c(1)]).unwrap();
        assert_eq!(set.as_slice(), &[c(3), c(1)]);
        assert_eq!((set.of_vcpu(1), set.of_vcpu(2)), (Some(c(1)), None));
        assert_eq!((set.vcpu_on(c(3)), set.vcpu_on(c(2))), (Some(0), None));
        assert_eq!((set.len(), set.is_empty()), (2, false));
        assert!(CoreSet::EMPTY.is_empty());
        let all = (0..MAX_VCPUS_PER_SANDBOX as u32).map(c);
        assert_eq!(CoreSet::new(all.clone()).map(|s| s.len()), Some(16));
        assert_eq!(CoreSet::new(all.chain([c(99)])), None, "one vCPU too many");
    }
}
