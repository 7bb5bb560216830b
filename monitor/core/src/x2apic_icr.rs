//! Translation and checking of a guest's x2APIC ICR write (Intel SDM Vol. 3, 11.12.9
//! "ICR Operation in x2APIC Mode").
//!
//! A guest sees virtual APIC IDs (its vCPU indices, as Hermit expects); the monitor
//! traps ICR writes, checks that the IPI can only reach the sandbox's own cores, and
//! sends it to the physical APIC IDs. Only fixed interrupts in physical destination mode
//! are allowed: INIT/SIPI would reset a core, NMI is how the monitor takes cores back,
//! SMI reaches firmware, and logical mode could name foreign cores.

/// Most vCPUs a target set can hold (matches `quest_abi::MAX_VCPUS_PER_SANDBOX`).
pub const MAX_TARGETS: usize = 16;
/// Destination meaning "every APIC" in x2APIC physical mode.
const BROADCAST: u32 = u32::MAX;

/// A checked IPI: the low half of the ICR to send, and which vCPUs receive it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipi {
    /// ICR bits 31:0 to write with each physical destination (shorthand cleared).
    pub command: u32,
    /// Bit `i` set: vCPU `i` receives the IPI.
    pub targets: u16,
}

impl Ipi {
    /// The vCPU indices that receive the IPI.
    pub fn target_indices(&self) -> impl Iterator<Item = usize> + '_ {
        (0..MAX_TARGETS).filter(move |i| self.targets & (1 << i) != 0)
    }

    /// The full ICR value for physical x2APIC ID `apic_id`.
    pub fn icr_for(&self, apic_id: u32) -> u64 {
        (u64::from(apic_id) << 32) | u64::from(self.command)
    }
}

/// Why an ICR write was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcrError {
    /// Delivery mode other than fixed (e.g. NMI, INIT, SIPI, SMI).
    DeliveryMode(u8),
    /// Logical destination mode.
    LogicalDestination,
    /// A destination that is not one of the sandbox's vCPUs.
    ForeignDestination(u32),
    /// Vector below 16 (illegal for fixed interrupts).
    BadVector(u8),
}

impl core::fmt::Display for IcrError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::DeliveryMode(m) => write!(f, "IPI with forbidden delivery mode {m}"),
            Self::LogicalDestination => f.write_str("IPI in logical destination mode"),
            Self::ForeignDestination(d) => write!(f, "IPI to APIC ID {d} outside the sandbox"),
            Self::BadVector(v) => write!(f, "IPI with illegal vector {v}"),
        }
    }
}

/// Checks and translates the ICR value `icr` written by vCPU `self_index` of a sandbox
/// with `vcpu_count` vCPUs.
pub fn translate_icr(icr: u64, self_index: usize, vcpu_count: usize) -> Result<Ipi, IcrError> {
    let vector = icr as u8;
    let mode = ((icr >> 8) & 7) as u8;
    let logical = icr & (1 << 11) != 0;
    let shorthand = (icr >> 18) & 3;
    let dest = (icr >> 32) as u32;
    if mode != 0 {
        return Err(IcrError::DeliveryMode(mode));
    }
    if vector < 16 {
        return Err(IcrError::BadVector(vector));
    }
    let count = vcpu_count.min(MAX_TARGETS);
    let all: u16 = if count == MAX_TARGETS {
        u16::MAX
    } else {
        (1u16 << count) - 1
    };
    let me = 1u16 << (self_index % MAX_TARGETS);
    let targets = match shorthand {
        1 => me,
        2 => all,
        3 => all & !me,
        _ if logical => return Err(IcrError::LogicalDestination),
        _ if dest == BROADCAST => all,
        _ if (dest as usize) < count => 1 << dest,
        _ => return Err(IcrError::ForeignDestination(dest)),
    };
    // Keep vector, delivery mode, level and trigger; clear destination mode and
    // shorthand (the monitor sends one physical IPI per target).
    let command = (icr as u32) & 0xC7FF & !(1 << 11);
    Ok(Ipi { command, targets })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn fixed_ipi_to_own_vcpu() {
        let ipi = translate_icr((1 << 32) | 0x4079, 0, 2).unwrap();
        assert_eq!(ipi.targets, 0b10);
        assert_eq!(ipi.icr_for(7), (7 << 32) | 0x4079);
        assert_eq!(ipi.target_indices().collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn shorthands_expand_to_own_vcpus() {
        assert_eq!(translate_icr(0xC_0070, 1, 3).unwrap().targets, 0b101);
        assert_eq!(translate_icr(0x8_0070, 1, 3).unwrap().targets, 0b111);
        assert_eq!(translate_icr(0x4_0070, 2, 3).unwrap().targets, 0b100);
        let b = translate_icr((u64::from(u32::MAX) << 32) | 0x70, 0, 16).unwrap();
        assert_eq!(b.targets, u16::MAX);
        assert_eq!(b.command & (3 << 18), 0, "shorthand cleared");
    }

    #[test]
    fn refuses_what_could_leave_the_sandbox() {
        let cases = [
            (
                (2 << 32) | 0x70,
                IcrError::ForeignDestination(2),
                "not ours",
            ),
            (0x470, IcrError::DeliveryMode(4), "NMI"),
            (0x4500, IcrError::DeliveryMode(5), "INIT"),
            (0x4601, IcrError::DeliveryMode(6), "SIPI"),
            (0x870, IcrError::LogicalDestination, "logical destination"),
            (0x5, IcrError::BadVector(5), "vector below 16"),
        ];
        for (icr, error, what) in cases {
            assert_eq!(translate_icr(icr, 0, 2), Err(error), "{what}");
        }
    }
}
