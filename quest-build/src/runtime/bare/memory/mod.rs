//! The initial guest memory of a `bare` sandbox, prepared on the host: GDT, identity page
//! tables, [`BootInfo`], argument block, channel directory and the loaded application.
//! The monitor only copies these payloads into the sandbox's RAM and patches the boot-time
//! fields the table names.

use super::super::paging::{PageTables, PagingError};
use super::elf::{self, ElfError};
use crate::plan::{NoSandbox, Payload, Plan, SandboxImage};
use quest_abi::args::{encode_args, ArgsError};
use quest_abi::bootinfo::{BootInfo, BOOT_INFO_MAGIC, BOOT_INFO_VERSION};
use quest_abi::layout::{
    BARE_ARGS_GPA, BARE_ARGS_MAX_SIZE, BARE_STACK_SIZE, GDT_GPA, PAGE_TABLES_END, PAGE_TABLES_GPA,
};
use quest_abi::{GuestPhysAddr, RegionKind, ACCESS_WRITE, PAGE_SIZE};
use zerocopy::{FromZeros, IntoBytes};

/// Why a bare sandbox's memory cannot be prepared.
#[derive(Debug, thiserror::Error)]
pub enum BareError {
    /// The application ELF cannot be loaded.
    #[error("sandbox `{sandbox}`: application ELF: {source}")]
    Elf {
        /// Sandbox name.
        sandbox: String,
        /// Why.
        source: ElfError,
    },
    /// The image does not fit between the boot data and the stacks, leaving a heap.
    #[error("sandbox `{sandbox}`: the application ({image} bytes at {start:#x}) leaves no heap in {ram} bytes of RAM with {stacks} bytes of stacks; give it more memory")]
    TooBig {
        /// Sandbox name.
        sandbox: String,
        /// Image start.
        start: u64,
        /// Image size in memory.
        image: u64,
        /// RAM size.
        ram: u64,
        /// Stack bytes at the top of RAM.
        stacks: u64,
    },
    /// The guest page tables cannot be built.
    #[error("sandbox `{sandbox}`: {source}")]
    Paging {
        /// Sandbox name.
        sandbox: String,
        /// Why.
        source: PagingError,
    },
    /// `args`/`env` cannot be passed.
    #[error("sandbox `{sandbox}`: {problem}")]
    Args {
        /// Sandbox name.
        sandbox: String,
        /// Why.
        problem: ArgsError,
    },
    /// The sandbox index is not in the plan (a bug).
    #[error(transparent)]
    NoSandbox(#[from] NoSandbox),
}

/// Prepares the initial memory of bare sandbox `index` of `plan` running the application
/// ELF `app`.
pub fn prepare(plan: &Plan, index: usize, app: &[u8]) -> Result<SandboxImage, BareError> {
    let sb = plan.sandbox(index)?;
    let name = || sb.name.clone();
    let loaded = elf::load(app, sb.boot.image_gpa.as_u64()).map_err(|source| BareError::Elf {
        sandbox: name(),
        source,
    })?;

    // Heap: from the end of the image to the lowest stack.
    let stacks = BARE_STACK_SIZE * sb.vcpus.len() as u64;
    let heap_start = loaded.end.next_multiple_of(PAGE_SIZE);
    let heap_end = sb.ram_size.saturating_sub(stacks);
    if loaded.start < PAGE_TABLES_END || heap_start >= heap_end {
        return Err(BareError::TooBig {
            sandbox: name(),
            start: loaded.start,
            image: loaded.end - loaded.start,
            ram: sb.ram_size,
            stacks,
        });
    }

    let tables = page_tables(plan, index).map_err(|source| BareError::Paging {
        sandbox: name(),
        source,
    })?;

    let args: Vec<&str> = sb.args.iter().map(String::as_str).collect();
    let env: Vec<(&str, &str)> = sb
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut args_block = vec![0u8; BARE_ARGS_MAX_SIZE as usize];
    let (args_len, argc, envc) =
        encode_args(&args, &env, &mut args_block).map_err(|problem| BareError::Args {
            sandbox: name(),
            problem,
        })?;
    args_block.truncate(args_len);

    let mut info = BootInfo::new_zeroed();
    info.magic = BOOT_INFO_MAGIC;
    info.version = BOOT_INFO_VERSION.into();
    info.sandbox_index = (index as u32).into();
    info.name = quest_abi::name_field(&sb.name).unwrap_or_default();
    info.num_vcpus = (sb.vcpus.len() as u32).into();
    info.ram_size = sb.ram_size.into();
    info.image_start = loaded.start.into();
    info.image_end = loaded.end.into();
    info.heap_start = heap_start.into();
    info.heap_end = heap_end.into();
    info.stack_size = BARE_STACK_SIZE.into();
    info.directory_gpa = sb
        .boot
        .directory_gpa
        .map_or(0, GuestPhysAddr::as_u64)
        .into();
    for (slot, v) in info.cores.iter_mut().zip(&sb.vcpus) {
        *slot = v.core.into();
    }
    if args_len > 0 {
        info.args_gpa = BARE_ARGS_GPA.into();
    }
    info.args_size = (args_len as u32).into();
    info.argc = argc.into();
    info.envc = envc.into();

    let mut payloads = vec![
        Payload {
            gpa: GDT_GPA,
            bytes: quest_abi::gdt::launch_gdt_bytes().to_vec(),
        },
        Payload {
            gpa: sb.boot.boot_info_gpa.as_u64(),
            bytes: info.as_bytes().to_vec(),
        },
        Payload {
            gpa: BARE_ARGS_GPA,
            bytes: args_block,
        },
        Payload {
            gpa: sb.boot.page_table_gpa.as_u64(),
            bytes: tables.to_bytes(),
        },
        Payload {
            gpa: loaded.start,
            bytes: loaded.bytes,
        },
    ];
    if let Some(gpa) = sb.boot.directory_gpa {
        payloads.push(Payload {
            gpa: gpa.as_u64(),
            bytes: crate::plan::directory_bytes(plan, index),
        });
    }
    // Empty payloads (no args, no channels) carry nothing; the table leaves them out.
    payloads.retain(|p| !p.bytes.is_empty());
    Ok(SandboxImage {
        entry: loaded.entry,
        payloads,
    })
}

/// The page tables of sandbox `index`: RAM read-write, every other region as planned,
/// and the calibration page read-only.
pub fn page_tables(plan: &Plan, index: usize) -> Result<PageTables, PagingError> {
    let max_pages = ((PAGE_TABLES_END - PAGE_TABLES_GPA) / PAGE_SIZE) as usize;
    let mut tables = PageTables::new(GuestPhysAddr::new(PAGE_TABLES_GPA), max_pages);
    let Some(sb) = plan.sandboxes.get(index) else {
        return Ok(tables);
    };
    for r in &sb.regions {
        let writable = r.kind == RegionKind::Ram || r.access & ACCESS_WRITE != 0;
        tables.map(r.gpa, r.size, writable)?;
    }
    // The monitor's calibration page, read-only in every sandbox.
    use quest_abi::layout::{CALIBRATION_GPA, CALIBRATION_SIZE};
    tables.map(
        quest_abi::GuestPhysAddr::new(CALIBRATION_GPA),
        CALIBRATION_SIZE,
        false,
    )?;
    Ok(tables)
}

#[cfg(test)]
mod tests;
