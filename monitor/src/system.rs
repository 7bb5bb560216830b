//! The hand-off between the platform half of the monitor (boot, memory, cores) and the
//! VT-x half (`vmx`): everything a core needs to run its sandbox's vCPU.
//!
//! CONTRACT (owned by the platform code; the vmx code only reads it):
//! - `System` is built once by the boot core after the table is validated, every payload
//!   hash checked, host memory placed and the sandbox memory initialised (payloads copied,
//!   the rest zeroed). It is `'static` and immutable afterwards.
//! - Every core that runs a vCPU calls `crate::vmx::run_core(core, &SYSTEM)` and never
//!   returns. Cores without a vCPU park in `hlt`.

use quest_abi::Table;

/// Host-physical placement of one sandbox (chosen at boot, printed).
#[derive(Clone, Copy, Debug)]
pub struct SandboxPlacement {
    /// Host-physical base of guest RAM (guest-physical 0), 2 MiB aligned.
    pub ram_hpa: u64,
    /// Host-physical base of the sandbox's channel directory page (0 if none).
    pub directory_hpa: u64,
}

/// Host-physical placement of one channel: `[data][ack]` contiguous, 2 MiB aligned.
#[derive(Clone, Copy, Debug)]
pub struct ChannelPlacement {
    /// Host-physical base of the data area; the ack area follows it.
    pub hpa: u64,
}

/// Everything the vmx half needs.
#[derive(Debug)]
pub struct System {
    /// The validated partition table (lives in the monitor image).
    pub table: Table<'static>,
    /// Per sandbox, table order.
    pub sandboxes: &'static [SandboxPlacement],
    /// Per channel, table order.
    pub channels: &'static [ChannelPlacement],
    /// x2APIC ID of each logical core (index = logical core index).
    pub apic_ids: &'static [u32],
    /// TSC frequency in kHz, measured at boot.
    pub tsc_khz: u32,
}
