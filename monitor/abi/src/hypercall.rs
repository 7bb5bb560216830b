//! Hypercalls: how a sandbox asks its monitor for something.
//!
//! Quest's own calls use `VMCALL` with the [`Hypercall`] number in RAX and arguments in
//! RDI, RSI, RDX; the result comes back in RAX ([`OK`] or an error code below). Hermit
//! sandboxes use the uhyve port convention instead, defined by the `uhyve-interface` crate
//! (the monitor's `uhyve` decoder uses it directly).

/// Quest's hypercalls, by their number in RAX.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum Hypercall {
    /// Write bytes to the console: RDI = guest-physical address, RSI = length (at most
    /// [`CONSOLE_WRITE_MAX`]).
    ConsoleWrite = 1,
    /// End the sandbox: RDI = exit status (low 32 bits, signed).
    Exit = 2,
    /// Sleep until a doorbell arrives for this vCPU (or return at once if one is pending).
    Wait = 3,
    /// Ring the peer of a channel: RDI = index of the channel in this sandbox's directory.
    Doorbell = 4,
}

impl Hypercall {
    /// Every hypercall.
    pub const ALL: [Self; 4] = [Self::ConsoleWrite, Self::Exit, Self::Wait, Self::Doorbell];

    /// The number a guest puts in RAX.
    pub const fn number(self) -> u64 {
        self as u64
    }

    /// The hypercall a guest asked for (`None`: unknown number, answer [`ERR_UNKNOWN`]).
    pub const fn from_number(number: u64) -> Option<Self> {
        match number {
            1 => Some(Self::ConsoleWrite),
            2 => Some(Self::Exit),
            3 => Some(Self::Wait),
            4 => Some(Self::Doorbell),
            _ => None,
        }
    }
}

/// Most bytes one [`Hypercall::ConsoleWrite`] may pass.
pub const CONSOLE_WRITE_MAX: u64 = 4096;

/// The call succeeded.
pub const OK: u64 = 0;
/// An argument (address, length, index) was invalid.
pub const ERR_INVALID: u64 = u64::MAX - 21;
/// The hypercall number is unknown.
pub const ERR_UNKNOWN: u64 = u64::MAX - 37;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_and_unknown_ones_are_refused() {
        for h in Hypercall::ALL {
            assert_eq!(Hypercall::from_number(h.number()), Some(h));
        }
        assert_eq!(Hypercall::Doorbell.number(), 4, "the numbers are ABI");
        for n in [0, 5, OK, ERR_INVALID, ERR_UNKNOWN, u64::MAX] {
            assert_eq!(Hypercall::from_number(n), None);
        }
    }
}
