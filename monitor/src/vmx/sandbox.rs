//! Building a sandbox's VMX structures (EPT, I/O and MSR bitmaps; shared by its vCPUs)
//! for its current placement; they are kept in its record (`crate::sandboxes`).

use super::host::alloc_frame;
use crate::sandboxes::{record, SandboxPlacement, SandboxVmx, SetupError};
use crate::system::System;
use quest_abi::{HostPhysAddr, SandboxId};
use quest_monitor_core::ept::EptMemory;
use quest_monitor_core::io_bitmap::{PortAccess, IO_BITMAPS_SIZE};
use quest_monitor_core::msr_policy::{build_msr_bitmap, trap_tsc_deadline, MSR_BITMAP_SIZE};
use quest_monitor_core::sandbox_ept::{build_sandbox_ept, HostPlacement};

/// EPT tables in identity-mapped frames of the monitor's pool.
pub(crate) struct PoolFrames;

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

/// The sandbox's VMX structures for its current placement (its record's), built by the
/// first of its vCPUs to ask.
/// On SVM the same record holds the NPT and permission maps (`svm::build_sandbox`).
pub fn resources(sys: &System, s: SandboxId) -> Result<SandboxVmx, SetupError> {
    record(s).vmx(|place| build_for(sys, s, place))
}

/// Builds sandbox `s`'s structures for its standby placement ahead of a migration
/// (pre-copy does, so that the move's pause only installs them).
pub fn prebuild_standby(sys: &System, s: SandboxId) -> Result<(), SetupError> {
    record(s).prebuild_standby(|place| build_for(sys, s, place))
}

/// The structures of sandbox `s` at `place`, for the backend in use.
fn build_for(
    sys: &System,
    s: SandboxId,
    place: &SandboxPlacement,
) -> Result<SandboxVmx, SetupError> {
    let windows = crate::device_bars::windows(s);
    let host = HostPlacement {
        sandbox: place,
        channel_hpas: sys.channels(),
        calibration_hpa: crate::calibrate::page_hpa(),
        device_memory: windows.memory(),
    };
    let ports = PortAccess {
        devices: sys
            .table
            .sandbox(s)
            .map_or(&[][..], |sb| sb.device_entries()),
        bars: windows.io(),
        console: sys.table.console_port(),
    };
    let hide = sys
        .table
        .sandbox(s)
        .and_then(|sb| sb.migration())
        .is_some_and(|m| m.hide_downtime);
    if crate::svm::active() {
        crate::svm::build_sandbox(sys.table.raw(), s, &host, &ports, hide)
    } else {
        build(sys.table.raw(), s, &host, &ports, hide)
    }
}

/// The VT-x structures; `hide_downtime` traps the TSC deadline (`trap_tsc_deadline`).
fn build(
    table: &quest_abi::Table<'_>,
    s: SandboxId,
    host: &HostPlacement<'_>,
    ports: &PortAccess<'_>,
    hide_downtime: bool,
) -> Result<SandboxVmx, SetupError> {
    let ept = build_sandbox_ept(table, s.index(), host, PoolFrames).map_err(SetupError::Ept)?;

    let io = crate::frame_pool::alloc_zeroed(2).ok_or(SetupError::OutOfFrames)?;
    // SAFETY: two fresh contiguous frames, identity mapped, not shared yet.
    let io_bytes = unsafe { &mut *(io as *mut [u8; IO_BITMAPS_SIZE]) };
    ports.fill(io_bytes);
    let msr = alloc_frame().ok_or(SetupError::OutOfFrames)?;
    // SAFETY: a fresh frame, identity mapped, not shared yet.
    let msr_bytes = unsafe { &mut *(msr as *mut [u8; MSR_BITMAP_SIZE]) };
    build_msr_bitmap(msr_bytes);
    if hide_downtime {
        trap_tsc_deadline(msr_bytes);
    }
    Ok(SandboxVmx {
        eptp: ept.eptp(),
        io_bitmaps: io,
        msr_bitmap: msr,
    })
}
