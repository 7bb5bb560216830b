//! Per-sandbox VMX resources (EPT, I/O and MSR bitmaps; built once, shared by its vCPUs)
//! and per-sandbox run state (lifecycle flags, exit status, counters for the summary).

use super::host::alloc_frame;
use crate::system::System;
use core::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use quest_abi::{HostPhysAddr, SandboxId, MAX_SANDBOXES, MAX_VCPUS_PER_SANDBOX};
use quest_monitor_core::ept::EptMemory;
use quest_monitor_core::exit::REASON_COUNT;
use quest_monitor_core::io_bitmap::{build_io_bitmaps, IO_BITMAPS_SIZE};
use quest_monitor_core::msr_policy::{build_msr_bitmap, MSR_BITMAP_SIZE};
use quest_monitor_core::sandbox_ept::{build_sandbox_ept, HostPlacement, SandboxEptError};

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

/// EPT tables in identity-mapped frames of the monitor's pool.
pub(super) struct PoolFrames;

impl EptMemory for PoolFrames {
    fn alloc_table(&mut self) -> Option<HostPhysAddr> {
        alloc_frame().map(HostPhysAddr::new)
    }
    fn read(&self, table: HostPhysAddr, index: usize) -> u64 {
        let table = table.as_u64() as *const u64;
        // SAFETY: `table` is a frame this builder allocated (identity mapped), index < 512.
        unsafe { table.add(index % 512).read_volatile() }
    }
    fn write(&mut self, table: HostPhysAddr, index: usize, value: u64) {
        let table = table.as_u64() as *mut u64;
        // SAFETY: as in `read`; no vCPU uses this EPT before it is complete.
        unsafe { table.add(index % 512).write_volatile(value) }
    }
}

static RESOURCES: [spin::Once<Result<SandboxVmx, SetupError>>; MAX_SANDBOXES] =
    [const { spin::Once::new() }; MAX_SANDBOXES];

/// The sandbox's VMX structures, built by the first of its vCPUs to ask.
pub fn resources(sys: &System, s: SandboxId) -> Result<SandboxVmx, SetupError> {
    *RESOURCES[s.index()].call_once(|| build(sys, s))
}

fn build(sys: &System, s: SandboxId) -> Result<SandboxVmx, SetupError> {
    let place = sys.sandboxes[s.index()];
    let mut channel_hpas = [HostPhysAddr::ZERO; quest_abi::MAX_CHANNELS];
    for (slot, c) in channel_hpas.iter_mut().zip(sys.channels) {
        *slot = c.hpa;
    }
    let host = HostPlacement {
        ram_hpa: place.ram_hpa,
        directory_hpa: place.directory_hpa,
        channel_hpas: &channel_hpas[..sys.channels.len().min(quest_abi::MAX_CHANNELS)],
        calibration_hpa: crate::calibrate::page_hpa(),
    };
    let ept = build_sandbox_ept(sys.table.raw(), s.index(), &host, PoolFrames)
        .map_err(SetupError::Ept)?;

    let io = crate::frame_pool::alloc_zeroed(2).ok_or(SetupError::OutOfFrames)?;
    // SAFETY: two fresh contiguous frames, identity mapped, not shared yet.
    let io_bytes = unsafe { &mut *(io as *mut [u8; IO_BITMAPS_SIZE]) };
    let devices = sys
        .table
        .sandbox(s)
        .map_or(&[][..], |sb| sb.device_entries());
    build_io_bitmaps(devices, io_bytes);
    let msr = alloc_frame().ok_or(SetupError::OutOfFrames)?;
    // SAFETY: a fresh frame, identity mapped, not shared yet.
    let msr_bytes = unsafe { &mut *(msr as *mut [u8; MSR_BITMAP_SIZE]) };
    build_msr_bitmap(msr_bytes);
    Ok(SandboxVmx {
        eptp: ept.eptp(),
        io_bitmaps: io,
        msr_bitmap: msr,
    })
}

/// Final status of a sandbox.
pub const STATUS_RUNNING: u32 = 0;
/// The sandbox exited (see `exit_code`).
pub const STATUS_EXITED: u32 = 1;
/// The sandbox was stopped after a fault.
pub const STATUS_HALTED: u32 = 2;

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

static STATES: [SandboxState; MAX_SANDBOXES] = [const { SandboxState::new() }; MAX_SANDBOXES];

/// The run state of sandbox `s` (< `MAX_SANDBOXES`).
pub fn state(s: SandboxId) -> &'static SandboxState {
    &STATES[s.index() % MAX_SANDBOXES]
}
