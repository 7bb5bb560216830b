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
    /// Migrate a sandbox to its standby placement (its standby cores, and its standby
    /// RAM region if it has one): RDI = the sandbox's index in the table, or
    /// [`MIGRATE_SELF`]. The result in RAX is [`OK`] once the sandbox runs at its new
    /// placement (for a sandbox migrating itself: the call returns there), a
    /// [`MigrateRefusal`] code when the monitor refuses (then nothing was stopped), or
    /// [`ERR_INVALID`] when RDI names no sandbox. A sandbox index may carry
    /// [`MIGRATE_STOP_AND_COPY`].
    Migrate = 5,
    /// RAX = the VM exits the calling sandbox has taken so far (all its vCPUs, every
    /// launch, this call included): how a sandbox measures the exits of a phase of its
    /// own (two calls; the second counts itself).
    ExitCount = 6,
}

impl Hypercall {
    /// Every hypercall.
    pub const ALL: [Self; 6] = [
        Self::ConsoleWrite,
        Self::Exit,
        Self::Wait,
        Self::Doorbell,
        Self::Migrate,
        Self::ExitCount,
    ];

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
            5 => Some(Self::Migrate),
            6 => Some(Self::ExitCount),
            _ => None,
        }
    }
}

/// [`Hypercall::Migrate`]'s RDI for "the calling sandbox".
pub const MIGRATE_SELF: u64 = u64::MAX;

/// Or'ed into a sandbox index in [`Hypercall::Migrate`]'s RDI (not into [`MIGRATE_SELF`],
/// which stays a plain request): migrate without pre-copy, stopping the sandbox and
/// copying all of its RAM while it is stopped. The admission test counts that whole copy
/// against `max_downtime`. It exists to compare pre-copy with stop-and-copy on the same
/// platform (`quest-build bench`).
pub const MIGRATE_STOP_AND_COPY: u64 = 1 << 32;

/// [`Hypercall::Migrate`]'s RDI split into the sandbox it names (an index or
/// [`MIGRATE_SELF`]) and whether it asks for a stop-and-copy ([`MIGRATE_STOP_AND_COPY`]).
pub const fn migrate_request(rdi: u64) -> (u64, bool) {
    if rdi == MIGRATE_SELF {
        (rdi, false)
    } else {
        (
            rdi & !MIGRATE_STOP_AND_COPY,
            rdi & MIGRATE_STOP_AND_COPY != 0,
        )
    }
}

/// Why the monitor refused a [`Hypercall::Migrate`] (its RAX). Nothing was stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum MigrateRefusal {
    /// The caller is not among the sandbox's `migrate_by`, or the sandbox has no standby
    /// placement.
    NotAllowed = u64::MAX - 60,
    /// A migration of this sandbox is already under way, or it is stopping.
    Busy = u64::MAX - 61,
    /// Even the shortest stop this migration needs would exceed the sandbox's
    /// `max_downtime` (the admission test, with the calibrated costs).
    WouldExceedMaxDowntime = u64::MAX - 62,
    /// A standby core or the standby region is not free (in use, or its core never
    /// started).
    DestinationNotFree = u64::MAX - 63,
    /// Accepted, then abandoned before anything stopped: pre-copy did not converge
    /// within its rounds, or the sandbox stopped (exit or fault) meanwhile. The sandbox
    /// runs where it was (or `on_fault` applied).
    Abandoned = u64::MAX - 64,
    /// The sandbox owns PCI functions or IRQ lines: their interrupts are routed to its
    /// cores and their DMA reaches its RAM, so it stays where it is.
    OwnsDevices = u64::MAX - 65,
}

impl MigrateRefusal {
    /// Every refusal.
    pub const ALL: [Self; 6] = [
        Self::NotAllowed,
        Self::Busy,
        Self::WouldExceedMaxDowntime,
        Self::DestinationNotFree,
        Self::Abandoned,
        Self::OwnsDevices,
    ];

    /// The code in RAX.
    pub const fn code(self) -> u64 {
        self as u64
    }

    /// The refusal a code stands for (`None`: not a refusal).
    pub fn from_code(code: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    /// A few words for reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NotAllowed => "not allowed",
            Self::Busy => "busy",
            Self::WouldExceedMaxDowntime => "would exceed max_downtime",
            Self::DestinationNotFree => "destination not free",
            Self::Abandoned => "abandoned",
            Self::OwnsDevices => "it owns PCI devices or IRQ lines (interrupts and DMA are tied to its cores and RAM)",
        }
    }
}

/// What a migration's stop phase costs, in TSC cycles, as the platform measured them
/// (the calibration page at run time, a platform profile on the host).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MigrationCosts {
    /// Sending one IPI (the NMI that stops a vCPU).
    pub ipi: u64,
    /// One VM exit and entry (each vCPU leaves its guest once and enters it again).
    pub vm_exit_entry: u64,
    /// Copying one KiB of memory.
    pub copy_per_kib: u64,
}

impl MigrationCosts {
    /// The costs from the platform's measured worst cases (the calibration page at run
    /// time, a platform profile on the host): the largest IPI and VM exit/entry, and the
    /// slower of the cold and warm copy rates. The monitor and `quest-build` both derive
    /// them here, so the admission test and `quest-build bounds` agree.
    pub fn from_max(
        ipi: u64,
        vm_exit_entry: u64,
        copy_cold_per_kib: u64,
        copy_warm_per_kib: u64,
    ) -> Self {
        Self {
            ipi,
            vm_exit_entry,
            copy_per_kib: copy_cold_per_kib.max(copy_warm_per_kib),
        }
    }
}

/// `max_downtime_ns` in TSC cycles at `tsc_khz`, rounded down (a budget never grows by
/// rounding). The monitor's admission test and `quest-build bounds` use it.
pub fn budget_cycles(max_downtime_ns: u64, tsc_khz: u64) -> u64 {
    let c = u128::from(max_downtime_ns) * u128::from(tsc_khz) / 1_000_000;
    u64::try_from(c).unwrap_or(u64::MAX)
}

/// What one running vCPU is assumed to dirty at least before the stop: 2 MiB. The
/// monitor tracks dirty pages at 4 KiB (the RAM of a sandbox that moves its memory is
/// mapped with 4 KiB EPT pages), so this floor is conservative.
pub const DIRTY_GRANULE: u64 = crate::LARGE_PAGE_SIZE;

/// The shortest downtime a migration of a sandbox with `vcpus` vCPUs and `ram` bytes of
/// RAM can ever have: every vCPU is stopped (an IPI and its VM exit) and resumed (its VM
/// entry); with `separate` memory the stop phase also copies at least what the running
/// vCPUs keep dirtying, one granule each (its stack), at most all of RAM. A `max_downtime`
/// below this can never be met. `quest-build` checks and bounds with it; the monitor,
/// which also knows the sandbox's past stops, with [`least_downtime_cycles`].
pub fn min_downtime_cycles(vcpus: u64, ram: u64, separate: bool, c: &MigrationCosts) -> u64 {
    least_downtime_cycles(vcpus, ram, separate, c, 0)
}

/// [`min_downtime_cycles`] with the stop's fixed part [`stop_fixed_cycles`] given
/// `measured`.
pub fn least_downtime_cycles(
    vcpus: u64,
    ram: u64,
    separate: bool,
    c: &MigrationCosts,
    measured: u64,
) -> u64 {
    let park = stop_fixed_cycles(vcpus, c, measured);
    let copy = if separate {
        copy_cycles(vcpus.saturating_mul(DIRTY_GRANULE).min(ram), c)
    } else {
        0
    };
    park.saturating_add(copy)
}

/// The fixed part of a migration's stop (all of it but the copy): the calibrated floor,
/// an IPI, a VM exit and a VM entry per vCPU, or `measured` when larger: the largest
/// fixed part the monitor measured in this sandbox's earlier stops (0: none yet). The
/// floor leaves out what the monitor does per stop besides: each vCPU's state the VMCS
/// does not hold saved and restored (XSAVE, about 30 MSRs and x2APIC registers), its
/// VMCS cleared and loaded on another core with new host state, the hand-over between
/// cores, the placement swap and the report. No boot constant measures that path, and on
/// Bochs it is hundreds of times the floor (about 40 000 cycles for one vCPU against 85),
/// so the monitor learns it from the sandbox's own stops.
pub fn stop_fixed_cycles(vcpus: u64, c: &MigrationCosts, measured: u64) -> u64 {
    vcpus
        .saturating_mul(c.ipi.saturating_add(c.vm_exit_entry))
        .max(measured)
}

/// Cycles to copy `bytes` at the measured rate.
pub fn copy_cycles(bytes: u64, c: &MigrationCosts) -> u64 {
    bytes.div_ceil(1024).saturating_mul(c.copy_per_kib)
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
        assert_eq!(Hypercall::Migrate.number(), 5, "the numbers are ABI");
        assert_eq!(migrate_request(MIGRATE_SELF), (MIGRATE_SELF, false));
        assert_eq!(migrate_request(3), (3, false));
        assert_eq!(migrate_request(3 | MIGRATE_STOP_AND_COPY), (3, true));
        assert_eq!(
            migrate_request(u64::MAX - 1),
            (u64::MAX - 1 - (1 << 32), true)
        );
        assert_eq!(Hypercall::ExitCount.number(), 6, "the numbers are ABI");
        for n in [0, 7, OK, ERR_INVALID, ERR_UNKNOWN, u64::MAX] {
            assert_eq!(Hypercall::from_number(n), None);
        }
    }

    #[test]
    fn refusal_codes_are_distinct_from_every_other_result() {
        for r in MigrateRefusal::ALL {
            assert_eq!(MigrateRefusal::from_code(r.code()), Some(r));
            assert!(![OK, ERR_INVALID, ERR_UNKNOWN].contains(&r.code()));
        }
        for n in [OK, ERR_INVALID, ERR_UNKNOWN, 5] {
            assert_eq!(MigrateRefusal::from_code(n), None);
        }
    }

    #[test]
    fn the_downtime_floor_counts_parking_and_the_least_final_copy() {
        let c = MigrationCosts {
            ipi: 20,
            vm_exit_entry: 70,
            copy_per_kib: 135,
        };
        assert_eq!(min_downtime_cycles(2, 64 << 20, false, &c), 2 * 90);
        // Two vCPUs, separate memory: at least two 2 MiB granules are copied.
        assert_eq!(
            min_downtime_cycles(2, 64 << 20, true, &c),
            2 * 90 + 2 * 2048 * 135
        );
        // Never more than all of RAM.
        assert_eq!(
            min_downtime_cycles(4, 4 << 20, true, &c),
            4 * 90 + 4096 * 135
        );
        assert_eq!(copy_cycles(1, &c), 135, "a started KiB counts");
        let huge = MigrationCosts {
            ipi: u64::MAX,
            vm_exit_entry: 1,
            copy_per_kib: u64::MAX,
        };
        assert_eq!(min_downtime_cycles(3, u64::MAX, true, &huge), u64::MAX);
        // A measured fixed part replaces the floor when larger, never when smaller.
        assert_eq!(stop_fixed_cycles(2, &c, 0), 2 * 90);
        assert_eq!(stop_fixed_cycles(2, &c, 100), 2 * 90);
        assert_eq!(stop_fixed_cycles(2, &c, 40_000), 40_000);
        assert_eq!(
            least_downtime_cycles(2, 64 << 20, true, &c, 40_000),
            40_000 + 2 * 2048 * 135
        );
    }
}
