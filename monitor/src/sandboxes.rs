//! The monitor's one record per sandbox, indexed by [`SandboxId`]: where it lives
//! (memory and cores), its VMX structures (EPT, I/O and MSR bitmaps), and its lifecycle
//! state and counters. Every part of the monitor that needs to know something about a
//! sandbox at run time asks its record ([`record`]).
//!
//! The placement is written at boot by the boot core before any other core reads it, and
//! afterwards only by the core leading a stop of the sandbox while every one of its vCPUs
//! is parked (the park protocol in `vmx::lifecycle`); a vCPU re-reads it each time it
//! (re)launches. The VMX structures follow the placement: whoever changes the placement
//! drops them, and the next launch rebuilds them.

use crate::slot::Slot;
use core::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use quest_abi::{SandboxId, MAX_SANDBOXES, MAX_VCPUS_PER_SANDBOX};
use quest_monitor_core::exit::REASON_COUNT;
use quest_monitor_core::sandbox_ept::SandboxEptError;
pub use quest_monitor_core::sandbox_place::{CoreSet, SandboxPlacement};

/// Host-physical addresses of a sandbox's VMX structures.
#[derive(Clone, Copy, Debug)]
pub struct SandboxVmx {
    /// EPT pointer.
    pub eptp: u64,
    /// I/O bitmap A; bitmap B follows it.
    pub io_bitmaps: u64,
    /// MSR bitmap.
    pub msr_bitmap: u64,
}

/// Why a sandbox's structures could not be built.
#[derive(Clone, Copy, Debug)]
pub enum SetupError {
    /// The frame pool is exhausted.
    OutOfFrames,
    /// The EPT could not be built.
    Ept(SandboxEptError),
}

impl core::fmt::Display for SetupError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::OutOfFrames => f.write_str("the monitor's frame pool is exhausted"),
            Self::Ept(e) => write!(f, "cannot build its EPT: {e}"),
        }
    }
}

/// Final status of a sandbox: still running.
pub const STATUS_RUNNING: u32 = 0;
/// The sandbox exited (see `exit_code`).
pub const STATUS_EXITED: u32 = 1;
/// The sandbox was stopped after a fault.
pub const STATUS_HALTED: u32 = 2;
/// The sandbox was never started (a device it needs is absent).
pub const STATUS_NOT_STARTED: u32 = 3;

/// Run state of one sandbox, shared by its vCPU cores.
#[derive(Debug)]
pub struct SandboxState {
    /// Non-zero: every vCPU must stop and park (set by the one core that decides).
    pub stop: AtomicU32,
    /// Launch generation = launch count (0: not launched yet).
    pub generation: AtomicU32,
    /// Generation at which each vCPU parked (its acknowledgement of `stop`).
    pub parked: [AtomicU32; MAX_VCPUS_PER_SANDBOX],
    /// `STATUS_*`.
    pub status: AtomicU32,
    /// Exit status when `STATUS_EXITED`.
    pub exit_code: AtomicI32,
    /// Faults seen (each contained fault counts once).
    pub faults: AtomicU32,
    /// VM exits by basic reason.
    pub exits: [AtomicU64; REASON_COUNT],
    /// Per vCPU: a doorbell is pending (set by a peer's `DOORBELL`, taken by `WAIT`).
    pub doorbell_pending: [AtomicU32; MAX_VCPUS_PER_SANDBOX],
    /// Per vCPU: it sleeps in `WAIT` (a ringing peer then sends it an NMI).
    pub waiting: [AtomicU32; MAX_VCPUS_PER_SANDBOX],
    /// `DOORBELL` hypercalls this sandbox made that named one of its channels.
    pub doorbells: AtomicU64,
    /// `WAIT` hypercalls this sandbox made.
    pub waits: AtomicU64,
    /// `WAIT`s that actually slept (no doorbell was pending yet).
    pub sleeps: AtomicU64,
}

impl SandboxState {
    const fn new() -> Self {
        Self {
            stop: AtomicU32::new(0),
            generation: AtomicU32::new(0),
            parked: [const { AtomicU32::new(0) }; MAX_VCPUS_PER_SANDBOX],
            status: AtomicU32::new(STATUS_RUNNING),
            exit_code: AtomicI32::new(0),
            faults: AtomicU32::new(0),
            exits: [const { AtomicU64::new(0) }; REASON_COUNT],
            doorbell_pending: [const { AtomicU32::new(0) }; MAX_VCPUS_PER_SANDBOX],
            waiting: [const { AtomicU32::new(0) }; MAX_VCPUS_PER_SANDBOX],
            doorbells: AtomicU64::new(0),
            waits: AtomicU64::new(0),
            sleeps: AtomicU64::new(0),
        }
    }

    /// Counts one VM exit.
    pub fn count_exit(&self, reason: u32) {
        if let Some(c) = self.exits.get((reason & 0xffff) as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// VM exits of all reasons.
    pub fn total_exits(&self) -> u64 {
        self.exits.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// A sandbox's migrations (see `vmx::migrate`).
#[derive(Debug)]
pub struct MigrationState {
    /// Non-zero while a migration is decided or under way (taken by the requester),
    /// until the sandbox runs at its new placement (or the migration was abandoned).
    pub busy: AtomicU32,
    /// Non-zero from the release of a migration until its old placement is free again
    /// (vCPU 0's old core has printed the record and scrubbed the old region): the next
    /// migration's destination is not free meanwhile.
    pub settling: AtomicU32,
    /// TSC when the requester stopped the sandbox.
    pub started: AtomicU64,
    /// vCPUs that arrived on their destination core in this migration.
    pub arrived: AtomicU32,
    /// vCPUs that left their source core in this migration.
    pub left: AtomicU32,
    /// 1 + the index of the sandbox's own vCPU that asked (0: another sandbox asked).
    pub own_requester: AtomicU32,
    /// Migrations done.
    pub count: AtomicU64,
    /// The last migration's downtime, TSC cycles.
    pub last_downtime: AtomicU64,
    /// The longest downtime, TSC cycles.
    pub worst_downtime: AtomicU64,
    /// TSC when the last of its vCPUs left its source core in the migration under way.
    pub last_exit: AtomicU64,
    /// The `migrated` record of the last migration, printed by vCPU 0's old core after
    /// the release (printing on the serial port takes long: not inside the pause).
    pub report: spin::Mutex<Slot<quest_abi::console::Migrated<'static>>>,
    /// The cycles the migration under way hides from its clock (`downtime_clock =
    /// "hidden"`; 0 otherwise), set before the stop is released.
    pub hidden: AtomicU64,
    /// Non-zero while pre-copy tracks the sandbox's dirty pages (from the first round
    /// until the stop's final copy): RAM the monitor writes for it is marked dirty too.
    pub precopy: AtomicU32,
    /// The pre-copy rounds and pages of the migration under way.
    pub rounds: AtomicU32,
    /// Pages copied by the migration under way (pre-copy and stop).
    pub pages: AtomicU64,
    /// Non-zero: the dirty set is not to be trusted (the sandbox relaunched just as it
    /// stopped); the stop copies all of RAM.
    pub full_copy: AtomicU32,
    /// Non-zero: the migration under way was abandoned (the requester's answer).
    pub abandoned: AtomicU32,
    /// INVEPT requests of pre-copy (each round's): the latest epoch.
    pub flush: AtomicU32,
    /// Per vCPU: the flush epoch it last dropped its translations for.
    pub flushed: [AtomicU32; MAX_VCPUS_PER_SANDBOX],
    /// Per vCPU: non-zero from just before it checks `flush` and enters its guest until
    /// it is back in the monitor.
    pub in_guest: [AtomicU32; MAX_VCPUS_PER_SANDBOX],
}

impl MigrationState {
    const fn new() -> Self {
        Self {
            busy: AtomicU32::new(0),
            settling: AtomicU32::new(0),
            started: AtomicU64::new(0),
            arrived: AtomicU32::new(0),
            left: AtomicU32::new(0),
            own_requester: AtomicU32::new(0),
            count: AtomicU64::new(0),
            last_downtime: AtomicU64::new(0),
            worst_downtime: AtomicU64::new(0),
            last_exit: AtomicU64::new(0),
            hidden: AtomicU64::new(0),
            report: spin::Mutex::new(Slot::Empty),
            precopy: AtomicU32::new(0),
            rounds: AtomicU32::new(0),
            pages: AtomicU64::new(0),
            full_copy: AtomicU32::new(0),
            abandoned: AtomicU32::new(0),
            flush: AtomicU32::new(0),
            flushed: [const { AtomicU32::new(0) }; MAX_VCPUS_PER_SANDBOX],
            in_guest: [const { AtomicU32::new(0) }; MAX_VCPUS_PER_SANDBOX],
        }
    }
}

/// `SandboxState::stop` value of a migration: every vCPU leaves its core for its
/// standby core (any other non-zero value: the sandbox stops).
pub const STOP_MIGRATE: u32 = 2;

/// Everything the monitor keeps about one sandbox.
#[derive(Debug)]
pub struct SandboxRecord {
    /// Where it lives (see the module documentation for who may change it, and when).
    placement: spin::Mutex<SandboxPlacement>,
    /// Where it may move: its standby cores (and standby RAM region, or its own RAM when
    /// it migrates cores only). A migration swaps it with `placement`.
    standby: spin::Mutex<SandboxPlacement>,
    /// Its migrations.
    pub migration: MigrationState,
    /// Its VMX structures for the current placement, built by the first vCPU to ask.
    vmx: spin::Mutex<Slot<Result<SandboxVmx, SetupError>>>,
    /// VMX structures built ahead for the standby placement (by pre-copy, so that a
    /// move's pause does not include building them); [`Self::swap_placement`] installs
    /// them.
    standby_vmx: spin::Mutex<Slot<SandboxVmx>>,
    /// Lifecycle state and counters.
    pub state: SandboxState,
}

impl SandboxRecord {
    const fn new() -> Self {
        Self {
            placement: spin::Mutex::new(SandboxPlacement::UNPLACED),
            standby: spin::Mutex::new(SandboxPlacement::UNPLACED),
            migration: MigrationState::new(),
            vmx: spin::Mutex::new(Slot::Empty),
            standby_vmx: spin::Mutex::new(Slot::Empty),
            state: SandboxState::new(),
        }
    }

    /// The current placement.
    pub fn placement(&self) -> SandboxPlacement {
        *self.placement.lock()
    }

    /// The standby placement (no cores: it may not migrate).
    pub fn standby(&self) -> SandboxPlacement {
        *self.standby.lock()
    }

    /// Places the sandbox at boot (boot core, before any vCPU of it runs), and where it
    /// may move.
    pub fn place(&self, placement: SandboxPlacement, standby: SandboxPlacement) {
        *self.placement.lock() = placement;
        *self.standby.lock() = standby;
    }

    /// Swaps the placement and the standby placement (a migration's last step). Only
    /// while no vCPU of the sandbox is in its guest. When the RAM moves, the VMX
    /// structures are dropped (and returned, for their frames), to be rebuilt for the new
    /// RAM by the next vCPU to ask.
    pub fn swap_placement(&self) -> (SandboxPlacement, SandboxPlacement, Option<SandboxVmx>) {
        let mut current = self.placement.lock();
        let mut standby = self.standby.lock();
        core::mem::swap(&mut *current, &mut *standby);
        let dropped = if current.ram_hpa != standby.ram_hpa {
            let mut vmx = self.vmx.lock();
            let old = match vmx.take() {
                Some(Ok(old)) => Some(old),
                _ => None,
            };
            if let Some(ahead) = self.standby_vmx.lock().take() {
                *vmx = Slot::Full(Ok(ahead));
            }
            old
        } else {
            None
        };
        (*standby, *current, dropped)
    }

    /// Whether the sandbox's RAM moves when it migrates (a separate standby region): then
    /// its EPT tracks dirty pages (`EPT_DIRTY_FLAGS`).
    pub fn moves_memory(&self) -> bool {
        let standby = self.standby();
        !standby.cores.is_empty() && standby.ram_hpa != self.placement().ram_hpa
    }

    /// The EPT pointer of its current structures, if built.
    pub fn eptp(&self) -> Option<u64> {
        match &*self.vmx.lock() {
            Slot::Full(Ok(vmx)) => Some(vmx.eptp),
            _ => None,
        }
    }

    /// Builds the standby placement's VMX structures ahead of a move (once; kept until
    /// a swap installs them).
    pub fn prebuild_standby(
        &self,
        build: impl FnOnce(&SandboxPlacement) -> Result<SandboxVmx, SetupError>,
    ) -> Result<(), SetupError> {
        let standby = self.standby();
        let flags = if self.moves_memory() {
            EPT_DIRTY_FLAGS.load(Ordering::Acquire)
        } else {
            0
        };
        let mut ahead = self.standby_vmx.lock();
        if ahead.is_empty() {
            let v = build(&standby)?;
            *ahead = Slot::Full(SandboxVmx {
                eptp: v.eptp | flags,
                ..v
            });
        }
        Ok(())
    }

    /// The VMX structures for the current placement, built with `build` by the first
    /// caller (the others wait for it and get the same result).
    pub fn vmx(
        &self,
        build: impl FnOnce(&SandboxPlacement) -> Result<SandboxVmx, SetupError>,
    ) -> Result<SandboxVmx, SetupError> {
        let flags = if self.moves_memory() {
            EPT_DIRTY_FLAGS.load(Ordering::Acquire)
        } else {
            0
        };
        let mut vmx = self.vmx.lock();
        vmx.get_or_insert_with(|| {
            build(&self.placement()).map(|v| SandboxVmx {
                eptp: v.eptp | flags,
                ..v
            })
        })
    }
}

/// EPTP bits for sandboxes that move their RAM: the accessed and dirty flags (EPTP bit
/// 6) when the CPU has them (set once at boot by `vmx::check_support`, before any EPT is
/// built), else 0 and such sandboxes migrate by stop-and-copy.
pub static EPT_DIRTY_FLAGS: AtomicU64 = AtomicU64::new(0);

/// Every sandbox's record, and how many have ended.
struct Sandboxes {
    records: [SandboxRecord; MAX_SANDBOXES],
    finished: AtomicUsize,
}

static SANDBOXES: Sandboxes = Sandboxes {
    records: [const { SandboxRecord::new() }; MAX_SANDBOXES],
    finished: AtomicUsize::new(0),
};

/// The record of sandbox `s` (< `MAX_SANDBOXES`, as every `SandboxId` of a validated
/// table is).
pub fn record(s: SandboxId) -> &'static SandboxRecord {
    &SANDBOXES.records[s.index() % MAX_SANDBOXES]
}

/// The run state of sandbox `s` (its record's `state`).
pub fn state(s: SandboxId) -> &'static SandboxState {
    &record(s).state
}

/// Counts one more sandbox that has ended (exited or halted); returns how many have.
pub fn finish_one() -> usize {
    SANDBOXES.finished.fetch_add(1, Ordering::AcqRel) + 1
}
