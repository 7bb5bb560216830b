//! The plan as the binary `quest-abi` partition table, optionally with the built images'
//! payloads, checked with the same `validate` the monitor runs at boot.

use super::types::{DevicePlan, Plan, SandboxImage};
use quest_abi::view::DeviceView;
use quest_abi::GuestPhysAddr;
use quest_abi::{
    ChannelEntry, DeviceEntry, DeviceKind, IndexRange, PayloadEntry, PciSelector, RegionEntry,
    SandboxEntry, TableParts, VcpuEntry, DEVICE_DMA_UNPROTECTED, DEVICE_START_WITHOUT,
    MIGRATION_HIDE_DOWNTIME, MIGRATION_SEPARATE_MEMORY, NO_INDEX, PAGE_SIZE, PAYLOAD_ALIGN,
};
use sha2::{Digest, Sha256};
use zerocopy::little_endian::U64;
use zerocopy::FromZeros;

/// A guest-physical address as the table stores it.
fn gpa_field(gpa: GuestPhysAddr) -> U64 {
    gpa.as_u64().into()
}

/// An optional guest-physical address as the table stores it (0: none).
fn optional_gpa_field(gpa: Option<GuestPhysAddr>) -> U64 {
    gpa_field(gpa.unwrap_or(GuestPhysAddr::ZERO))
}

/// A partition table and the payload area that follows it in an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedTable {
    /// The table, as `quest_abi::validate` accepts it.
    pub table: Vec<u8>,
    /// Every payload's bytes, each starting on a 4 KiB boundary; its length is a multiple
    /// of [`PAYLOAD_ALIGN`] (zero-padded).
    pub payload_area: Vec<u8>,
}

impl EncodedTable {
    /// The table's CRC-32 as stored in its header.
    pub fn checksum(&self) -> u32 {
        quest_abi::validate(&self.table)
            .map(|t| t.header.checksum.get())
            .unwrap_or_default()
    }
}

/// Why a plan could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The build produced a different number of images than the plan has sandboxes.
    #[error("{got} sandbox images for {want} sandboxes")]
    ImageCount {
        /// Images given.
        got: usize,
        /// Sandboxes planned.
        want: usize,
    },
    /// A name does not fit the table's name field.
    #[error("name `{0}` does not fit the partition table (1 to 31 bytes, no NUL)")]
    Name(String),
    /// Two payloads of one sandbox overlap.
    #[error("sandbox `{sandbox}`: payloads at {first:#x} and {second:#x} overlap")]
    PayloadOverlap {
        /// Sandbox name.
        sandbox: String,
        /// Earlier payload's address.
        first: u64,
        /// Later payload's address.
        second: u64,
    },
    /// A count or size does not fit its table field.
    #[error("the partition table cannot hold this system: {0}")]
    TooLarge(&'static str),
    /// `quest_abi::encode` refused.
    #[error("encoding the partition table failed: {0}")]
    Encode(quest_abi::EncodeError),
    /// The table does not pass `quest_abi::validate`: the planner (or the manifest
    /// validation before it) let something through that it must not.
    #[error("bug: the planned partition table is invalid: {0}")]
    Invalid(quest_abi::AbiError),
}

fn idx(n: usize, what: &'static str) -> Result<u32, TableError> {
    u32::try_from(n).map_err(|_| TableError::TooLarge(what))
}

fn name(s: &str) -> Result<[u8; quest_abi::NAME_LEN], TableError> {
    quest_abi::name_field(s).ok_or_else(|| TableError::Name(s.to_owned()))
}

/// Encodes `plan` as a partition table. With `images` (one per sandbox, in order), every
/// vCPU starts at its image's entry and every non-empty payload goes into the payload
/// area with its SHA-256; without, vCPUs start at the image address and there are no
/// payloads. Deterministic: the same inputs give the same bytes.
pub fn encode_table(
    plan: &Plan,
    images: Option<&[SandboxImage]>,
) -> Result<EncodedTable, TableError> {
    if let Some(images) = images {
        if images.len() != plan.sandboxes.len() {
            return Err(TableError::ImageCount {
                got: images.len(),
                want: plan.sandboxes.len(),
            });
        }
    }
    let mut sandboxes = Vec::with_capacity(plan.sandboxes.len());
    let mut vcpus = Vec::new();
    let mut regions = Vec::new();
    let mut devices = Vec::new();
    let mut payloads = Vec::new();
    let mut payload_area = Vec::new();

    for (s, sb) in plan.sandboxes.iter().enumerate() {
        let owner = idx(s, "too many sandboxes")?;
        let image = images.map(|i| &i[s]);
        let entry = image.map_or(sb.boot.image_gpa.as_u64(), |i| i.entry);
        let first_vcpu = idx(vcpus.len(), "too many vcpus")?;
        for v in &sb.vcpus {
            let mut e = VcpuEntry::new_zeroed();
            e.sandbox = owner.into();
            e.index = v.index.into();
            e.core = v.core.into();
            e.standby_core = v.standby_core.unwrap_or(NO_INDEX).into();
            e.rip = entry.into();
            e.rsp = v.stack_top.into();
            e.rdi = gpa_field(sb.boot.boot_info_gpa);
            e.rsi = u64::from(v.index).into();
            vcpus.push(e);
        }
        let first_region = idx(regions.len(), "too many regions")?;
        for r in &sb.regions {
            let mut e = RegionEntry::new_zeroed();
            e.sandbox = owner.into();
            e.kind = (r.kind as u32).into();
            e.gpa = gpa_field(r.gpa);
            e.size = r.size.into();
            e.access = r.access.into();
            e.channel = match r.channel {
                Some(c) => idx(c, "too many channels")?,
                None => NO_INDEX,
            }
            .into();
            regions.push(e);
        }
        let first_device = idx(devices.len(), "too many devices")?;
        for d in &sb.devices {
            devices.push(device_entry(owner, d));
        }
        let first_payload = idx(payloads.len(), "too many payloads")?;
        if let Some(image) = image {
            add_payloads(&sb.name, owner, image, &mut payloads, &mut payload_area)?;
        }
        let mut e = SandboxEntry::new_zeroed();
        e.name = name(&sb.name)?;
        e.runtime = (sb.runtime as u32).into();
        e.on_fault = (sb.on_fault as u32).into();
        let range = |first: u32, len: usize, what| -> Result<IndexRange, TableError> {
            Ok(IndexRange::new(first, idx(len, what)? - first))
        };
        e.vcpus = range(first_vcpu, vcpus.len(), "too many vcpus")?;
        e.regions = range(first_region, regions.len(), "too many regions")?;
        e.devices = range(first_device, devices.len(), "too many devices")?;
        e.payloads = range(first_payload, payloads.len(), "too many payloads")?;
        e.ram_size = sb.ram_size.into();
        e.boot_info_gpa = gpa_field(sb.boot.boot_info_gpa);
        e.page_table_gpa = gpa_field(sb.boot.page_table_gpa);
        e.directory_gpa = optional_gpa_field(sb.boot.directory_gpa);
        e.patch_tsc_khz_gpa = optional_gpa_field(sb.boot.patch_tsc_khz_gpa);
        e.patch_boot_time_gpa = optional_gpa_field(sb.boot.patch_boot_time_gpa);
        e.patch_boot_time_ns_gpa = optional_gpa_field(sb.boot.patch_boot_time_ns_gpa);
        e.patch_launch_count_gpa = optional_gpa_field(sb.boot.patch_launch_count_gpa);
        if let Some(m) = &sb.migration {
            let flag = |on: bool, bit: u32| if on { bit } else { 0 };
            e.migration_flags = (flag(m.separate_memory, MIGRATION_SEPARATE_MEMORY)
                | flag(m.hide_downtime, MIGRATION_HIDE_DOWNTIME))
            .into();
            let mut by = 0u64;
            for &c in &m.migrate_by {
                by |= 1u64.checked_shl(idx(c, "too many sandboxes")?).unwrap_or(0);
            }
            e.migrate_by = by.into();
            e.max_downtime_ns = m.max_downtime_ns.into();
        }
        sandboxes.push(e);
    }

    let channels = plan
        .channels
        .iter()
        .map(|c| {
            let mut e = ChannelEntry::new_zeroed();
            e.name = name(&c.name)?;
            // An unknown endpoint (usize::MAX) saturates to an index validate rejects.
            e.writer = u32::try_from(c.writer).unwrap_or(u32::MAX).into();
            e.reader = u32::try_from(c.reader).unwrap_or(u32::MAX).into();
            e.data_size = c.data_size.into();
            e.ack_size = c.ack_size.into();
            e.writer_gpa = gpa_field(c.writer_gpa);
            e.reader_gpa = gpa_field(c.reader_gpa);
            Ok(e)
        })
        .collect::<Result<Vec<_>, TableError>>()?;

    pad_to(&mut payload_area, PAYLOAD_ALIGN);
    let parts = TableParts {
        system_name: name(&plan.system_name)?,
        system_cores: plan.system_cores,
        console_port: plan.console_port,
        system_memory: plan.system_memory,
        monitor_reserve: plan.monitor_reserve,
        payload_area_size: payload_area.len() as u64,
        sandboxes: &sandboxes,
        vcpus: &vcpus,
        regions: &regions,
        channels: &channels,
        devices: &devices,
        payloads: &payloads,
    };
    let len = quest_abi::encoded_len(&parts).map_err(TableError::Encode)?;
    let mut table = vec![0; len];
    quest_abi::encode(&parts, &mut table).map_err(TableError::Encode)?;
    quest_abi::validate(&table).map_err(TableError::Invalid)?;
    Ok(EncodedTable {
        table,
        payload_area,
    })
}

/// Appends one sandbox's payloads (by address; empty ones carry nothing and are left
/// out) to the payload area, each on a page boundary.
fn add_payloads(
    sandbox: &str,
    owner: u32,
    image: &SandboxImage,
    entries: &mut Vec<PayloadEntry>,
    area: &mut Vec<u8>,
) -> Result<(), TableError> {
    let mut sorted: Vec<_> = image
        .payloads
        .iter()
        .filter(|p| !p.bytes.is_empty())
        .collect();
    sorted.sort_by_key(|p| p.gpa);
    for pair in sorted.windows(2) {
        let end = pair[0].gpa.checked_add(pair[0].bytes.len() as u64);
        if end.is_none_or(|end| end > pair[1].gpa) {
            return Err(TableError::PayloadOverlap {
                sandbox: sandbox.to_owned(),
                first: pair[0].gpa,
                second: pair[1].gpa,
            });
        }
    }
    for p in sorted {
        pad_to(area, PAGE_SIZE);
        let mut e = PayloadEntry::new_zeroed();
        e.sandbox = owner.into();
        e.gpa = p.gpa.into();
        e.offset = (area.len() as u64).into();
        e.size = (p.bytes.len() as u64).into();
        e.sha256 = Sha256::digest(&p.bytes).into();
        area.extend_from_slice(&p.bytes);
        entries.push(e);
    }
    Ok(())
}

fn pad_to(bytes: &mut Vec<u8>, align: u64) {
    let len = (bytes.len() as u64).next_multiple_of(align);
    bytes.resize(len as usize, 0);
}

/// The table entry of device `d` of sandbox `owner`.
fn device_entry(owner: u32, d: &DevicePlan) -> DeviceEntry {
    let mut e = DeviceEntry::new_zeroed();
    e.sandbox = owner.into();
    e.irq = NO_INDEX.into();
    e.pci_address = NO_INDEX.into();
    match *d {
        DevicePlan::Ports { first, last, irq } => {
            e.kind = (DeviceKind::IoPorts as u32).into();
            e.first = u64::from(first).into();
            e.last = u64::from(last).into();
            if let Some(irq) = irq {
                e.irq = u32::from(irq).into();
            }
        }
        DevicePlan::Pci {
            select,
            dma_unprotected,
            start_without,
        } => {
            e.kind = (DeviceKind::Pci as u32).into();
            let flag = |on: bool, bit: u32| if on { bit } else { 0 };
            e.flags = (flag(dma_unprotected, DEVICE_DMA_UNPROTECTED)
                | flag(start_without, DEVICE_START_WITHOUT))
            .into();
            match select {
                PciSelector::Address(a) => e.pci_address = u32::from(a.to_u16()).into(),
                PciSelector::Id { id, index } => {
                    e.pci_id = id.to_u32().into();
                    e.pci_index = index.into();
                }
            }
        }
    }
    e
}

/// The plan of a device as a validated table holds it: the inverse of `device_entry`
/// (`quest-build inspect` prints an image's devices with [`DevicePlan::describe`], in
/// the words `plan` uses).
pub fn device_plan(d: &DeviceView<'_>) -> DevicePlan {
    match (d.kind(), d.pci()) {
        (DeviceKind::Pci, Some(select)) => DevicePlan::Pci {
            select,
            dma_unprotected: d.dma_unprotected(),
            start_without: d.start_without(),
        },
        // A validated PCI entry always names a function; ports otherwise.
        _ => DevicePlan::Ports {
            first: *d.ports().start(),
            last: *d.ports().end(),
            irq: d.irq(),
        },
    }
}
