//! The binary partition table: a header followed by arrays of fixed-size entries.
//!
//! All integers are little-endian and every structure is `Unaligned`, so a table can be
//! viewed in place from any byte buffer. Entries refer to each other by index only (never
//! by pointer), and every index and range is checked by [`crate::validate()`].

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// First bytes of every partition table.
pub const TABLE_MAGIC: [u8; 8] = *b"QUESTPT\0";
/// Version of the table format described by this crate (2: migration fields; 3: PCI
/// functions, IRQ lines and device flags).
pub const TABLE_VERSION: u32 = 3;
/// Length of every name field (NUL-padded UTF-8, at most `NAME_LEN - 1` bytes).
pub const NAME_LEN: usize = 32;
/// Alignment of the payload area that follows the table in an image.
pub const PAYLOAD_ALIGN: u64 = 4096;
/// Most vCPUs one sandbox may have (bounded so boot info has fixed size).
pub const MAX_VCPUS_PER_SANDBOX: usize = 16;
/// Most sandboxes one table may describe.
pub const MAX_SANDBOXES: usize = 64;
/// Most channels one table may describe (the monitor sizes its placement for this many).
pub const MAX_CHANNELS: usize = 256;
/// Most logical cores a system may declare.
pub const MAX_CORES: u32 = 256;
/// Guest pages are 4 KiB; every region is aligned to and sized in them.
pub const PAGE_SIZE: u64 = 4096;
/// Sandbox RAM is mapped with 2 MiB pages and must be a multiple of this.
pub const LARGE_PAGE_SIZE: u64 = 2 * 1024 * 1024;
/// Marker for "no index" in index fields.
pub const NO_INDEX: u32 = u32::MAX;

/// Declares an enum the table stores as a `u32`, and its decoder `from_u32`: each
/// variant's value is written once, in the declaration.
macro_rules! table_enum {
    ($(#[$meta:meta])* pub enum $name:ident {
        $($(#[$vmeta:meta])* $variant:ident = $value:literal,)+
    }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u32)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $value,)+
        }

        impl $name {
            /// Decodes the table value.
            pub fn from_u32(v: u32) -> Option<Self> {
                match v {
                    $($value => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

/// Declares small fixed-layout values of the table that, unlike the entries, are also
/// compared and defaulted: one list of derives for all of them.
macro_rules! table_value {
    ($($(#[$meta:meta])* pub struct $name:ident $body:tt)+) => {
        $(
            $(#[$meta])*
            #[derive(
                Clone, Copy, Debug, Default, PartialEq, Eq,
                FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
            )]
            #[repr(C)]
            pub struct $name $body
        )+
    };
}

table_value! {
    /// Location of one entry array inside the table.
    pub struct ArrayRef {
        /// Byte offset from the start of the table.
        pub offset: U32,
        /// Number of entries.
        pub count: U32,
        /// Size of one entry in bytes (must equal the size this crate defines).
        pub entry_size: U32,
        /// Reserved, zero.
        pub reserved: U32,
    }

    /// A contiguous range `[first, first + count)` into one of the entry arrays.
    pub struct IndexRange {
        /// First index.
        pub first: U32,
        /// Number of entries.
        pub count: U32,
    }
}

/// The table header, at offset 0.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct Header {
    /// [`TABLE_MAGIC`].
    pub magic: [u8; 8],
    /// [`TABLE_VERSION`].
    pub version: U32,
    /// `size_of::<Header>()`.
    pub header_size: U32,
    /// Size of the whole table (header and arrays) in bytes.
    pub total_size: U32,
    /// CRC-32 (IEEE) of the whole table computed with this field set to zero.
    pub checksum: U32,
    /// System name from the manifest.
    pub system_name: [u8; NAME_LEN],
    /// Logical cores the target machine must have.
    pub system_cores: U32,
    /// I/O base of the monitor's console UART (e.g. 0x3f8).
    pub console_port: U16,
    /// Reserved, zero.
    pub reserved0: U16,
    /// Host RAM the target machine must have, in bytes.
    pub system_memory: U64,
    /// Host RAM the monitor reserves for itself (image, stacks, VMCS, EPT), in bytes.
    pub monitor_reserve: U64,
    /// Size of the payload area that follows the table (aligned to [`PAYLOAD_ALIGN`]).
    pub payload_area_size: U64,
    /// Sandboxes, [`SandboxEntry`].
    pub sandboxes: ArrayRef,
    /// Virtual CPUs, [`VcpuEntry`], grouped by sandbox.
    pub vcpus: ArrayRef,
    /// Guest-physical regions, [`RegionEntry`], grouped by sandbox.
    pub regions: ArrayRef,
    /// Channels, [`ChannelEntry`].
    pub channels: ArrayRef,
    /// Passed-through devices, [`DeviceEntry`], grouped by sandbox.
    pub devices: ArrayRef,
    /// Initial guest memory contents, [`PayloadEntry`], grouped by sandbox.
    pub payloads: ArrayRef,
}

impl IndexRange {
    /// Builds a range.
    pub fn new(first: u32, count: u32) -> Self {
        Self {
            first: first.into(),
            count: count.into(),
        }
    }
    /// The range as `usize` bounds, `None` on overflow.
    pub fn bounds(&self) -> Option<core::ops::Range<usize>> {
        let first = self.first.get() as usize;
        let end = first.checked_add(self.count.get() as usize)?;
        Some(first..end)
    }
}

table_enum! {
    /// How a sandbox's application is run.
    pub enum Runtime {
        /// Quest's small `no_std` runtime.
        Bare = 0,
        /// The Hermit library OS (std applications), booted like uhyve boots it.
        Hermit = 1,
    }
}

table_enum! {
    /// What the monitor does when a sandbox faults.
    pub enum OnFault {
        /// Stop the sandbox; the others go on.
        HaltSandbox = 0,
        /// Reload the sandbox from its pristine image and start it again.
        Restart = 1,
        /// Stop the whole system.
        HaltSystem = 2,
    }
}

/// One sandbox.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct SandboxEntry {
    /// Sandbox name (console prefix).
    pub name: [u8; NAME_LEN],
    /// [`Runtime`] as u32.
    pub runtime: U32,
    /// [`OnFault`] as u32.
    pub on_fault: U32,
    /// Its vCPUs in the vCPU array.
    pub vcpus: IndexRange,
    /// Its regions in the region array.
    pub regions: IndexRange,
    /// Its devices in the device array.
    pub devices: IndexRange,
    /// Its payloads in the payload array.
    pub payloads: IndexRange,
    /// Guest RAM size; RAM spans guest-physical `[0, ram_size)`.
    pub ram_size: U64,
    /// Guest-physical address of the boot information block.
    pub boot_info_gpa: U64,
    /// Guest-physical address of the initial PML4 (CR3 of every vCPU).
    pub page_table_gpa: U64,
    /// Guest-physical address of the channel directory (0: none).
    pub directory_gpa: U64,
    /// Guest-physical address where the monitor writes the TSC frequency in kHz as a
    /// little-endian u32 at launch (0: none).
    pub patch_tsc_khz_gpa: U64,
    /// Guest-physical address where the monitor writes the boot time (microseconds since
    /// the Unix epoch, little-endian u64) at launch (0: none).
    pub patch_boot_time_gpa: U64,
    /// Guest-physical address where the monitor writes the launch count (1 at first
    /// boot, +1 per restart; little-endian u32) at launch (0: none).
    pub patch_launch_count_gpa: U64,
    /// Guest-physical address where the monitor writes the boot time in nanoseconds
    /// since the Unix epoch (little-endian u64; Hermit reads it as the low half of an
    /// i128 whose high half the host leaves zero) at launch (0: none).
    pub patch_boot_time_ns_gpa: U64,
    /// `MIGRATION_*` bits (0 unless every vCPU has a standby core).
    pub migration_flags: U32,
    /// Reserved, zero.
    pub reserved: U32,
    /// Who may ask for this sandbox's migration: bit `i` for sandbox index `i` (its own
    /// bit for "itself"); 0 unless it has standby cores.
    pub migrate_by: U64,
    /// The longest pause a migration may cause it, in nanoseconds; non-zero exactly when
    /// it has standby cores.
    pub max_downtime_ns: U64,
}

/// [`SandboxEntry::migration_flags`]: the monitor places a separate standby RAM region
/// and a migration moves the sandbox's RAM between the two.
pub const MIGRATION_SEPARATE_MEMORY: u32 = 1;
/// [`SandboxEntry::migration_flags`]: a migration's pause is hidden from the sandbox's
/// clock (its TSC resumes where it stopped); without it the TSC runs on through it.
pub const MIGRATION_HIDE_DOWNTIME: u32 = 2;
/// Every defined `MIGRATION_*` bit.
pub const MIGRATION_FLAGS: u32 = MIGRATION_SEPARATE_MEMORY | MIGRATION_HIDE_DOWNTIME;

/// One virtual CPU: which logical core runs it and its initial 64-bit register state.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct VcpuEntry {
    /// Owning sandbox index.
    pub sandbox: U32,
    /// Index of this vCPU inside its sandbox (0..n; also its virtual APIC ID).
    pub index: U32,
    /// Logical core index (0 = boot core) that runs this vCPU.
    pub core: U32,
    /// The core it moves to when its sandbox migrates (the sandbox's alone while it does
    /// not run there), or [`NO_INDEX`]. Either every vCPU of a sandbox has one or none.
    pub standby_core: U32,
    /// Initial RIP (guest-virtual = guest-physical: identity mapped at start).
    pub rip: U64,
    /// Initial RSP.
    pub rsp: U64,
    /// Initial RDI (boot info address).
    pub rdi: U64,
    /// Initial RSI (vCPU index).
    pub rsi: U64,
}

table_enum! {
    /// Kind of a guest-physical region.
    pub enum RegionKind {
        /// The sandbox's own RAM, private.
        Ram = 0,
        /// A channel's data area (writer read-write, reader read-only).
        ChannelData = 1,
        /// A channel's acknowledgement area (reader read-write, writer read-only).
        ChannelAck = 2,
        /// The sandbox's channel directory (read-only for the sandbox).
        Directory = 3,
    }
}

/// Access bit: the guest may read.
pub const ACCESS_READ: u32 = 1;
/// Access bit: the guest may write.
pub const ACCESS_WRITE: u32 = 2;
/// Access bit: the guest may execute.
pub const ACCESS_EXEC: u32 = 4;

/// One guest-physical region of one sandbox, mapped by the monitor's EPT.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RegionEntry {
    /// Owning sandbox index.
    pub sandbox: U32,
    /// [`RegionKind`] as u32.
    pub kind: U32,
    /// Guest-physical start (page-aligned).
    pub gpa: U64,
    /// Size in bytes (page multiple).
    pub size: U64,
    /// `ACCESS_*` bits.
    pub access: U32,
    /// Channel index for channel regions, [`NO_INDEX`] otherwise.
    pub channel: U32,
}

/// One channel: shared memory between exactly one writer and one reader sandbox.
///
/// Host memory of a channel is `[data (data_size)][ack (ack_size)]`, allocated by the
/// monitor at boot and zeroed.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct ChannelEntry {
    /// Channel name.
    pub name: [u8; NAME_LEN],
    /// Writer sandbox index.
    pub writer: U32,
    /// Reader sandbox index.
    pub reader: U32,
    /// Size of the data area (page multiple).
    pub data_size: U64,
    /// Size of the acknowledgement area (page multiple).
    pub ack_size: U64,
    /// Guest-physical address of the data area in the writer (ack follows it).
    pub writer_gpa: U64,
    /// Guest-physical address of the data area in the reader (ack follows it).
    pub reader_gpa: U64,
}

table_enum! {
    /// Kind of a passed-through device.
    pub enum DeviceKind {
        /// An inclusive range of I/O ports (`first..=last`), optionally with a legacy
        /// IRQ line (`irq`).
        IoPorts = 0,
        /// A PCI function: at a fixed address (`pci_address`) or the `pci_index`-th
        /// function, in bus order, with ID `pci_id`.
        Pci = 1,
    }
}

/// One device passed through to a sandbox.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct DeviceEntry {
    /// Owning sandbox index.
    pub sandbox: U32,
    /// [`DeviceKind`] as u32.
    pub kind: U32,
    /// I/O ports: first port (inclusive); 0 for a PCI function.
    pub first: U64,
    /// I/O ports: last port (inclusive); 0 for a PCI function.
    pub last: U64,
    /// I/O ports: the legacy IRQ line (at most [`MAX_IRQ`]) it raises, or [`NO_INDEX`].
    pub irq: U32,
    /// `DEVICE_*` bits (PCI functions only).
    pub flags: U32,
    /// PCI by address: [`PciAddress::to_u16`]; [`NO_INDEX`] when selected by ID.
    pub pci_address: U32,
    /// PCI by ID: [`PciId::to_u32`] (vendor in the high half); 0 when by address.
    pub pci_id: U32,
    /// PCI by ID: which function with that ID (0: the first in bus order).
    pub pci_index: U32,
    /// Reserved, zero.
    pub reserved: U32,
}

/// [`DeviceEntry::flags`]: the function may master the bus without DMA protection
/// (`dma = "unprotected"`). Parsed and carried; the monitor does not enforce DMA yet.
pub const DEVICE_DMA_UNPROTECTED: u32 = 1;
/// [`DeviceEntry::flags`]: when the function is absent at boot, its sandbox starts
/// without it (`if_absent = "start-without"`); otherwise the sandbox is not started.
pub const DEVICE_START_WITHOUT: u32 = 2;
/// Every defined `DEVICE_*` bit.
pub const DEVICE_FLAGS: u32 = DEVICE_DMA_UNPROTECTED | DEVICE_START_WITHOUT;
/// The highest legacy (8259 PIC) IRQ line.
pub const MAX_IRQ: u32 = 15;
/// The 8259 cascade line: no device raises it.
pub const CASCADE_IRQ: u32 = 2;
/// The PCI configuration mechanism #1 ports (address 0xCF8, data 0xCFC-0xCFF): the
/// monitor's, never passed through.
pub const PCI_CONFIG_PORTS: (u16, u16) = (0xcf8, 0xcff);

/// A PCI function's address: bus, device (0-31), function (0-7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciAddress {
    /// Bus number.
    pub bus: u8,
    /// Device number, 0 to 31.
    pub device: u8,
    /// Function number, 0 to 7.
    pub function: u8,
}

impl PciAddress {
    /// The address, if `device` and `function` are in range.
    pub fn new(bus: u8, device: u8, function: u8) -> Option<Self> {
        (device < 32 && function < 8).then_some(Self {
            bus,
            device,
            function,
        })
    }
    /// `bus << 8 | device << 3 | function` (the routing ID).
    pub fn to_u16(self) -> u16 {
        u16::from(self.bus) << 8 | u16::from(self.device) << 3 | u16::from(self.function)
    }
    /// The inverse of [`PciAddress::to_u16`].
    pub fn from_u16(v: u16) -> Self {
        Self {
            bus: (v >> 8) as u8,
            device: ((v >> 3) & 31) as u8,
            function: (v & 7) as u8,
        }
    }
}

/// Written as `bb:dd.f` in hexadecimal (`00:03.0`), as `lspci` does.
impl core::fmt::Display for PciAddress {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{:02x}:{:02x}.{:x}",
            self.bus, self.device, self.function
        )
    }
}

/// A PCI function's vendor and device ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciId {
    /// Vendor ID (0xffff is "no function", never an ID).
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
}

impl PciId {
    /// `vendor << 16 | device`.
    pub fn to_u32(self) -> u32 {
        u32::from(self.vendor) << 16 | u32::from(self.device)
    }
    /// The inverse of [`PciId::to_u32`].
    pub fn from_u32(v: u32) -> Self {
        Self {
            vendor: (v >> 16) as u16,
            device: v as u16,
        }
    }
}

/// Written as `vvvv:dddd` in hexadecimal (`1234:11e8`), as `lspci -n` does.
impl core::fmt::Display for PciId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:04x}:{:04x}", self.vendor, self.device)
    }
}

/// Which PCI function a device entry names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PciSelector {
    /// The function at this address.
    Address(PciAddress),
    /// The `index`-th function (0 first, in bus order) with this ID.
    Id {
        /// Vendor and device ID.
        id: PciId,
        /// Which of the functions with that ID.
        index: u32,
    },
}

/// `00:03.0`, `1234:11e8` or `1234:11e8#1` (the second such function).
impl core::fmt::Display for PciSelector {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Address(a) => write!(f, "{a}"),
            Self::Id { id, index: 0 } => write!(f, "{id}"),
            Self::Id { id, index } => write!(f, "{id}#{index}"),
        }
    }
}

/// The legacy IRQ line of the UART at I/O base `port` (COM1/COM3: 4, COM2/COM4: 3).
pub fn console_irq(port: u16) -> u32 {
    match port {
        0x3f8 | 0x3e8 => 4,
        _ => 3,
    }
}

/// Initial contents of part of a sandbox's guest memory, stored in the payload area.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct PayloadEntry {
    /// Owning sandbox index.
    pub sandbox: U32,
    /// Reserved, zero.
    pub reserved: U32,
    /// Guest-physical destination.
    pub gpa: U64,
    /// Offset from the start of the payload area.
    pub offset: U64,
    /// Length in bytes.
    pub size: U64,
    /// SHA-256 of the bytes.
    pub sha256: [u8; 32],
}

/// Console UART base of the four PC serial ports, by name.
pub const CONSOLE_PORTS: [(&str, u16); 4] = [
    ("com1", 0x3f8),
    ("com2", 0x2f8),
    ("com3", 0x3e8),
    ("com4", 0x2e8),
];
/// Number of I/O ports a UART occupies.
pub const CONSOLE_PORT_SPAN: u16 = 8;
