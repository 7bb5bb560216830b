//! A typed read view of a validated partition table.
//!
//! [`TableView`] is only built by [`TableView::validate`] (which runs [`validate()`]), so
//! every accessor can return plain Rust values (ids: [`SandboxId`], [`CoreId`], `usize`
//! for other indices; guest addresses as [`GuestPhysAddr`] and ranges of them; enums,
//! `&str` names, `Option` for "none" addresses) instead of the little-endian fields the
//! table stores.
//! Users never call `.get()` or cast table fields. Accessors do not panic: where
//! validation guarantees a value (a known enum, a UTF-8 name, an index in range) the
//! fallback after it is unreachable and documented at its use.

use crate::addr::{CoreId, GuestPhysAddr, SandboxId};
use crate::table::*;
use crate::validate::{validate, AbiError, Table};
use core::ops::{Range, RangeInclusive};

/// A validated partition table, read through typed accessors.
#[derive(Clone, Copy, Debug)]
pub struct TableView<'a> {
    table: Table<'a>,
}

/// Widens a table `u32` (count, index) to `usize` (lossless on every target Quest
/// supports: x86-64 only).
fn idx(v: u32) -> usize {
    v as usize
}

/// `[start, start + size)` of a validated entry (no wrap: validated; saturating anyway).
fn gpa_range(start: u64, size: u64) -> Range<GuestPhysAddr> {
    GuestPhysAddr::new(start)..GuestPhysAddr::new(start.saturating_add(size))
}

/// Accessors that return one field of the view's entry: the number the table stores, or
/// that number through `= conversion` (an id, an address).
macro_rules! entry_fields {
    ($($(#[$doc:meta])* $field:ident: $ty:ty $(= $conversion:path)?;)+) => {
        $(
            $(#[$doc])*
            pub fn $field(&self) -> $ty {
                let value = self.entry.$field.get();
                $(let value = $conversion(value);)?
                value
            }
        )+
    };
}

impl<'a> TableView<'a> {
    /// Validates `bytes` ([`validate()`]) and returns the view.
    pub fn validate(bytes: &'a [u8]) -> Result<Self, AbiError> {
        validate(bytes).map(|table| Self { table })
    }

    /// The raw table, for code that walks entries itself (the EPT builder, the doorbell
    /// decoder, the host tools); it was validated.
    pub fn raw(&self) -> &Table<'a> {
        &self.table
    }

    /// The system's name.
    pub fn name(&self) -> &'a str {
        // Validated: a non-empty UTF-8 name.
        crate::name_str(&self.table.header.system_name).unwrap_or("?")
    }

    /// Logical cores the machine must have (1..=[`MAX_CORES`]).
    pub fn cores(&self) -> usize {
        idx(self.table.header.system_cores.get())
    }

    /// I/O base of the monitor's console UART.
    pub fn console_port(&self) -> u16 {
        self.table.header.console_port.get()
    }

    /// Host RAM the machine must have, in bytes.
    pub fn system_memory(&self) -> u64 {
        self.table.header.system_memory.get()
    }

    /// Host RAM the monitor reserves for itself, in bytes.
    pub fn monitor_reserve(&self) -> u64 {
        self.table.header.monitor_reserve.get()
    }

    /// Where the payload area lies relative to the start of the table, in bytes.
    pub fn payload_area(&self) -> Range<u64> {
        let start = self.table.payload_area_offset();
        start..start.saturating_add(self.table.header.payload_area_size.get())
    }

    /// Number of sandboxes (at least 1).
    pub fn sandbox_count(&self) -> usize {
        self.table.sandboxes.len()
    }

    /// Number of vCPUs of all sandboxes.
    pub fn vcpu_count(&self) -> usize {
        self.table.vcpus.len()
    }

    /// Number of channels.
    pub fn channel_count(&self) -> usize {
        self.table.channels.len()
    }

    /// Number of payloads of all sandboxes.
    pub fn payload_count(&self) -> usize {
        self.table.payloads.len()
    }

    /// Payload `p` of the table's payload array, with its sandbox and its index there.
    pub fn payload(&self, p: usize) -> Option<PayloadView<'a>> {
        let entry = self.table.payloads.get(p)?;
        let first = self
            .table
            .sandboxes
            .get(idx(entry.sandbox.get()))?
            .payloads
            .first;
        Some(PayloadView {
            index: p,
            in_sandbox: p.checked_sub(idx(first.get()))?,
            entry,
        })
    }

    /// Sandbox `s` (`None` if there is no such sandbox).
    pub fn sandbox(&self, s: SandboxId) -> Option<SandboxView<'a>> {
        let entry = self.table.sandboxes.get(s.index())?;
        Some(SandboxView {
            table: self.table,
            id: s,
            entry,
        })
    }

    /// Every sandbox, in table order.
    pub fn sandboxes(&self) -> impl ExactSizeIterator<Item = SandboxView<'a>> + Clone + 'a {
        let table = self.table;
        table
            .sandboxes
            .iter()
            .enumerate()
            .map(move |(index, entry)| SandboxView {
                table,
                // At most MAX_SANDBOXES entries (validated): the index fits the u32.
                id: SandboxId::new(index as u32),
                entry,
            })
    }

    /// Every vCPU, grouped by sandbox.
    pub fn vcpus(&self) -> impl ExactSizeIterator<Item = VcpuView<'a>> + Clone + 'a {
        self.table.vcpus.iter().map(|entry| VcpuView { entry })
    }

    /// The vCPU that logical core `core` runs, if any (at most one: validated).
    pub fn vcpu_on_core(&self, core: CoreId) -> Option<VcpuView<'a>> {
        self.vcpus().find(|v| v.core() == core)
    }

    /// Channel `c`.
    pub fn channel(&self, c: usize) -> Option<ChannelView<'a>> {
        let entry = self.table.channels.get(c)?;
        Some(ChannelView { index: c, entry })
    }

    /// Every channel, in table order.
    pub fn channels(&self) -> impl ExactSizeIterator<Item = ChannelView<'a>> + Clone + 'a {
        self.table
            .channels
            .iter()
            .enumerate()
            .map(|(index, entry)| ChannelView { index, entry })
    }
}

/// One sandbox of a [`TableView`].
#[derive(Clone, Copy, Debug)]
pub struct SandboxView<'a> {
    table: Table<'a>,
    id: SandboxId,
    entry: &'a SandboxEntry,
}

/// A guest-physical address the table may leave 0 for "none".
fn optional(gpa: u64) -> Option<GuestPhysAddr> {
    (gpa != 0).then_some(GuestPhysAddr::new(gpa))
}

impl<'a> SandboxView<'a> {
    /// Its id (index in the table).
    pub fn id(&self) -> SandboxId {
        self.id
    }

    /// Its name (the console prefix).
    pub fn name(&self) -> &'a str {
        // Validated: a non-empty UTF-8 name.
        crate::name_str(&self.entry.name).unwrap_or("?")
    }

    /// How its application runs.
    pub fn runtime(&self) -> Runtime {
        // Validated: a known value.
        Runtime::from_u32(self.entry.runtime.get()).unwrap_or(Runtime::Bare)
    }

    /// What the monitor does when it faults.
    pub fn on_fault(&self) -> OnFault {
        // Validated: a known value (halting everything would be the safe fallback).
        OnFault::from_u32(self.entry.on_fault.get()).unwrap_or(OnFault::HaltSystem)
    }

    entry_fields! {
        /// Guest RAM size in bytes (RAM is guest-physical `[0, ram_size)`, 2 MiB multiple).
        ram_size: u64;
        /// Guest-physical address of the boot information block (inside RAM).
        boot_info_gpa: GuestPhysAddr = GuestPhysAddr::new;
        /// Guest-physical address of the initial PML4 (CR3; inside RAM, page aligned).
        page_table_gpa: GuestPhysAddr = GuestPhysAddr::new;
        /// Guest-physical address of its channel directory, if it has one.
        directory_gpa: Option<GuestPhysAddr> = optional;
    }

    /// The values the monitor writes into guest RAM at each launch, with where (each
    /// inside RAM: validated).
    pub fn launch_patches(&self) -> LaunchPatches {
        let e = self.entry;
        LaunchPatches {
            tsc_khz: optional(e.patch_tsc_khz_gpa.get()),
            boot_time_us: optional(e.patch_boot_time_gpa.get()),
            launch_count: optional(e.patch_launch_count_gpa.get()),
            boot_time_ns: optional(e.patch_boot_time_ns_gpa.get()),
        }
    }

    /// How it may migrate, if it may (every vCPU then has a standby core: validated).
    pub fn migration(&self) -> Option<Migration> {
        let e = self.entry;
        (e.max_downtime_ns.get() != 0).then(|| Migration {
            separate_memory: e.migration_flags.get() & MIGRATION_SEPARATE_MEMORY != 0,
            hide_downtime: e.migration_flags.get() & MIGRATION_HIDE_DOWNTIME != 0,
            migrate_by: e.migrate_by.get(),
            max_downtime_ns: e.max_downtime_ns.get(),
        })
    }

    /// The raw entry (for code that takes table entries).
    pub fn entry(&self) -> &'a SandboxEntry {
        self.entry
    }

    /// Its vCPUs, in vCPU index order (1..=[`MAX_VCPUS_PER_SANDBOX`]).
    pub fn vcpus(&self) -> impl ExactSizeIterator<Item = VcpuView<'a>> + Clone + 'a {
        self.table
            .sandbox_vcpus(self.id.index())
            .iter()
            .map(|entry| VcpuView { entry })
    }

    /// Its vCPU with index `i` inside the sandbox.
    pub fn vcpu(&self, i: usize) -> Option<VcpuView<'a>> {
        let entry = self.table.sandbox_vcpus(self.id.index()).get(i)?;
        Some(VcpuView { entry })
    }

    /// Its guest-physical regions.
    pub fn regions(&self) -> impl ExactSizeIterator<Item = RegionView<'a>> + Clone + 'a {
        self.table
            .sandbox_regions(self.id.index())
            .iter()
            .map(|entry| RegionView { entry })
    }

    /// Its passed-through devices.
    pub fn devices(&self) -> impl ExactSizeIterator<Item = DeviceView<'a>> + Clone + 'a {
        self.table
            .sandbox_devices(self.id.index())
            .iter()
            .map(|entry| DeviceView { entry })
    }

    /// The raw device entries (for the I/O bitmap builder).
    pub fn device_entries(&self) -> &'a [DeviceEntry] {
        self.table.sandbox_devices(self.id.index())
    }

    /// Its payloads, in table order.
    pub fn payloads(&self) -> impl ExactSizeIterator<Item = PayloadView<'a>> + Clone + 'a {
        let first = self.table.sandboxes[self.id.index()].payloads.first.get();
        self.table
            .sandbox_payloads(self.id.index())
            .iter()
            .enumerate()
            .map(move |(in_sandbox, entry)| PayloadView {
                index: idx(first) + in_sandbox,
                in_sandbox,
                entry,
            })
    }
}

/// Where the monitor writes launch values into a sandbox's RAM (`None`: not wanted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchPatches {
    /// TSC frequency in kHz (u32).
    pub tsc_khz: Option<GuestPhysAddr>,
    /// Boot time in microseconds since the Unix epoch (u64).
    pub boot_time_us: Option<GuestPhysAddr>,
    /// Launch count (u32; 1 at first boot).
    pub launch_count: Option<GuestPhysAddr>,
    /// Boot time in nanoseconds since the Unix epoch (u64).
    pub boot_time_ns: Option<GuestPhysAddr>,
}

/// How a sandbox may migrate ([`SandboxView::migration`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Migration {
    /// It has a separate standby RAM region.
    pub separate_memory: bool,
    /// A migration's pause is hidden from its clock (`downtime_clock = "hidden"`).
    pub hide_downtime: bool,
    /// Bit `i`: sandbox `i` may ask for its migration (only bits of existing sandboxes,
    /// at least one: validated).
    pub migrate_by: u64,
    /// The longest pause it tolerates, ns (non-zero).
    pub max_downtime_ns: u64,
}

impl Migration {
    /// Whether sandbox `caller` may ask for this migration.
    pub fn allows(&self, caller: SandboxId) -> bool {
        caller.index() < 64 && self.migrate_by & (1 << caller.index()) != 0
    }
}

/// One vCPU of a [`TableView`].
#[derive(Clone, Copy, Debug)]
pub struct VcpuView<'a> {
    entry: &'a VcpuEntry,
}

impl<'a> VcpuView<'a> {
    entry_fields! {
        /// Owning sandbox (valid).
        sandbox: SandboxId = SandboxId::new;
        /// Index inside its sandbox (also its virtual APIC ID).
        index: usize = idx;
        /// Logical core that runs it (below the system's cores, used by no other vCPU).
        core: CoreId = CoreId::new;
        /// Initial RIP (inside RAM).
        rip: u64;
        /// Initial RSP (inside RAM or at its end).
        rsp: u64;
        /// Initial RDI.
        rdi: u64;
        /// Initial RSI.
        rsi: u64;
    }
    /// The core it moves to when its sandbox migrates (below the system's cores, used by
    /// no other vCPU, running or standing by), if its sandbox may migrate.
    pub fn standby_core(&self) -> Option<CoreId> {
        let c = self.entry.standby_core.get();
        (c != NO_INDEX).then(|| CoreId::new(c))
    }
    /// The raw entry.
    pub fn entry(&self) -> &'a VcpuEntry {
        self.entry
    }
}

/// One guest-physical region of a [`TableView`].
#[derive(Clone, Copy, Debug)]
pub struct RegionView<'a> {
    entry: &'a RegionEntry,
}

impl RegionView<'_> {
    /// What it maps.
    pub fn kind(&self) -> RegionKind {
        // Validated: a known value.
        RegionKind::from_u32(self.entry.kind.get()).unwrap_or(RegionKind::Ram)
    }
    /// Guest-physical range (page aligned, no wrap: validated).
    pub fn gpa(&self) -> Range<GuestPhysAddr> {
        gpa_range(self.entry.gpa.get(), self.entry.size.get())
    }
    entry_fields! {
        /// `ACCESS_*` bits.
        access: u32;
    }
    /// The channel of a channel region.
    pub fn channel(&self) -> Option<usize> {
        let c = self.entry.channel.get();
        (c != NO_INDEX).then_some(idx(c))
    }
}

/// One passed-through device of a [`TableView`].
#[derive(Clone, Copy, Debug)]
pub struct DeviceView<'a> {
    entry: &'a DeviceEntry,
}

impl DeviceView<'_> {
    /// Its kind.
    pub fn kind(&self) -> DeviceKind {
        // Validated: a known value.
        DeviceKind::from_u32(self.entry.kind.get()).unwrap_or(DeviceKind::IoPorts)
    }
    /// Its I/O ports (validated: first <= last <= 0xffff; `0..=0` for a PCI function).
    pub fn ports(&self) -> RangeInclusive<u16> {
        let clamp = |p: u64| u16::try_from(p).unwrap_or(u16::MAX);
        clamp(self.entry.first.get())..=clamp(self.entry.last.get())
    }
    /// The legacy IRQ line of a port range (validated: at most [`MAX_IRQ`], not the
    /// cascade or the console's).
    pub fn irq(&self) -> Option<u8> {
        u8::try_from(self.entry.irq.get()).ok()
    }
    /// The PCI function it names (`None` for a port range).
    pub fn pci(&self) -> Option<PciSelector> {
        (self.kind() == DeviceKind::Pci)
            .then(|| crate::validate::pci_selector(self.entry))
            .flatten()
    }
    /// Whether it may master the bus without DMA protection (`dma = "unprotected"`).
    pub fn dma_unprotected(&self) -> bool {
        self.entry.flags.get() & DEVICE_DMA_UNPROTECTED != 0
    }
    /// Whether its sandbox starts without it when it is absent at boot.
    pub fn start_without(&self) -> bool {
        self.entry.flags.get() & DEVICE_START_WITHOUT != 0
    }
}

/// One channel of a [`TableView`].
#[derive(Clone, Copy, Debug)]
pub struct ChannelView<'a> {
    index: usize,
    entry: &'a ChannelEntry,
}

impl<'a> ChannelView<'a> {
    /// Its index in the table.
    pub fn index(&self) -> usize {
        self.index
    }
    /// Its name.
    pub fn name(&self) -> &'a str {
        // Validated: a non-empty UTF-8 name.
        crate::name_str(&self.entry.name).unwrap_or("?")
    }
    entry_fields! {
        /// Writer sandbox (valid).
        writer: SandboxId = SandboxId::new;
        /// Reader sandbox (valid, not the writer).
        reader: SandboxId = SandboxId::new;
        /// Size of the data area (page multiple).
        data_size: u64;
        /// Size of the acknowledgement area (page multiple).
        ack_size: u64;
    }
    /// Host memory it needs: data then ack, contiguous (no overflow: validated).
    pub fn size(&self) -> u64 {
        self.data_size().saturating_add(self.ack_size())
    }
    /// The raw entry.
    pub fn entry(&self) -> &'a ChannelEntry {
        self.entry
    }
}

/// One payload of a [`TableView`]: bytes of the payload area copied into guest memory.
#[derive(Clone, Copy, Debug)]
pub struct PayloadView<'a> {
    index: usize,
    in_sandbox: usize,
    entry: &'a PayloadEntry,
}

impl<'a> PayloadView<'a> {
    /// Its index in the table's payload array.
    pub fn index(&self) -> usize {
        self.index
    }
    /// Its index among its sandbox's payloads (how messages name it).
    pub fn index_in_sandbox(&self) -> usize {
        self.in_sandbox
    }
    entry_fields! {
        /// Owning sandbox.
        sandbox: SandboxId = SandboxId::new;
        /// Size in bytes (non-zero).
        size: u64;
    }
    /// Guest-physical destination range (inside RAM or the directory: validated).
    pub fn gpa(&self) -> Range<GuestPhysAddr> {
        gpa_range(self.entry.gpa.get(), self.entry.size.get())
    }
    /// Its byte range inside the payload area (inside it: validated).
    pub fn area_range(&self) -> Range<u64> {
        let start = self.entry.offset.get();
        start..start.saturating_add(self.entry.size.get())
    }
    /// Its bytes, given the payload area that follows the table (`None` only if `area`
    /// is not that area).
    pub fn bytes_in<'b>(&self, area: &'b [u8]) -> Option<&'b [u8]> {
        let r = self.area_range();
        area.get(usize::try_from(r.start).ok()?..usize::try_from(r.end).ok()?)
    }
    /// The SHA-256 its bytes must have.
    pub fn sha256(&self) -> &'a [u8; 32] {
        &self.entry.sha256
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    extern crate std;

    use super::*;
    use crate::bootinfo;
    use crate::layout::*;
    use crate::testing::{sample_table, Sample, DATA_SIZE, MIB};

    fn gpa(a: u64) -> GuestPhysAddr {
        GuestPhysAddr::new(a)
    }

    #[test]
    fn only_a_valid_table_has_a_view() {
        let mut bytes = sample_table();
        assert!(TableView::validate(&bytes).is_ok());
        bytes[0] ^= 1;
        assert_eq!(TableView::validate(&bytes).unwrap_err(), AbiError::BadMagic);
    }

    #[test]
    fn accessors_give_the_sample_typed() {
        let bytes = sample_table();
        let t = TableView::validate(&bytes).unwrap();
        assert_eq!(t.name(), "sample");
        assert_eq!((t.cores(), t.console_port()), (4, 0x3f8));
        assert_eq!(
            (t.system_memory(), t.monitor_reserve()),
            (256 * MIB, 32 * MIB)
        );
        let area = t.payload_area();
        assert_eq!(area.start % PAYLOAD_ALIGN, 0);
        assert_eq!(area.end - area.start, 8192);
        assert_eq!(
            (
                t.sandbox_count(),
                t.vcpu_count(),
                t.channel_count(),
                t.payload_count()
            ),
            (2, 3, 1, 2)
        );
        let names: std::vec::Vec<_> = t.sandboxes().map(|s| s.name()).collect();
        assert_eq!(names, ["a", "b"]);
        let b = t.sandbox(SandboxId::new(1)).unwrap();
        assert!(t.sandbox(SandboxId::new(2)).is_none());
        assert_eq!(
            (b.id(), b.runtime(), b.on_fault()),
            (SandboxId::new(1), Runtime::Bare, OnFault::HaltSandbox)
        );
        assert_eq!(b.ram_size(), 8 * MIB);
        assert_eq!(
            (b.boot_info_gpa(), b.page_table_gpa()),
            (gpa(BOOT_INFO_GPA), gpa(PAGE_TABLES_GPA))
        );
        assert_eq!(b.directory_gpa(), Some(gpa(DIRECTORY_GPA)));
        let patches = b.launch_patches();
        assert_eq!(
            patches.tsc_khz,
            Some(gpa(BOOT_INFO_GPA + bootinfo::TSC_KHZ_OFFSET))
        );
        assert_eq!(patches.launch_count, None);
        let ports: std::vec::Vec<_> = b.devices().map(|d| d.ports()).collect();
        assert_eq!(ports, [0x2f8..=0x2ff]);
        assert_eq!(b.devices().next().unwrap().kind(), DeviceKind::IoPorts);
        let a = t.sandbox(SandboxId::new(0)).unwrap();
        assert_eq!(
            a.vcpus().map(|v| v.core()).collect::<std::vec::Vec<_>>(),
            [CoreId::new(1), CoreId::new(2)]
        );
        let v1 = a.vcpu(1).unwrap();
        assert_eq!(
            (v1.sandbox(), v1.index(), v1.rsi()),
            (SandboxId::new(0), 1, 1)
        );
        assert_eq!(v1.rsp(), 8 * MIB - BARE_STACK_SIZE);
        assert_eq!((v1.rip(), v1.rdi()), (BARE_IMAGE_GPA, BOOT_INFO_GPA));
        assert!(a.vcpu(2).is_none());
        assert_eq!(
            t.vcpu_on_core(CoreId::new(3)).map(|v| v.sandbox()),
            Some(SandboxId::new(1))
        );
        assert!(t.vcpu_on_core(CoreId::new(0)).is_none());
        let kinds: std::vec::Vec<_> = a.regions().map(|r| (r.kind(), r.channel())).collect();
        assert_eq!(
            kinds,
            [
                (RegionKind::Ram, None),
                (RegionKind::Directory, None),
                (RegionKind::ChannelData, Some(0)),
                (RegionKind::ChannelAck, Some(0)),
            ]
        );
        assert_eq!(a.regions().next().unwrap().gpa(), gpa(0)..gpa(8 * MIB));
        let c = t.channel(0).unwrap();
        assert_eq!(
            (c.name(), c.writer(), c.reader()),
            ("a-to-b", SandboxId::new(0), SandboxId::new(1))
        );
        assert_eq!(c.size(), DATA_SIZE + CHANNEL_ACK_SIZE);
        assert_eq!(t.channels().count(), 1);
        let p = b.payloads().next().unwrap();
        assert_eq!(
            (p.index(), p.index_in_sandbox(), p.sandbox()),
            (1, 0, SandboxId::new(1))
        );
        assert_eq!(
            t.payload(1).map(|q| q.entry as *const _),
            Some(p.entry as *const _)
        );
        assert_eq!(t.payload(1).map(|q| q.index_in_sandbox()), Some(0));
        assert!(t.payload(2).is_none());
        assert_eq!(p.area_range(), 4096..4196);
        assert_eq!(p.gpa(), gpa(BARE_IMAGE_GPA)..gpa(BARE_IMAGE_GPA + 100));
        assert_eq!(p.sha256(), &[1; 32]);
        let area = [7u8; 8192];
        assert_eq!(p.bytes_in(&area).map(<[u8]>::len), Some(100));
        assert_eq!(p.bytes_in(&area[..4100]), None);
    }

    #[test]
    fn enums_decode_every_value() {
        let mut s = Sample::new();
        s.sandboxes[0].runtime = (Runtime::Hermit as u32).into();
        s.sandboxes[0].on_fault = (OnFault::Restart as u32).into();
        s.sandboxes[1].on_fault = (OnFault::HaltSystem as u32).into();
        let bytes = s.encode();
        let t = TableView::validate(&bytes).unwrap();
        let a = t.sandbox(SandboxId::new(0)).unwrap();
        assert_eq!(
            (a.runtime(), a.on_fault()),
            (Runtime::Hermit, OnFault::Restart)
        );
        assert_eq!(
            t.sandbox(SandboxId::new(1)).unwrap().on_fault(),
            OnFault::HaltSystem
        );
    }
}
