//! Checking a partition table and viewing it in place.
//!
//! [`validate`] is run by the host on every table it writes and by the monitor at boot;
//! it checks every structural invariant, so the rest of the monitor can index the arrays
//! without further checks. It never panics, whatever the bytes.

use crate::directory::MAX_DIRECTORY_ENTRIES;
use crate::layout;
use crate::table::*;
use core::mem::size_of;
use zerocopy::{FromBytes, Immutable, KnownLayout};

/// Which entry array an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Array {
    /// [`SandboxEntry`]s.
    Sandboxes,
    /// [`VcpuEntry`]s.
    Vcpus,
    /// [`RegionEntry`]s.
    Regions,
    /// [`ChannelEntry`]s.
    Channels,
    /// [`DeviceEntry`]s.
    Devices,
    /// [`PayloadEntry`]s.
    Payloads,
}

impl core::fmt::Display for Array {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Sandboxes => "sandbox",
            Self::Vcpus => "vcpu",
            Self::Regions => "region",
            Self::Channels => "channel",
            Self::Devices => "device",
            Self::Payloads => "payload",
        })
    }
}

/// A structural problem in a partition table. Messages name the entry (`sandbox 2`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbiError {
    /// The bytes are shorter than a header or than the size the header claims.
    Truncated,
    /// The magic bytes are wrong: this is not a Quest partition table.
    BadMagic,
    /// The table has a version this code does not understand.
    BadVersion(u32),
    /// The header size or total size is inconsistent.
    BadSize,
    /// The checksum does not match the contents.
    BadChecksum {
        /// Checksum stored in the header.
        stored: u32,
        /// Checksum of the bytes.
        computed: u32,
    },
    /// An entry array lies outside the table, overlaps another, or has the wrong entry size.
    BadArray(Array),
    /// The table has no sandbox, or more than [`MAX_SANDBOXES`].
    SandboxCount,
    /// The table has more than [`MAX_CHANNELS`] channels.
    ChannelCount,
    /// A name is empty, not UTF-8, or not NUL-padded.
    BadName(Array, u32),
    /// Two entries share a name.
    DuplicateName(Array, u32),
    /// An enum field (runtime, on_fault, kind) has an unknown value.
    BadEnum(Array, u32),
    /// A sandbox's index range into another array is out of bounds or not contiguous.
    BadRange(Array, u32),
    /// An entry claims a different owner than the sandbox whose range holds it.
    WrongOwner(Array, u32),
    /// A sandbox has no vCPU or more than [`MAX_VCPUS_PER_SANDBOX`].
    VcpuCount(u32),
    /// A vCPU's index is not its position in its sandbox.
    VcpuIndex(u32),
    /// A vCPU names a core beyond the system's cores.
    CoreOutOfRange(u32),
    /// Two vCPUs run on the same core.
    CoreUsedTwice(u32),
    /// A vCPU's initial RIP or RSP lies outside its sandbox's RAM.
    VcpuState(u32),
    /// A region is not page-aligned, is empty, or wraps around.
    RegionShape(u32),
    /// Two regions of one sandbox overlap.
    RegionOverlap(u32),
    /// A sandbox's RAM region is missing, duplicated, or differs from `ram_size`.
    Ram(u32),
    /// A region's access or channel reference is wrong for its kind.
    RegionAccess(u32),
    /// A channel's endpoints are invalid (missing, equal) or its sizes unaligned.
    ChannelShape(u32),
    /// A channel is not mapped exactly as planned in both endpoints.
    ChannelMapping(u32),
    /// A sandbox has more channels than its directory can list.
    DirectoryFull(u32),
    /// A device's port range is empty, beyond 0xffff, or of unknown kind.
    DevicePorts(u32),
    /// A device overlaps another device or the monitor's console (ports, IRQ line or
    /// PCI function), or claims the PCI configuration ports.
    DeviceConflict(u32),
    /// A device's IRQ line, flags or PCI selector is malformed or on the wrong kind.
    DeviceFields(u32),
    /// A payload lies outside the payload area or outside its sandbox's memory.
    Payload(u32),
    /// A sandbox field (boot info, page tables, patch addresses) lies outside its RAM.
    SandboxAddress(u32),
    /// A sandbox's migration fields disagree (standby cores on some vCPUs only, unknown
    /// flags or controllers, no `max_downtime` for a migratable sandbox, or migration
    /// fields without standby cores).
    Migration(u32),
}

impl core::fmt::Display for AbiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::Truncated => f.write_str("partition table is truncated"),
            Self::BadMagic => f.write_str("not a Quest partition table (bad magic)"),
            Self::BadVersion(v) => write!(
                f,
                "partition table version {v} is not supported (want {TABLE_VERSION})"
            ),
            Self::BadSize => f.write_str("partition table header has inconsistent sizes"),
            Self::BadChecksum { stored, computed } => {
                write!(f, "partition table checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")
            }
            Self::BadArray(a) => write!(
                f,
                "{a} array lies outside the table or has a wrong entry size"
            ),
            Self::SandboxCount => write!(f, "a table needs 1 to {MAX_SANDBOXES} sandboxes"),
            Self::ChannelCount => write!(f, "a table has at most {MAX_CHANNELS} channels"),
            Self::BadName(a, i) => write!(f, "{a} {i} has an invalid name"),
            Self::DuplicateName(a, i) => write!(f, "{a} {i} has the same name as an earlier one"),
            Self::BadEnum(a, i) => {
                write!(f, "{a} {i} has an unknown kind, runtime or fault policy")
            }
            Self::BadRange(a, i) => write!(f, "sandbox {i} has an invalid {a} range"),
            Self::WrongOwner(a, i) => write!(
                f,
                "{a} {i} belongs to another sandbox than the one listing it"
            ),
            Self::VcpuCount(i) => write!(f, "sandbox {i} needs 1 to {MAX_VCPUS_PER_SANDBOX} vcpus"),
            Self::VcpuIndex(i) => write!(
                f,
                "vcpu {i} has an index that is not its position in its sandbox"
            ),
            Self::CoreOutOfRange(i) => {
                write!(f, "vcpu {i} runs on a core the system does not have")
            }
            Self::CoreUsedTwice(i) => {
                write!(f, "vcpu {i} runs on a core another vcpu already uses")
            }
            Self::VcpuState(i) => write!(f, "vcpu {i} starts outside its sandbox's RAM"),
            Self::RegionShape(i) => write!(f, "region {i} is empty, unaligned or wraps around"),
            Self::RegionOverlap(i) => {
                write!(f, "region {i} overlaps another region of its sandbox")
            }
            Self::Ram(i) => write!(
                f,
                "sandbox {i} does not have exactly one RAM region [0, ram_size)"
            ),
            Self::RegionAccess(i) => {
                write!(f, "region {i} has the wrong access or channel for its kind")
            }
            Self::ChannelShape(i) => write!(f, "channel {i} has invalid endpoints or sizes"),
            Self::ChannelMapping(i) => {
                write!(f, "channel {i} is not mapped as planned in both endpoints")
            }
            Self::DirectoryFull(i) => write!(
                f,
                "sandbox {i} has more channels than its directory can list"
            ),
            Self::DevicePorts(i) => write!(f, "device {i} has an invalid port range or kind"),
            Self::DeviceConflict(i) => {
                write!(f, "device {i} overlaps another device or the console")
            }
            Self::DeviceFields(i) => write!(
                f,
                "device {i} has an invalid IRQ line, flags or PCI function"
            ),
            Self::Payload(i) => write!(
                f,
                "payload {i} lies outside the payload area or its sandbox's memory"
            ),
            Self::SandboxAddress(i) => write!(f, "sandbox {i} has a boot address outside its RAM"),
            Self::Migration(i) => write!(f, "sandbox {i} has inconsistent migration fields"),
        }
    }
}

/// A validated table, viewed in place.
#[derive(Clone, Copy, Debug)]
pub struct Table<'a> {
    /// The header.
    pub header: &'a Header,
    /// Sandboxes.
    pub sandboxes: &'a [SandboxEntry],
    /// vCPUs, grouped by sandbox.
    pub vcpus: &'a [VcpuEntry],
    /// Regions, grouped by sandbox.
    pub regions: &'a [RegionEntry],
    /// Channels.
    pub channels: &'a [ChannelEntry],
    /// Devices, grouped by sandbox.
    pub devices: &'a [DeviceEntry],
    /// Payloads, grouped by sandbox.
    pub payloads: &'a [PayloadEntry],
    /// The table's bytes (`header.total_size` long).
    pub bytes: &'a [u8],
}

impl<'a> Table<'a> {
    /// The vCPUs of sandbox `s` (`s` must be a valid index).
    pub fn sandbox_vcpus(&self, s: usize) -> &'a [VcpuEntry] {
        self.slice(self.vcpus, self.sandboxes[s].vcpus)
    }
    /// The regions of sandbox `s`.
    pub fn sandbox_regions(&self, s: usize) -> &'a [RegionEntry] {
        self.slice(self.regions, self.sandboxes[s].regions)
    }
    /// The devices of sandbox `s`.
    pub fn sandbox_devices(&self, s: usize) -> &'a [DeviceEntry] {
        self.slice(self.devices, self.sandboxes[s].devices)
    }
    /// The payloads of sandbox `s`.
    pub fn sandbox_payloads(&self, s: usize) -> &'a [PayloadEntry] {
        self.slice(self.payloads, self.sandboxes[s].payloads)
    }
    /// Offset of the payload area from the start of the table.
    pub fn payload_area_offset(&self) -> u64 {
        payload_area_offset(self.header.total_size.get())
    }
    fn slice<T>(&self, all: &'a [T], range: IndexRange) -> &'a [T] {
        // Ranges were checked by `validate`; fall back to empty rather than panic.
        range.bounds().and_then(|r| all.get(r)).unwrap_or(&[])
    }
}

/// Offset of the payload area for a table of `total_size` bytes.
pub fn payload_area_offset(total_size: u32) -> u64 {
    (total_size as u64).div_ceil(PAYLOAD_ALIGN) * PAYLOAD_ALIGN
}

/// The table's CRC: CRC-32 (ISO-HDLC, as zlib and Ethernet), computed bit by bit. It
/// runs once per boot over a few KiB, and the table-driven variants cost the monitor
/// image 1-16 KiB of table for nothing.
const CRC32: crc::Crc<u32, crc::NoTable> =
    crc::Crc::<u32, crc::NoTable>::new(&crc::CRC_32_ISO_HDLC);

/// CRC-32 of a table with its checksum field taken as zero.
pub fn checksum(table: &[u8]) -> u32 {
    const CHECKSUM_AT: usize = 20;
    let mut h = CRC32.digest();
    if table.len() < CHECKSUM_AT + 4 {
        h.update(table);
        return h.finalize();
    }
    h.update(&table[..CHECKSUM_AT]);
    h.update(&[0; 4]);
    h.update(&table[CHECKSUM_AT + 4..]);
    h.finalize()
}

fn array<'a, T: FromBytes + KnownLayout + Immutable>(
    bytes: &'a [u8],
    r: &ArrayRef,
    which: Array,
) -> Result<&'a [T], AbiError> {
    let bad = AbiError::BadArray(which);
    if r.entry_size.get() as usize != size_of::<T>() || r.reserved.get() != 0 {
        return Err(bad);
    }
    let start = r.offset.get() as usize;
    let len = (r.count.get() as usize)
        .checked_mul(size_of::<T>())
        .ok_or(bad)?;
    let end = start.checked_add(len).ok_or(bad)?;
    if start < size_of::<Header>() {
        return Err(bad);
    }
    let window = bytes.get(start..end).ok_or(bad)?;
    <[T]>::ref_from_bytes(window).map_err(|_| bad)
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

fn end_of(start: u64, size: u64) -> Option<u64> {
    start.checked_add(size)
}

/// Checks `bytes` as a partition table and returns a view of it.
pub fn validate(bytes: &[u8]) -> Result<Table<'_>, AbiError> {
    let (header, _) = Header::ref_from_prefix(bytes).map_err(|_| AbiError::Truncated)?;
    if header.magic != TABLE_MAGIC {
        return Err(AbiError::BadMagic);
    }
    if header.version.get() != TABLE_VERSION {
        return Err(AbiError::BadVersion(header.version.get()));
    }
    let total = header.total_size.get() as usize;
    if header.header_size.get() as usize != size_of::<Header>() || total < size_of::<Header>() {
        return Err(AbiError::BadSize);
    }
    let bytes = bytes.get(..total).ok_or(AbiError::Truncated)?;
    let computed = checksum(bytes);
    if computed != header.checksum.get() {
        return Err(AbiError::BadChecksum {
            stored: header.checksum.get(),
            computed,
        });
    }
    if header.reserved0.get() != 0 || header.payload_area_size.get() % PAYLOAD_ALIGN != 0 {
        return Err(AbiError::BadSize);
    }
    let table = Table {
        header,
        sandboxes: array(bytes, &header.sandboxes, Array::Sandboxes)?,
        vcpus: array(bytes, &header.vcpus, Array::Vcpus)?,
        regions: array(bytes, &header.regions, Array::Regions)?,
        channels: array(bytes, &header.channels, Array::Channels)?,
        devices: array(bytes, &header.devices, Array::Devices)?,
        payloads: array(bytes, &header.payloads, Array::Payloads)?,
        bytes,
    };
    check_arrays_disjoint(header)?;
    if crate::name_str(&header.system_name).is_none_or(str::is_empty) {
        return Err(AbiError::BadName(Array::Sandboxes, u32::MAX));
    }
    check_sandboxes(&table)?;
    check_vcpus(&table)?;
    check_channels(&table)?;
    check_regions(&table)?;
    check_devices(&table)?;
    check_payloads(&table)?;
    Ok(table)
}

fn check_arrays_disjoint(h: &Header) -> Result<(), AbiError> {
    let arrays = [
        (&h.sandboxes, Array::Sandboxes),
        (&h.vcpus, Array::Vcpus),
        (&h.regions, Array::Regions),
        (&h.channels, Array::Channels),
        (&h.devices, Array::Devices),
        (&h.payloads, Array::Payloads),
    ];
    let span = |r: &ArrayRef| {
        let s = r.offset.get() as u64;
        (s, s + r.count.get() as u64 * r.entry_size.get() as u64)
    };
    for (i, (a, _)) in arrays.iter().enumerate() {
        for (b, which) in &arrays[i + 1..] {
            let (sa, sb) = (span(a), span(b));
            if sa.0 != sa.1 && sb.0 != sb.1 && overlaps(sa, sb) {
                return Err(AbiError::BadArray(*which));
            }
        }
    }
    Ok(())
}

/// Checks that the ranges of all sandboxes tile `len` entries in order.
fn check_tiling(
    t: &Table<'_>,
    len: usize,
    which: Array,
    range: impl Fn(&SandboxEntry) -> IndexRange,
) -> Result<(), AbiError> {
    let mut next = 0usize;
    for (i, s) in t.sandboxes.iter().enumerate() {
        let r = range(s)
            .bounds()
            .ok_or(AbiError::BadRange(which, i as u32))?;
        if r.start != next || r.end > len {
            return Err(AbiError::BadRange(which, i as u32));
        }
        next = r.end;
    }
    if next != len {
        return Err(AbiError::BadRange(which, u32::MAX));
    }
    Ok(())
}

/// Entry `i` of `entries` (the table's `array`) has a valid, non-empty name that no
/// earlier entry has.
fn check_name<T>(
    array: Array,
    entries: &[T],
    i: usize,
    name_of: fn(&T) -> &[u8; NAME_LEN],
) -> Result<(), AbiError> {
    let idx = i as u32;
    let name = entries.get(i).and_then(|e| crate::name_str(name_of(e)));
    let name = name.filter(|n| !n.is_empty());
    let name = name.ok_or(AbiError::BadName(array, idx))?;
    if entries[..i]
        .iter()
        .any(|o| crate::name_str(name_of(o)) == Some(name))
    {
        return Err(AbiError::DuplicateName(array, idx));
    }
    Ok(())
}

fn check_sandboxes(t: &Table<'_>) -> Result<(), AbiError> {
    if t.sandboxes.is_empty() || t.sandboxes.len() > MAX_SANDBOXES {
        return Err(AbiError::SandboxCount);
    }
    if t.channels.len() > MAX_CHANNELS {
        return Err(AbiError::ChannelCount);
    }
    for (i, s) in t.sandboxes.iter().enumerate() {
        let idx = i as u32;
        check_name(Array::Sandboxes, t.sandboxes, i, |s| &s.name)?;
        if Runtime::from_u32(s.runtime.get()).is_none()
            || OnFault::from_u32(s.on_fault.get()).is_none()
        {
            return Err(AbiError::BadEnum(Array::Sandboxes, idx));
        }
        let ram = s.ram_size.get();
        if ram == 0 || ram % LARGE_PAGE_SIZE != 0 || ram > layout::MAX_RAM {
            return Err(AbiError::Ram(idx));
        }
        let in_ram = |gpa: u64, len: u64| end_of(gpa, len).is_some_and(|e| e <= ram);
        if !in_ram(s.boot_info_gpa.get(), 1)
            || !in_ram(s.page_table_gpa.get(), PAGE_SIZE)
            || s.page_table_gpa.get() % PAGE_SIZE != 0
        {
            return Err(AbiError::SandboxAddress(idx));
        }
        let patch_ok = |gpa: u64, len: u64| gpa == 0 || in_ram(gpa, len);
        if !patch_ok(s.patch_tsc_khz_gpa.get(), 4)
            || !patch_ok(s.patch_boot_time_gpa.get(), 8)
            || !patch_ok(s.patch_launch_count_gpa.get(), 4)
            || !patch_ok(s.patch_boot_time_ns_gpa.get(), 8)
        {
            return Err(AbiError::SandboxAddress(idx));
        }
        let n = s.vcpus.count.get() as usize;
        if n == 0 || n > MAX_VCPUS_PER_SANDBOX {
            return Err(AbiError::VcpuCount(idx));
        }
    }
    check_tiling(t, t.vcpus.len(), Array::Vcpus, |s| s.vcpus)?;
    check_tiling(t, t.regions.len(), Array::Regions, |s| s.regions)?;
    check_tiling(t, t.devices.len(), Array::Devices, |s| s.devices)?;
    check_tiling(t, t.payloads.len(), Array::Payloads, |s| s.payloads)
}

/// The logical cores that vCPUs run or stand by on, one bit each.
struct CoresUsed {
    cores: u32,
    used: [u64; (MAX_CORES as usize).div_ceil(64)],
}

impl CoresUsed {
    /// Marks `core` as used by vCPU `vcpu`: it must be a core of the system no vCPU
    /// runs or stands by on yet.
    fn claim(&mut self, core: u32, vcpu: u32) -> Result<(), AbiError> {
        if core >= self.cores {
            return Err(AbiError::CoreOutOfRange(vcpu));
        }
        let (word, bit) = ((core / 64) as usize, core % 64);
        if self.used[word] & (1 << bit) != 0 {
            return Err(AbiError::CoreUsedTwice(vcpu));
        }
        self.used[word] |= 1 << bit;
        Ok(())
    }
}

fn check_vcpus(t: &Table<'_>) -> Result<(), AbiError> {
    let cores = t.header.system_cores.get();
    if cores == 0 || cores > MAX_CORES {
        return Err(AbiError::BadSize);
    }
    let mut used = CoresUsed {
        cores,
        used: [0; (MAX_CORES as usize).div_ceil(64)],
    };
    for s in 0..t.sandboxes.len() {
        let ram = t.sandboxes[s].ram_size.get();
        let first = t.sandboxes[s].vcpus.first.get();
        for (pos, v) in t.sandbox_vcpus(s).iter().enumerate() {
            let idx = first + pos as u32;
            if v.sandbox.get() as usize != s {
                return Err(AbiError::WrongOwner(Array::Vcpus, idx));
            }
            if v.index.get() as usize != pos {
                return Err(AbiError::VcpuIndex(idx));
            }
            used.claim(v.core.get(), idx)?;
            if v.rip.get() >= ram || v.rsp.get() > ram || v.rsp.get() == 0 {
                return Err(AbiError::VcpuState(idx));
            }
        }
    }
    check_standby(t, &mut used)
}

/// Standby cores: every vCPU of a sandbox has one or none does; each is a core of the
/// system that no vCPU runs on and no other vCPU stands by on. The migration fields of
/// a sandbox are set exactly when it has standby cores.
fn check_standby(t: &Table<'_>, used: &mut CoresUsed) -> Result<(), AbiError> {
    for s in 0..t.sandboxes.len() {
        let sandbox = &t.sandboxes[s];
        let first = sandbox.vcpus.first.get();
        let vcpus = t.sandbox_vcpus(s);
        let with = vcpus
            .iter()
            .filter(|v| v.standby_core.get() != NO_INDEX)
            .count();
        let idx = s as u32;
        if with != 0 && with != vcpus.len() {
            return Err(AbiError::Migration(idx));
        }
        let migratable = with != 0;
        let flags = sandbox.migration_flags.get();
        let others = sandbox.migrate_by.get();
        let known = if t.sandboxes.len() >= 64 {
            u64::MAX
        } else {
            (1u64 << t.sandboxes.len()) - 1
        };
        let fields_ok = if migratable {
            flags & !MIGRATION_FLAGS == 0
                && others != 0
                && others & !known == 0
                && sandbox.max_downtime_ns.get() != 0
        } else {
            flags == 0 && others == 0 && sandbox.max_downtime_ns.get() == 0
        };
        if !fields_ok || sandbox.reserved.get() != 0 {
            return Err(AbiError::Migration(idx));
        }
        for (pos, v) in vcpus.iter().enumerate() {
            let core = v.standby_core.get();
            if core == NO_INDEX {
                continue;
            }
            used.claim(core, first + pos as u32)?;
        }
    }
    Ok(())
}

fn check_regions(t: &Table<'_>) -> Result<(), AbiError> {
    for s in 0..t.sandboxes.len() {
        let sandbox = &t.sandboxes[s];
        let first = sandbox.regions.first.get();
        let regions = t.sandbox_regions(s);
        let mut ram_regions = 0;
        let mut channel_regions = 0usize;
        for (pos, r) in regions.iter().enumerate() {
            let idx = first + pos as u32;
            if r.sandbox.get() as usize != s {
                return Err(AbiError::WrongOwner(Array::Regions, idx));
            }
            let (gpa, size) = (r.gpa.get(), r.size.get());
            let end = end_of(gpa, size).ok_or(AbiError::RegionShape(idx))?;
            if size == 0 || gpa % PAGE_SIZE != 0 || size % PAGE_SIZE != 0 {
                return Err(AbiError::RegionShape(idx));
            }
            for (other_pos, o) in regions[..pos].iter().enumerate() {
                let _ = other_pos;
                if overlaps((gpa, end), (o.gpa.get(), o.gpa.get() + o.size.get())) {
                    return Err(AbiError::RegionOverlap(idx));
                }
            }
            let kind =
                RegionKind::from_u32(r.kind.get()).ok_or(AbiError::BadEnum(Array::Regions, idx))?;
            let access = r.access.get();
            if access & !(ACCESS_READ | ACCESS_WRITE | ACCESS_EXEC) != 0 {
                return Err(AbiError::RegionAccess(idx));
            }
            let in_window = gpa >= layout::CHANNEL_WINDOW_GPA
                && end <= layout::CHANNEL_WINDOW_GPA + layout::CHANNEL_WINDOW_SIZE;
            match kind {
                RegionKind::Ram => {
                    ram_regions += 1;
                    let rwx = ACCESS_READ | ACCESS_WRITE | ACCESS_EXEC;
                    if gpa != 0
                        || size != sandbox.ram_size.get()
                        || access != rwx
                        || r.channel.get() != NO_INDEX
                    {
                        return Err(AbiError::Ram(s as u32));
                    }
                }
                RegionKind::Directory => {
                    if gpa != layout::DIRECTORY_GPA
                        || size != layout::DIRECTORY_SIZE
                        || access != ACCESS_READ
                        || r.channel.get() != NO_INDEX
                        || sandbox.directory_gpa.get() != gpa
                    {
                        return Err(AbiError::RegionAccess(idx));
                    }
                }
                RegionKind::ChannelData | RegionKind::ChannelAck => {
                    channel_regions += 1;
                    let c = t
                        .channels
                        .get(r.channel.get() as usize)
                        .ok_or(AbiError::RegionAccess(idx))?;
                    let writer = c.writer.get() as usize == s;
                    let reader = c.reader.get() as usize == s;
                    let base = if writer {
                        c.writer_gpa.get()
                    } else {
                        c.reader_gpa.get()
                    };
                    let data = kind == RegionKind::ChannelData;
                    let (want_gpa, want_size) = if data {
                        (base, c.data_size.get())
                    } else {
                        (base.wrapping_add(c.data_size.get()), c.ack_size.get())
                    };
                    let want_access = if data == writer {
                        ACCESS_READ | ACCESS_WRITE
                    } else {
                        ACCESS_READ
                    };
                    if !(writer || reader)
                        || !in_window
                        || gpa != want_gpa
                        || size != want_size
                        || access != want_access
                    {
                        return Err(AbiError::RegionAccess(idx));
                    }
                }
            }
        }
        if ram_regions != 1 {
            return Err(AbiError::Ram(s as u32));
        }
        let has_directory = regions
            .iter()
            .any(|r| r.kind.get() == RegionKind::Directory as u32);
        if has_directory != (sandbox.directory_gpa.get() != 0) {
            return Err(AbiError::SandboxAddress(s as u32));
        }
        if channel_regions / 2 > MAX_DIRECTORY_ENTRIES {
            return Err(AbiError::DirectoryFull(s as u32));
        }
    }
    Ok(())
}

fn check_channels(t: &Table<'_>) -> Result<(), AbiError> {
    for (i, c) in t.channels.iter().enumerate() {
        let idx = i as u32;
        check_name(Array::Channels, t.channels, i, |c| &c.name)?;
        let (w, r) = (c.writer.get() as usize, c.reader.get() as usize);
        let sizes_ok = c.data_size.get() != 0
            && c.data_size.get() % PAGE_SIZE == 0
            && c.ack_size.get() != 0
            && c.ack_size.get() % PAGE_SIZE == 0
            && c.data_size
                .get()
                .checked_add(c.ack_size.get())
                .is_some_and(|s| s <= layout::CHANNEL_WINDOW_SIZE);
        if w == r || w >= t.sandboxes.len() || r >= t.sandboxes.len() || !sizes_ok {
            return Err(AbiError::ChannelShape(idx));
        }
        // Exactly one data and one ack region in each endpoint, and none elsewhere.
        for s in 0..t.sandboxes.len() {
            let count = t
                .sandbox_regions(s)
                .iter()
                .filter(|reg| reg.channel.get() == idx)
                .count();
            let want = if s == w || s == r { 2 } else { 0 };
            if count != want {
                return Err(AbiError::ChannelMapping(idx));
            }
            let kinds = |k: RegionKind| {
                t.sandbox_regions(s)
                    .iter()
                    .filter(|reg| reg.channel.get() == idx && reg.kind.get() == k as u32)
                    .count()
            };
            if want == 2
                && (kinds(RegionKind::ChannelData) != 1 || kinds(RegionKind::ChannelAck) != 1)
            {
                return Err(AbiError::ChannelMapping(idx));
            }
        }
    }
    Ok(())
}

fn check_devices(t: &Table<'_>) -> Result<(), AbiError> {
    let console_port = t.header.console_port.get();
    let console = (
        u64::from(console_port),
        u64::from(console_port) + CONSOLE_PORT_SPAN as u64,
    );
    let pci_ports = (
        u64::from(PCI_CONFIG_PORTS.0),
        u64::from(PCI_CONFIG_PORTS.1) + 1,
    );
    for s in 0..t.sandboxes.len() {
        let first = t.sandboxes[s].devices.first.get();
        for (pos, d) in t.sandbox_devices(s).iter().enumerate() {
            let idx = first + pos as u32;
            if d.sandbox.get() as usize != s {
                return Err(AbiError::WrongOwner(Array::Devices, idx));
            }
            let earlier = &t.devices[..idx as usize];
            match DeviceKind::from_u32(d.kind.get()) {
                Some(DeviceKind::IoPorts) => {
                    if d.first.get() > d.last.get() || d.last.get() > 0xffff {
                        return Err(AbiError::DevicePorts(idx));
                    }
                    let irq = d.irq.get();
                    if d.flags.get() != 0
                        || d.pci_address.get() != NO_INDEX
                        || d.pci_id.get() != 0
                        || d.pci_index.get() != 0
                        || d.reserved.get() != 0
                        || (irq != NO_INDEX && (irq > MAX_IRQ || irq == CASCADE_IRQ))
                    {
                        return Err(AbiError::DeviceFields(idx));
                    }
                    let span = (d.first.get(), d.last.get() + 1);
                    let is_ports = |o: &DeviceEntry| o.kind.get() == DeviceKind::IoPorts as u32;
                    if overlaps(span, console)
                        || overlaps(span, pci_ports)
                        || (irq != NO_INDEX && irq == console_irq(console_port))
                        || earlier.iter().filter(|o| is_ports(o)).any(|o| {
                            overlaps(span, (o.first.get(), o.last.get() + 1))
                                || (irq != NO_INDEX && o.irq.get() == irq)
                        })
                    {
                        return Err(AbiError::DeviceConflict(idx));
                    }
                }
                Some(DeviceKind::Pci) => {
                    if pci_selector(d).is_none()
                        || d.first.get() != 0
                        || d.last.get() != 0
                        || d.irq.get() != NO_INDEX
                        || d.flags.get() & !DEVICE_FLAGS != 0
                        || d.reserved.get() != 0
                    {
                        return Err(AbiError::DeviceFields(idx));
                    }
                    if earlier.iter().any(|o| {
                        o.kind.get() == DeviceKind::Pci as u32 && pci_selector(o) == pci_selector(d)
                    }) {
                        return Err(AbiError::DeviceConflict(idx));
                    }
                }
                None => return Err(AbiError::DevicePorts(idx)),
            }
        }
    }
    Ok(())
}

/// The PCI function a PCI device entry names, if its fields are well formed.
pub(crate) fn pci_selector(d: &DeviceEntry) -> Option<PciSelector> {
    let (address, id, index) = (d.pci_address.get(), d.pci_id.get(), d.pci_index.get());
    if address != NO_INDEX {
        let address = u16::try_from(address).ok()?;
        (id == 0 && index == 0).then_some(PciSelector::Address(PciAddress::from_u16(address)))
    } else {
        let id = PciId::from_u32(id);
        (id.vendor != 0xffff && id.vendor != 0).then_some(PciSelector::Id { id, index })
    }
}

fn check_payloads(t: &Table<'_>) -> Result<(), AbiError> {
    let area = t.header.payload_area_size.get();
    for s in 0..t.sandboxes.len() {
        let first = t.sandboxes[s].payloads.first.get();
        let regions = t.sandbox_regions(s);
        for (pos, p) in t.sandbox_payloads(s).iter().enumerate() {
            let idx = first + pos as u32;
            if p.sandbox.get() as usize != s {
                return Err(AbiError::WrongOwner(Array::Payloads, idx));
            }
            let size = p.size.get();
            let in_area = end_of(p.offset.get(), size).is_some_and(|e| e <= area);
            let gpa_end = end_of(p.gpa.get(), size);
            // A payload fills RAM or the directory, never channel memory.
            let in_region = gpa_end.is_some_and(|e| {
                regions.iter().any(|r| {
                    let k = r.kind.get();
                    (k == RegionKind::Ram as u32 || k == RegionKind::Directory as u32)
                        && p.gpa.get() >= r.gpa.get()
                        && e <= r.gpa.get() + r.size.get()
                })
            });
            if size == 0 || p.reserved.get() != 0 || !in_area || !in_region {
                return Err(AbiError::Payload(idx));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod migration_tests {
    use super::*;
    use crate::testing::Sample;
    use crate::view::Migration;
    use crate::{SandboxId, TableView};

    /// The sample with sandbox `b` (one vCPU on core 3) migratable to core 0 by `a` and
    /// itself, within 1 ms, then `edit`ed and validated.
    fn migratable(edit: impl FnOnce(&mut Sample)) -> Result<(), AbiError> {
        let mut s = Sample::new();
        s.vcpus[2].standby_core = 0.into();
        s.sandboxes[1].migrate_by = 0b11.into();
        s.sandboxes[1].max_downtime_ns = 1_000_000.into();
        edit(&mut s);
        validate(&s.encode()).map(|_| ())
    }

    #[test]
    fn a_standby_placement_is_valid_and_viewed() {
        assert_eq!(migratable(|_| {}), Ok(()));
        let mut s = Sample::new();
        s.vcpus[2].standby_core = 0.into();
        s.sandboxes[1].migrate_by = 0b01.into();
        s.sandboxes[1].max_downtime_ns = 5.into();
        s.sandboxes[1].migration_flags =
            (MIGRATION_SEPARATE_MEMORY | MIGRATION_HIDE_DOWNTIME).into();
        let bytes = s.encode();
        let view = TableView::validate(&bytes).unwrap();
        let b = view.sandbox(SandboxId::new(1)).unwrap();
        let m = b.migration().unwrap();
        assert_eq!(
            m,
            Migration {
                separate_memory: true,
                hide_downtime: true,
                migrate_by: 1,
                max_downtime_ns: 5
            }
        );
        assert!(m.allows(SandboxId::new(0)) && !m.allows(SandboxId::new(1)));
        assert_eq!(
            b.vcpus().next().unwrap().standby_core(),
            Some(crate::CoreId::new(0))
        );
        let a = view.sandbox(SandboxId::new(0)).unwrap();
        assert!(a.migration().is_none());
        assert!(a.vcpus().all(|v| v.standby_core().is_none()));
    }

    #[test]
    fn standby_cores_must_be_free_and_exist() {
        let e = |core: u32| migratable(move |s| s.vcpus[2].standby_core = core.into());
        assert_eq!(e(3), Err(AbiError::CoreUsedTwice(2)), "its own core");
        assert_eq!(e(1), Err(AbiError::CoreUsedTwice(2)), "another's core");
        assert_eq!(e(4), Err(AbiError::CoreOutOfRange(2)));
        // Two sandboxes standing by on the same core.
        let both = migratable(|s| {
            s.vcpus[0].standby_core = 0.into();
            s.vcpus[1].standby_core = 4.into();
            s.system_cores = 5;
            s.sandboxes[0].migrate_by = 1.into();
            s.sandboxes[0].max_downtime_ns = 1.into();
        });
        assert_eq!(both, Err(AbiError::CoreUsedTwice(2)));
    }

    #[test]
    fn migration_fields_must_agree() {
        /// An edit of the sample, the sandbox it makes inconsistent, and why.
        type Case = (fn(&mut Sample), u32, &'static str);
        let cases: [Case; 7] = [
            (
                |s| s.vcpus[0].standby_core = 0.into(),
                0,
                "only one of a's two vCPUs has a standby core",
            ),
            (
                |s| s.sandboxes[1].migrate_by = 0b100.into(),
                1,
                "an unknown controller",
            ),
            (|s| s.sandboxes[1].migrate_by = 0.into(), 1, "no controller"),
            (
                |s| s.sandboxes[1].max_downtime_ns = 0.into(),
                1,
                "no downtime",
            ),
            (
                |s| s.sandboxes[1].migration_flags = 4.into(),
                1,
                "unknown flag",
            ),
            (|s| s.sandboxes[1].reserved = 1.into(), 1, "reserved"),
            (
                |s| s.sandboxes[0].max_downtime_ns = 7.into(),
                0,
                "migration fields without standby cores",
            ),
        ];
        for (edit, sandbox, why) in cases {
            assert_eq!(migratable(edit), Err(AbiError::Migration(sandbox)), "{why}");
        }
    }
}
