//! Reading the partition table and payloads back out of an image ELF: `quest-build
//! inspect` prints them, validates the table with the monitor's own `validate`, and
//! checks every payload's SHA-256, as the monitor will at boot.

use crate::plan::table::device_plan;
use goblin::elf::Elf;
use quest_abi::validate::payload_area_offset;
use quest_abi::{name_str, OnFault, RegionKind, Runtime, Table, TableView};
use sha2::{Digest, Sha256};
use std::fmt::Write;

use super::embed::BLOB_SECTION;

/// Why an image cannot be inspected.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// Not an ELF file.
    #[error("not an ELF image: {0}")]
    Elf(#[from] goblin::error::Error),
    /// No blob section.
    #[error("no `{BLOB_SECTION}` section: not a Quest image")]
    NoBlob,
    /// The section lies outside the file.
    #[error("the `{BLOB_SECTION}` section lies outside the file")]
    Truncated,
    /// The table is invalid.
    #[error("invalid partition table: {0}")]
    Invalid(quest_abi::AbiError),
}

/// Where the blob is in the image file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobLocation {
    /// File offset of the blob (the table starts here).
    pub offset: usize,
    /// Size of the blob section.
    pub size: usize,
}

impl BlobLocation {
    /// File offset of the payload area, given the table's total size.
    pub fn payload_area(&self, table_size: u32) -> usize {
        self.offset + payload_area_offset(table_size) as usize
    }
}

/// Finds the blob section of an image ELF.
pub fn locate_blob(image: &[u8]) -> Result<BlobLocation, InspectError> {
    let elf = Elf::parse(image)?;
    let section = elf
        .section_headers
        .iter()
        .find(|s| elf.shdr_strtab.get_at(s.sh_name) == Some(BLOB_SECTION))
        .ok_or(InspectError::NoBlob)?;
    let (offset, size) = (section.sh_offset as usize, section.sh_size as usize);
    if offset.checked_add(size).is_none_or(|end| end > image.len()) {
        return Err(InspectError::Truncated);
    }
    Ok(BlobLocation { offset, size })
}

/// The validated table of an image and where its blob is.
pub fn read_table(image: &[u8]) -> Result<(Table<'_>, BlobLocation), InspectError> {
    let at = locate_blob(image)?;
    let blob = &image[at.offset..at.offset + at.size];
    let table = quest_abi::validate(blob).map_err(InspectError::Invalid)?;
    Ok((table, at))
}

/// A printed report of an image and whether every payload hash matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The text.
    pub text: String,
    /// Payloads whose bytes do not match their SHA-256 (or lie outside the file).
    pub bad_payloads: usize,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn size(bytes: u64) -> String {
    crate::plan::units::size(bytes)
}

/// Describes `image`: header, sandboxes with their vCPUs, regions, devices and payloads
/// (each hash checked), and channels.
pub fn inspect(image: &[u8]) -> Result<Report, InspectError> {
    let (t, at) = read_table(image)?;
    let view = TableView::validate(t.bytes).map_err(InspectError::Invalid)?;
    let h = t.header;
    let area = at.payload_area(h.total_size.get());
    let mut out = String::new();
    let mut bad = 0;
    // `write!` to a String cannot fail.
    let _ = writeln!(
        out,
        "system `{}`: {} cores, {} RAM, console port {:#x}, monitor reserve {}",
        name_str(&h.system_name).unwrap_or("?"),
        h.system_cores.get(),
        size(h.system_memory.get()),
        h.console_port.get(),
        size(h.monitor_reserve.get()),
    );
    let _ = writeln!(
        out,
        "table: {} bytes at file offset {:#x}, CRC-32 {:#010x}, valid; payload area {}",
        h.total_size.get(),
        at.offset,
        h.checksum.get(),
        size(h.payload_area_size.get()),
    );
    for (s, sb) in t.sandboxes.iter().enumerate() {
        let runtime = match Runtime::from_u32(sb.runtime.get()) {
            Some(Runtime::Bare) => "bare",
            Some(Runtime::Hermit) => "hermit",
            None => "?",
        };
        let on_fault = match OnFault::from_u32(sb.on_fault.get()) {
            Some(OnFault::HaltSandbox) => "halt-sandbox",
            Some(OnFault::Restart) => "restart",
            Some(OnFault::HaltSystem) => "halt-system",
            None => "?",
        };
        let _ = writeln!(
            out,
            "sandbox {s} `{}`: {runtime}, on_fault {on_fault}, RAM {}, boot info {:#x}, page tables {:#x}, directory {:#x}",
            name_str(&sb.name).unwrap_or("?"),
            size(sb.ram_size.get()),
            sb.boot_info_gpa.get(),
            sb.page_table_gpa.get(),
            sb.directory_gpa.get(),
        );
        for v in t.sandbox_vcpus(s) {
            let _ = writeln!(
                out,
                "  vcpu {} on core {}: rip {:#x} rsp {:#x} rdi {:#x} rsi {:#x}",
                v.index.get(),
                v.core.get(),
                v.rip.get(),
                v.rsp.get(),
                v.rdi.get(),
                v.rsi.get(),
            );
        }
        for r in t.sandbox_regions(s) {
            let kind = match RegionKind::from_u32(r.kind.get()) {
                Some(RegionKind::Ram) => "ram",
                Some(RegionKind::ChannelData) => "channel data",
                Some(RegionKind::ChannelAck) => "channel ack",
                Some(RegionKind::Directory) => "directory",
                None => "?",
            };
            let _ = writeln!(
                out,
                "  region {kind}: {:#x}, {}, {}",
                r.gpa.get(),
                size(r.size.get()),
                crate::plan::units::access(r.access.get()),
            );
        }
        // In the words `plan` uses: `ports 0x2f8-0x2ff irq 3`, `pci 00:03.0 (if absent:
        // not started)`, `pci 1234:11e8#1 (dma unprotected; if absent: started without it)`.
        for d in view
            .sandboxes()
            .nth(s)
            .into_iter()
            .flat_map(|v| v.devices())
        {
            let _ = writeln!(out, "  device: {}", device_plan(&d).describe());
        }
        for (i, p) in t.sandbox_payloads(s).iter().enumerate() {
            let start = area + p.offset.get() as usize;
            let bytes = start
                .checked_add(p.size.get() as usize)
                .and_then(|end| image.get(start..end));
            let ok = bytes.is_some_and(|b| Sha256::digest(b).as_slice() == p.sha256);
            if !ok {
                bad += 1;
            }
            let _ = writeln!(
                out,
                "  payload {i}: {:#x}, {} bytes, sha256 {} {}",
                p.gpa.get(),
                p.size.get(),
                hex(&p.sha256),
                if ok { "ok" } else { "MISMATCH" },
            );
        }
    }
    for (c, ch) in t.channels.iter().enumerate() {
        let sandbox = |i: u32| {
            t.sandboxes
                .get(i as usize)
                .and_then(|s| name_str(&s.name))
                .unwrap_or("?")
        };
        let _ = writeln!(
            out,
            "channel {c} `{}`: {} (at {:#x}) -> {} (at {:#x}), data {}, ack {}",
            name_str(&ch.name).unwrap_or("?"),
            sandbox(ch.writer.get()),
            ch.writer_gpa.get(),
            sandbox(ch.reader.get()),
            ch.reader_gpa.get(),
            size(ch.data_size.get()),
            size(ch.ack_size.get()),
        );
    }
    Ok(Report {
        text: out,
        bad_payloads: bad,
    })
}
