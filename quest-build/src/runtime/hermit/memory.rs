//! A Hermit sandbox's whole initial guest memory, prepared on the host the way uhyve
//! prepares it: GDT, identity page tables, FDT, boot info and the loaded image, each at
//! its fixed address from [`quest_abi::layout`], and, for a sandbox with channels, its
//! channel directory (mapped with the rest of its channel window by the page tables). The
//! monitor only copies these in, zeroes the rest of RAM and patches the TSC frequency (see
//! [`super::bootinfo`]).

use super::bootargs::{bootargs, BootargsError};
use super::bootinfo::{boot_info, BootInfoParams};
use super::fdt::{device_tree, FdtParams};
use super::load::{load, LoadError};
use super::page_tables::{hermit_page_tables, PageTableError, WindowMapping};
use crate::plan::{
    directory_bytes, DevicePlan, NoSandbox, Payload, Plan, SandboxImage, SandboxPlan,
};
use quest_abi::layout::{
    BOOT_INFO_GPA, FDT_GPA, FDT_MAX_SIZE, GDT_GPA, HERMIT_KERNEL_GPA, PAGE_TABLES_END,
    PAGE_TABLES_GPA,
};
use quest_abi::{GuestPhysAddr, RegionKind, ACCESS_WRITE, LARGE_PAGE_SIZE};
use zerocopy::IntoBytes;

/// Why a Hermit sandbox's initial memory cannot be prepared.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The sandbox index is not in the plan (a bug).
    #[error(transparent)]
    NoSandbox(#[from] NoSandbox),
    /// The unikernel cannot be loaded.
    #[error("sandbox `{sandbox}`: loading its Hermit image: {source}")]
    Load {
        /// Sandbox name.
        sandbox: String,
        /// Why.
        source: LoadError,
    },
    /// The sandbox has too little RAM for the image and Hermit's own needs.
    #[error("sandbox `{sandbox}` has {} MiB of RAM, but its Hermit image ends at {image_end:#x} and Hermit needs at least {} MiB (more for threads and heap)", ram >> 20, needed.div_ceil(1 << 20))]
    TooSmall {
        /// Sandbox name.
        sandbox: String,
        /// Its RAM.
        ram: u64,
        /// End of the loaded image.
        image_end: u64,
        /// RAM needed.
        needed: u64,
    },
    /// `args`/`env` cannot be passed on Hermit's command line.
    #[error("sandbox `{sandbox}`: its args/env: {source}")]
    Bootargs {
        /// Sandbox name.
        sandbox: String,
        /// Why.
        source: BootargsError,
    },
    /// The device tree cannot be written.
    #[error("building the Hermit device tree: {0}")]
    Fdt(#[from] vm_fdt::Error),
    /// The device tree is larger than its slot.
    #[error("the args and env of sandbox `{sandbox}` make a {len}-byte device tree; at most {FDT_MAX_SIZE} bytes fit")]
    FdtTooBig {
        /// Sandbox name.
        sandbox: String,
        /// Its size.
        len: usize,
    },
    /// The page tables cannot be built.
    #[error("page tables of sandbox `{sandbox}`: {source}")]
    PageTables {
        /// Sandbox name.
        sandbox: String,
        /// Why.
        source: PageTableError,
    },
    /// A payload lies outside RAM.
    #[error("the payload at {0:#x} does not fit in RAM")]
    OutsideRam(u64),
    /// Two payloads overlap.
    #[error("the payload at {0:#x} overlaps the one before it")]
    Overlap(u64),
}

/// Room Hermit needs above its image: it takes RAM from the 2 MiB boundary after the
/// image for page tables, heap and stacks, and panics at boot without enough.
pub const MIN_FREE_RAM: u64 = 4 * LARGE_PAGE_SIZE;

// The fixed areas lie in this order and are disjoint: GDT, FDT, boot info, page
// tables, boot stack, image.
const _: () = {
    assert!(FDT_GPA + FDT_MAX_SIZE <= BOOT_INFO_GPA);
    assert!(BOOT_INFO_GPA + super::bootinfo::BOOT_INFO_SIZE as u64 <= PAGE_TABLES_GPA);
    assert!(PAGE_TABLES_END <= quest_abi::layout::HERMIT_BOOT_STACK_GPA);
    assert!(quest_abi::layout::HERMIT_BOOT_STACK_GPA < HERMIT_KERNEL_GPA);
};

/// The initial memory of Hermit sandbox `index` of `plan`, running the unikernel `elf`.
pub fn initial_memory(plan: &Plan, index: usize, elf: &[u8]) -> Result<SandboxImage, MemoryError> {
    let sandbox = plan.sandbox(index)?;
    let name = || sandbox.name.clone();
    let ram = sandbox.ram_size;
    let image = load(elf, HERMIT_KERNEL_GPA, ram).map_err(|source| MemoryError::Load {
        sandbox: name(),
        source,
    })?;
    let needed = image
        .end()
        .next_multiple_of(LARGE_PAGE_SIZE)
        .saturating_add(MIN_FREE_RAM);
    if ram < needed {
        return Err(MemoryError::TooSmall {
            sandbox: name(),
            ram,
            image_end: image.end(),
            needed,
        });
    }

    let cmdline =
        bootargs(&sandbox.args, &sandbox.env).map_err(|source| MemoryError::Bootargs {
            sandbox: name(),
            source,
        })?;
    let fdt = device_tree(&FdtParams {
        ram_size: ram,
        bootargs: &cmdline,
        tsc_khz: None,
    })?;
    if fdt.len() as u64 > FDT_MAX_SIZE {
        return Err(MemoryError::FdtTooBig {
            sandbox: name(),
            len: fdt.len(),
        });
    }
    let tables = hermit_page_tables(
        GuestPhysAddr::new(PAGE_TABLES_GPA),
        PAGE_TABLES_END - PAGE_TABLES_GPA,
        ram,
        &[channel_window(sandbox), vec![calibration_window()]].concat(),
    )
    .map_err(|source| MemoryError::PageTables {
        sandbox: name(),
        source,
    })?;
    let info = boot_info(&BootInfoParams {
        ram_size: ram,
        fdt_gpa: FDT_GPA,
        image: (image.start, image.end()),
        tls: image.tls,
        num_cpus: sandbox.vcpus.len() as u64,
        has_pci: sandbox
            .devices
            .iter()
            .any(|d| matches!(d, DevicePlan::Pci { .. })),
    });

    let mut payloads = vec![
        Payload {
            gpa: GDT_GPA,
            bytes: quest_abi::gdt::launch_gdt_bytes().to_vec(),
        },
        Payload {
            gpa: FDT_GPA,
            bytes: fdt,
        },
        Payload {
            gpa: BOOT_INFO_GPA,
            bytes: info.as_bytes().to_vec(),
        },
        Payload {
            gpa: PAGE_TABLES_GPA,
            bytes: tables,
        },
        Payload {
            gpa: image.start,
            bytes: image.bytes,
        },
    ];
    check_payloads(&payloads, ram)?;
    // The directory lies in the channel window, outside RAM: the monitor copies it into
    // the directory region (which the table validation checks).
    if let Some(gpa) = sandbox.boot.directory_gpa {
        payloads.push(Payload {
            gpa: gpa.as_u64(),
            bytes: directory_bytes(plan, index),
        });
    }
    payloads.retain(|p| !p.bytes.is_empty());
    Ok(SandboxImage {
        entry: image.entry,
        payloads,
    })
}

/// The sandbox's channel window regions (directory, data and ack areas) as identity
/// mappings, writable only where the plan grants write access.
pub fn channel_window(sandbox: &SandboxPlan) -> Vec<WindowMapping> {
    sandbox
        .regions
        .iter()
        .filter(|r| r.kind != RegionKind::Ram)
        .map(|r| WindowMapping {
            gpa: r.gpa,
            size: r.size,
            writable: r.access & ACCESS_WRITE != 0,
        })
        .collect()
}

/// The monitor's calibration page: identity-mapped read-only in every sandbox.
pub fn calibration_window() -> WindowMapping {
    use quest_abi::layout::{CALIBRATION_GPA, CALIBRATION_SIZE};
    WindowMapping {
        gpa: quest_abi::GuestPhysAddr::new(CALIBRATION_GPA),
        size: CALIBRATION_SIZE,
        writable: false,
    }
}

/// Every payload lies in RAM and no two overlap (they are listed by address).
fn check_payloads(payloads: &[Payload], ram: u64) -> Result<(), MemoryError> {
    let mut previous_end = 0;
    for p in payloads {
        let end = p
            .gpa
            .checked_add(p.bytes.len() as u64)
            .filter(|&e| e <= ram)
            .ok_or(MemoryError::OutsideRam(p.gpa))?;
        if p.gpa < previous_end {
            return Err(MemoryError::Overlap(p.gpa));
        }
        previous_end = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_checks_catch_overlap_and_overflow() {
        let p = |gpa: u64, len: usize| Payload {
            gpa,
            bytes: vec![0; len],
        };
        assert!(check_payloads(&[p(0x1000, 24), p(0x5000, 100)], 1 << 20).is_ok());
        assert!(check_payloads(&[p(0x1000, 0x5000), p(0x5000, 1)], 1 << 20).is_err());
        assert!(check_payloads(&[p(0xff000, 0x2000)], 1 << 20).is_err());
        assert!(check_payloads(&[p(u64::MAX - 1, 8)], u64::MAX).is_err());
    }

    #[test]
    fn a_hermit_sandboxs_window_follows_its_planned_regions() {
        use quest_abi::layout::DIRECTORY_GPA;
        let plan = crate::plan::plan(&crate::plan::testing::pingpong());
        let ping = &plan.sandboxes[0];
        assert_eq!(ping.runtime, quest_abi::Runtime::Hermit);
        let window = channel_window(ping);
        // Directory, then ping-to-pong (ping writes data, reads ack), then pong-to-ping
        // (ping reads data, writes ack).
        let writable: Vec<_> = window.iter().map(|w| w.writable).collect();
        assert_eq!(writable, [false, true, false, false, true]);
        assert_eq!(window[0].gpa, GuestPhysAddr::new(DIRECTORY_GPA));
        for (w, r) in window
            .iter()
            .zip(ping.regions.iter().filter(|r| r.kind != RegionKind::Ram))
        {
            assert_eq!((w.gpa, w.size), (r.gpa, r.size));
        }
        // A sandbox without channels maps nothing beyond RAM.
        let pong_alone = crate::plan::plan(&crate::plan::testing::manifest(
            1,
            64,
            &[crate::plan::testing::SandboxSpec::new(
                "solo",
                crate::manifest::Runtime::Hermit,
                &[0],
                32,
            )],
            &[],
        ));
        assert!(channel_window(&pong_alone.sandboxes[0]).is_empty());
    }
}
