//! Host memory at boot: which RAM is usable, how much the table needs, and where each
//! sandbox's RAM and directory page and each channel go (deterministic first fit, 2 MiB
//! aligned; `quest_monitor_core::placement`). Each sandbox's placement goes into its
//! record (`crate::sandboxes`); the result is printed, one line each.

use crate::bootinfo::BootInfo;
use crate::sandboxes::{record, CoreSet, SandboxPlacement};
use core::fmt;
use quest_abi::layout::DIRECTORY_SIZE;
use quest_abi::memory::{host_memory_needed, LOW_MEMORY_RESERVE as LOW_MEMORY};
use quest_abi::{HostPhysAddr, SandboxId, TableView, LARGE_PAGE_SIZE, MAX_CHANNELS, MAX_SANDBOXES};
use quest_monitor_core::placement::{place, PlacementError, Range};
/// The frame pool is at least this large whatever the table reserves.
const MIN_POOL: u64 = 4 << 20;
/// ... and at most this (the pool's bitmap size).
const MAX_POOL: u64 = 128 << 20;
const MAX_REQUESTS: usize = 1 + 3 * MAX_SANDBOXES + MAX_CHANNELS;
const MAX_RESERVED: usize = crate::bootinfo::MAX_AREAS + 4;

/// Where the monitor's pool and the channels went (each sandbox's placement is in its
/// record).
#[derive(Debug)]
pub struct Placed {
    /// The monitor's frame pool.
    pub pool: Range,
    /// Host-physical base of each channel, table order.
    pub channel_hpas: [HostPhysAddr; MAX_CHANNELS],
}

/// Why the table does not fit this machine. Display gives the text after `quest: `.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryError {
    /// The machine has less RAM than the manifest's `system.memory`.
    SystemMemory {
        /// RAM the firmware reports (MiB).
        have_mib: u64,
        /// `system.memory` (MiB).
        want_mib: u64,
    },
    /// Less usable RAM than the monitor and all sandboxes and channels need.
    NotEnough {
        /// Usable RAM (MiB).
        have_mib: u64,
        /// Needed (MiB).
        need_mib: u64,
    },
    /// Enough RAM in total, but no free 2 MiB-aligned range for one allocation.
    NoFit {
        /// What did not fit.
        what: Request,
        /// Its size in bytes.
        size: u64,
    },
}

/// One thing to place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// The monitor's frame pool.
    Pool,
    /// A sandbox's RAM.
    Ram(SandboxId),
    /// A sandbox's channel directory page.
    Directory(SandboxId),
    /// A sandbox's standby RAM region.
    StandbyRam(SandboxId),
    /// A channel's data and ack areas.
    Channel(usize),
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::SystemMemory { have_mib, want_mib } => write!(
                f,
                "this machine has {have_mib} MiB of RAM; the manifest's system.memory is {want_mib} MiB"
            ),
            Self::NotEnough { have_mib, need_mib } => write!(
                f,
                "this machine has {have_mib} MiB of usable RAM; the partition table needs {need_mib} MiB"
            ),
            Self::NoFit { what, size } => {
                write!(f, "no free 2 MiB-aligned host range of {} for ", Size(size))?;
                match what {
                    Request::Pool => f.write_str("the monitor's frame pool"),
                    Request::Ram(s) => write!(f, "the RAM of sandbox {s}"),
                    Request::Directory(s) => write!(f, "the channel directory of sandbox {s}"),
                    Request::StandbyRam(s) => write!(f, "the standby RAM of sandbox {s}"),
                    Request::Channel(c) => write!(f, "channel {c}"),
                }
            }
        }
    }
}

/// A byte count as KiB or MiB.
#[derive(Clone, Copy, Debug)]
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= 1 << 20 && self.0 % (1 << 20) == 0 {
            write!(f, "{} MiB", self.0 >> 20)
        } else {
            write!(f, "{} KiB", self.0.div_ceil(1024))
        }
    }
}

struct Requests {
    sizes: [u64; MAX_REQUESTS],
    what: [Request; MAX_REQUESTS],
    count: usize,
}

impl Requests {
    fn push(&mut self, what: Request, size: u64) {
        self.sizes[self.count] = size;
        self.what[self.count] = what;
        self.count += 1;
    }
}

/// Places the frame pool, every sandbox and every channel in usable RAM below
/// `mapped_limit`, away from everything `info` says is taken, and records each sandbox's
/// placement (RAM, directory, and the cores the table gives its vCPUs) in its record.
/// `table` is validated, so it has at most [`MAX_SANDBOXES`] sandboxes and
/// [`MAX_CHANNELS`] channels. Boot core only, before any other core runs.
pub fn plan(
    info: &BootInfo,
    table: &TableView<'_>,
    mapped_limit: u64,
) -> Result<Placed, MemoryError> {
    let mut usable = [Range { start: 0, end: 0 }; crate::bootinfo::MAX_AREAS];
    let mut usable_count = 0;
    let mut reserved = [Range { start: 0, end: 0 }; MAX_RESERVED];
    let mut reserved_count = 0;
    let mut reserve = |r: Range| {
        reserved[reserved_count] = r;
        reserved_count += 1;
    };
    reserve(Range {
        start: 0,
        end: LOW_MEMORY,
    });
    reserve(info.image);
    reserve(info.mbi);
    reserve(Range {
        start: mapped_limit,
        end: u64::MAX,
    });
    let mut usable_bytes = 0u64;
    for area in info.areas() {
        if area.usable {
            usable[usable_count] = area.range;
            usable_count += 1;
            let start = area.range.start.max(LOW_MEMORY);
            let end = area.range.end.min(mapped_limit);
            usable_bytes += end.saturating_sub(start);
        } else {
            reserve(area.range);
        }
    }

    // The firmware keeps a little RAM for itself (tables, SMM, BIOS areas), so allow
    // 1/16 below the manifest's figure before calling the machine too small.
    let want = table.system_memory();
    let have = usable_bytes + LOW_MEMORY;
    if have < want - want / 16 {
        return Err(MemoryError::SystemMemory {
            have_mib: have >> 20,
            want_mib: want >> 20,
        });
    }

    let image_size = info.image.size();
    let pool_size = table
        .monitor_reserve()
        .saturating_sub(image_size)
        .clamp(MIN_POOL, MAX_POOL);
    let mut requests = Requests {
        sizes: [0; MAX_REQUESTS],
        what: [Request::Pool; MAX_REQUESTS],
        count: 0,
    };
    requests.push(Request::Pool, pool_size);
    for sandbox in table.sandboxes() {
        requests.push(Request::Ram(sandbox.id()), sandbox.ram_size());
        if sandbox.directory_gpa().is_some() {
            requests.push(Request::Directory(sandbox.id()), DIRECTORY_SIZE);
        }
        if sandbox.migration().is_some_and(|m| m.separate_memory) {
            requests.push(Request::StandbyRam(sandbox.id()), sandbox.ram_size());
        }
    }
    for channel in table.channels() {
        requests.push(Request::Channel(channel.index()), channel.size());
    }
    let sizes = &requests.sizes[..requests.count];
    // Everything is placed in 2 MiB granules above the first MiB: the host's calculation.
    let need = host_memory_needed(0, sizes.iter().copied()) - LOW_MEMORY;
    if usable_bytes < need {
        return Err(MemoryError::NotEnough {
            have_mib: usable_bytes >> 20,
            need_mib: need.div_ceil(1 << 20),
        });
    }

    let mut out = [HostPhysAddr::ZERO; MAX_REQUESTS];
    place(
        &usable[..usable_count],
        &reserved[..reserved_count],
        sizes,
        LARGE_PAGE_SIZE,
        &mut out,
    )
    .map_err(|e| match e {
        PlacementError::NoFit { index, size } => MemoryError::NoFit {
            what: requests.what[index],
            size,
        },
        // Sizes come from a validated table (non-zero, bounded): report as not fitting.
        _ => MemoryError::NoFit {
            what: Request::Pool,
            size: 0,
        },
    })?;

    let mut placed = Placed {
        pool: Range::sized(out[0].as_u64(), pool_size),
        channel_hpas: [HostPhysAddr::ZERO; MAX_CHANNELS],
    };
    let mut sandboxes = [SandboxPlacement::UNPLACED; MAX_SANDBOXES];
    let mut standby_ram = [None; MAX_SANDBOXES];
    for (i, what) in requests.what[..requests.count].iter().enumerate() {
        match *what {
            Request::Pool => {}
            Request::Ram(s) => sandboxes[s.index()].ram_hpa = out[i],
            Request::Directory(s) => sandboxes[s.index()].directory_hpa = Some(out[i]),
            Request::StandbyRam(s) => standby_ram[s.index()] = Some(out[i]),
            Request::Channel(c) => placed.channel_hpas[c] = out[i],
        }
    }
    for sandbox in table.sandboxes() {
        let mut place = sandboxes[sandbox.id().index()];
        // A validated table gives every sandbox 1..=MAX_VCPUS_PER_SANDBOX vCPUs.
        place.cores = CoreSet::new(sandbox.vcpus().map(|v| v.core())).unwrap_or(CoreSet::EMPTY);
        // Standby cores: all vCPUs have one or none has (validated).
        let standby = match sandbox.migration() {
            Some(_) => SandboxPlacement {
                ram_hpa: standby_ram[sandbox.id().index()].unwrap_or(place.ram_hpa),
                directory_hpa: place.directory_hpa,
                cores: CoreSet::new(sandbox.vcpus().filter_map(|v| v.standby_core()))
                    .unwrap_or(CoreSet::EMPTY),
            },
            None => SandboxPlacement::UNPLACED,
        };
        record(sandbox.id()).place(place, standby);
    }
    Ok(placed)
}

/// Prints the placement, one line per allocation.
pub fn print(placed: &Placed, table: &TableView<'_>) {
    let line = |what: fmt::Arguments<'_>, start: HostPhysAddr, size: u64| {
        crate::println!(
            "quest: memory: {what} at {start:#x}-{:#x} ({})",
            start.as_u64() + size,
            Size(size)
        );
    };
    line(
        format_args!("monitor frame pool"),
        HostPhysAddr::new(placed.pool.start),
        placed.pool.size(),
    );
    for sandbox in table.sandboxes() {
        let name = sandbox.name();
        let p = record(sandbox.id()).placement();
        line(
            format_args!("sandbox '{name}' RAM"),
            p.ram_hpa,
            sandbox.ram_size(),
        );
        let standby = record(sandbox.id()).standby();
        if !standby.cores.is_empty() && standby.ram_hpa != p.ram_hpa {
            line(
                format_args!("sandbox '{name}' standby RAM"),
                standby.ram_hpa,
                sandbox.ram_size(),
            );
        }
        if let Some(directory_hpa) = p.directory_hpa {
            line(
                format_args!("sandbox '{name}' directory"),
                directory_hpa,
                DIRECTORY_SIZE,
            );
        }
    }
    for channel in table.channels() {
        line(
            format_args!("channel '{}'", channel.name()),
            placed.channel_hpas[channel.index()],
            channel.size(),
        );
    }
}
