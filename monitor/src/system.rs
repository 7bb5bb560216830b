//! The hand-off between the platform half of the monitor (boot, memory, cores) and the
//! VT-x half (`vmx`): everything a core needs to run its sandbox's vCPU.
//!
//! CONTRACT (owned by the platform code; the vmx code only reads it):
//! - `System` is built once by the boot core after the table is validated and host memory
//!   placed (each sandbox's placement is in its record, `crate::sandboxes`; the channels'
//!   in `System`). It is `'static` and immutable afterwards. Every started core then loads a
//!   share of the sandbox memory (payloads copied, the rest zeroed) and checks a share of
//!   the payload hashes ([`System::verify_payloads`]); none goes on to a vCPU before all
//!   are done, and a corrupt payload stops the machine.
//! - Every core that runs a vCPU calls `crate::vmx::run_core(core, &SYSTEM)` and never
//!   returns. Cores without a vCPU park in `hlt`.
//! - Frames for VMXON regions, VMCSs, EPT tables and bitmaps come from
//!   `crate::frame_pool::alloc_zeroed`; host GS base is `crate::arch::cpu::gs_base()`.

use crate::cores::Cores;
use quest_abi::{CoreId, HostPhysAddr, SandboxId, TableView, MAX_CHANNELS};

/// Everything the vmx half needs.
#[derive(Debug)]
pub struct System {
    /// The validated partition table (lives in the monitor image).
    pub table: TableView<'static>,
    /// The payload area of the image (payload offsets are relative to it); kept so a
    /// sandbox can be reloaded from its pristine image ([`System::reload_sandbox`]).
    pub payload_area: &'static [u8],
    /// Host-physical base of each channel's data area (the ack area follows it), table
    /// order; the first `table.channel_count()` are placed (see [`System::channels`]).
    pub channel_hpas: [HostPhysAddr; MAX_CHANNELS],
    /// The machine's cores (x2APIC ID per logical core index; see [`System::apic_id`]).
    pub cores: Cores,
    /// TSC frequency in kHz, measured at boot.
    pub tsc_khz: u32,
    /// Wall-clock time at which the TSC read 0, in microseconds since the Unix epoch
    /// (from the CMOS RTC at boot; 0 = unknown). Guests run on the host TSC (offset 0),
    /// so their wall clock is `boot_time_us + rdtsc * 1000 / tsc_khz`.
    pub boot_time_us: u64,
    /// Cores that enter `smp::enter` (the boot core and every started AP).
    pub started_cores: usize,
}

impl System {
    /// Puts sandbox `s`'s RAM and directory back to their pristine boot contents (RAM
    /// zeroed, payloads copied). Its vCPUs must not be running. Channels are untouched.
    pub fn reload_sandbox(&self, s: SandboxId) {
        crate::sandbox_memory::load_sandbox(&self.table, self.payload_area, s);
    }

    /// This core's share of checking every payload's SHA-256; returns once all
    /// [`System::started_cores`] have done theirs, with the same result on every core
    /// (`Ok(true)` on the one that finished last).
    pub fn verify_payloads(&self) -> Result<bool, crate::blob::BlobError> {
        crate::blob::verify_payloads(&self.table, self.payload_area, self.started_cores)
    }

    /// Whether logical core `core` runs a vCPU, and which sandbox's.
    pub fn sandbox_on_core(&self, core: CoreId) -> Option<SandboxId> {
        self.table.vcpu_on_core(core).map(|v| v.sandbox())
    }

    /// Whether logical core `core` is a vCPU's standby core.
    pub fn standby_on_core(&self, core: CoreId) -> bool {
        self.table.vcpus().any(|v| v.standby_core() == Some(core))
    }

    /// The x2APIC ID of logical core `core` (`None` if the machine has no such core).
    pub fn apic_id(&self, core: CoreId) -> Option<u32> {
        self.cores.apic_ids().get(core.index()).copied()
    }

    /// Each channel's host-physical base, table order.
    pub fn channels(&self) -> &[HostPhysAddr] {
        let n = self.table.channel_count().min(MAX_CHANNELS);
        &self.channel_hpas[..n]
    }
}
