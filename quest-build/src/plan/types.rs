//! The plan: a complete, deterministic layout computed from a validated manifest.
//!
//! Guest-physical addresses are fixed here; host-physical placement is the monitor's job
//! at boot (the plan only fixes sizes and alignment).

use quest_abi::{GuestPhysAddr, OnFault, PciSelector, RegionKind, Runtime};
use std::path::PathBuf;

/// Everything the image stage and the monitor need to know about a system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// `system.name`.
    pub system_name: String,
    /// Logical cores the target must have.
    pub system_cores: u32,
    /// RAM the target must have.
    pub system_memory: u64,
    /// Console UART base port.
    pub console_port: u16,
    /// Host RAM the monitor reserves for itself.
    pub monitor_reserve: u64,
    /// Host RAM the whole system needs (monitor reserve plus every 2 MiB-aligned
    /// sandbox and channel allocation).
    pub host_memory_needed: u64,
    /// Sandboxes, in manifest order (their index is their table index).
    pub sandboxes: Vec<SandboxPlan>,
    /// Channels, in manifest order.
    pub channels: Vec<ChannelPlan>,
}

impl Plan {
    /// Sandbox `index`.
    pub fn sandbox(&self, index: usize) -> Result<&SandboxPlan, NoSandbox> {
        self.sandboxes.get(index).ok_or(NoSandbox(index))
    }
}

/// A sandbox index that is not in the plan (a bug in the caller).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bug: no sandbox {0} in the plan")]
pub struct NoSandbox(pub usize);

/// One sandbox's plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxPlan {
    /// Name.
    pub name: String,
    /// Runtime.
    pub runtime: Runtime,
    /// Fault policy.
    pub on_fault: OnFault,
    /// The application's Cargo package directory (absolute or relative to the cwd).
    pub app_dir: PathBuf,
    /// Application arguments.
    pub args: Vec<String>,
    /// Application environment, in manifest order.
    pub env: Vec<(String, String)>,
    /// Guest RAM size; RAM is guest-physical `[0, ram_size)`.
    pub ram_size: u64,
    /// vCPUs, index order.
    pub vcpus: Vec<VcpuPlan>,
    /// Guest-physical regions: RAM first, then directory and channel regions by address.
    pub regions: Vec<RegionPlan>,
    /// Passed-through devices, in manifest order.
    pub devices: Vec<DevicePlan>,
    /// Fixed boot addresses.
    pub boot: BootLayout,
    /// The channels this sandbox is an endpoint of, as listed in its directory.
    pub channel_ends: Vec<ChannelEnd>,
    /// How it may migrate (its vCPUs then each have a standby core), if it may.
    pub migration: Option<MigrationPlan>,
}

/// A migratable sandbox's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationPlan {
    /// The monitor places a separate standby RAM region.
    pub separate_memory: bool,
    /// The sandboxes (indices) that may ask for its migration, itself included when
    /// `migrate_by` names `self`; ascending.
    pub migrate_by: Vec<usize>,
    /// The longest pause it tolerates, ns.
    pub max_downtime_ns: u64,
    /// A migration's pause is hidden from its clock.
    pub hide_downtime: bool,
}

/// One vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuPlan {
    /// Index inside the sandbox (also its virtual APIC ID).
    pub index: u32,
    /// Logical core that runs it.
    pub core: u32,
    /// The core it moves to when its sandbox migrates.
    pub standby_core: Option<u32>,
    /// Initial stack pointer.
    pub stack_top: u64,
}

/// One guest-physical region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionPlan {
    /// Kind.
    pub kind: RegionKind,
    /// Guest-physical start.
    pub gpa: GuestPhysAddr,
    /// Size.
    pub size: u64,
    /// `quest_abi::ACCESS_*` bits.
    pub access: u32,
    /// Channel index for channel regions.
    pub channel: Option<usize>,
}

/// Fixed guest-physical boot addresses of a sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootLayout {
    /// Boot information block (RDI at entry).
    pub boot_info_gpa: GuestPhysAddr,
    /// Initial PML4 (CR3).
    pub page_table_gpa: GuestPhysAddr,
    /// Where the application (bare) or kernel (Hermit) image is loaded.
    pub image_gpa: GuestPhysAddr,
    /// Channel directory, if the sandbox has channels.
    pub directory_gpa: Option<GuestPhysAddr>,
    /// Where the monitor patches the TSC frequency (kHz, u32), if anywhere.
    pub patch_tsc_khz_gpa: Option<GuestPhysAddr>,
    /// Where the monitor patches the boot time (µs since the epoch, u64), if anywhere.
    pub patch_boot_time_gpa: Option<GuestPhysAddr>,
    /// Where the monitor patches the launch count (u32), if anywhere.
    pub patch_launch_count_gpa: Option<GuestPhysAddr>,
    /// Where the monitor patches the boot time (ns since the epoch, u64), if anywhere.
    pub patch_boot_time_ns_gpa: Option<GuestPhysAddr>,
}

impl BootLayout {
    /// What every runtime shares: boot information, page tables and (with channels) the
    /// channel directory at `quest_abi`'s fixed addresses; the image at `image_gpa`;
    /// nothing patched yet (each runtime adds the patch points its boot info has).
    pub fn fixed(image_gpa: u64, has_channels: bool) -> Self {
        use quest_abi::layout::{BOOT_INFO_GPA, DIRECTORY_GPA, PAGE_TABLES_GPA};
        Self {
            boot_info_gpa: GuestPhysAddr::new(BOOT_INFO_GPA),
            page_table_gpa: GuestPhysAddr::new(PAGE_TABLES_GPA),
            image_gpa: GuestPhysAddr::new(image_gpa),
            directory_gpa: has_channels.then_some(GuestPhysAddr::new(DIRECTORY_GPA)),
            patch_tsc_khz_gpa: None,
            patch_boot_time_gpa: None,
            patch_launch_count_gpa: None,
            patch_boot_time_ns_gpa: None,
        }
    }
}

/// Which side of a channel a sandbox is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Writes messages (data read-write, acknowledgements read-only).
    Writer,
    /// Reads messages (data read-only, acknowledgements read-write).
    Reader,
}

/// A channel as one endpoint sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelEnd {
    /// Channel index.
    pub channel: usize,
    /// This sandbox's role.
    pub role: Role,
    /// Guest-physical address of the data area in this sandbox.
    pub data_gpa: GuestPhysAddr,
    /// Guest-physical address of the acknowledgement area in this sandbox.
    pub ack_gpa: GuestPhysAddr,
}

/// One channel's plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelPlan {
    /// Name.
    pub name: String,
    /// Writer sandbox index.
    pub writer: usize,
    /// Reader sandbox index.
    pub reader: usize,
    /// Data area size (the manifest's `size`, page-rounded).
    pub data_size: u64,
    /// Acknowledgement area size.
    pub ack_size: u64,
    /// Data area address in the writer.
    pub writer_gpa: GuestPhysAddr,
    /// Data area address in the reader.
    pub reader_gpa: GuestPhysAddr,
}

/// What the build produced for one sandbox: its entry point and initial guest memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SandboxImage {
    /// Entry point (guest RIP of every vCPU).
    pub entry: u64,
    /// Initial memory contents, by guest-physical address (non-overlapping).
    pub payloads: Vec<Payload>,
}

/// Initial contents of part of guest memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    /// Guest-physical destination.
    pub gpa: u64,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// A device passed through to a sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DevicePlan {
    /// An inclusive I/O port range and the legacy IRQ line it raises.
    Ports {
        /// First port.
        first: u16,
        /// Last port (inclusive).
        last: u16,
        /// Its IRQ line, if any.
        irq: Option<u8>,
    },
    /// A PCI function, found by the monitor at boot.
    Pci {
        /// Which function.
        select: PciSelector,
        /// It may master the bus without DMA protection.
        dma_unprotected: bool,
        /// Its sandbox starts without it when it is absent (else it is not started).
        start_without: bool,
    },
}

impl DevicePlan {
    /// The manifest's words for it: `ports 0x2f8-0x2ff irq 3`, `pci 00:03.0 (if absent:
    /// not started)`, `pci 1234:11e8 (dma unprotected; if absent: started without it)`.
    pub fn describe(&self) -> String {
        match *self {
            Self::Ports { first, last, irq } => {
                let irq = irq.map_or(String::new(), |i| format!(" irq {i}"));
                format!("ports {first:#x}-{last:#x}{irq}")
            }
            Self::Pci {
                select,
                dma_unprotected,
                start_without,
            } => {
                let dma = if dma_unprotected {
                    "dma unprotected; "
                } else {
                    ""
                };
                let absent = if start_without {
                    "started without it"
                } else {
                    "not started"
                };
                format!("pci {select} ({dma}if absent: {absent})")
            }
        }
    }
}

impl SandboxPlan {
    /// Its I/O port ranges (inclusive).
    pub fn ports(&self) -> impl Iterator<Item = (u16, u16)> + '_ {
        self.devices.iter().filter_map(|d| match *d {
            DevicePlan::Ports { first, last, .. } => Some((first, last)),
            DevicePlan::Pci { .. } => None,
        })
    }
}
