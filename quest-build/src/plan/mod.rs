//! The planner: `Manifest -> Plan`, pure and deterministic, and the plan's encoding as
//! the `quest-abi` partition table.
//!
//! - [`layout`]: each runtime's fixed boot addresses, stacks and RAM region.
//! - [`channels`]: where every channel sits in both endpoints' channel windows.
//! - [`table`]: the plan (and optionally the built images) as the binary table.
//! - [`directory`]: each sandbox's channel directory page.
//! - [`report`], [`json`], [`svg`]: the plan for people, for programs and as a picture.

pub mod channels;
pub mod directory;
pub mod json;
pub mod layout;
pub mod report;
pub mod svg;
pub mod table;
pub mod types;
pub mod units;

#[cfg(test)]
pub(crate) mod testing;

pub use channels::{place_channels, ChannelRequest};
pub use directory::directory_bytes;
pub use table::{encode_table, EncodedTable, TableError};
pub use types::*;

use crate::manifest::{self, budget, Manifest};

/// Plans a validated manifest. Pure and deterministic: the same manifest always gives
/// the same plan (and so a byte-identical table).
///
/// The manifest must have passed validation. On one that did not, the plan is
/// meaningless but this still never panics: unknown channel endpoints and impossible
/// sizes end up in the plan as they are, and [`encode_table`] rejects them.
pub fn plan(m: &Manifest) -> Plan {
    let index_of = |name: &str| {
        m.sandboxes
            .iter()
            .position(|s| s.name.value == name)
            .unwrap_or(usize::MAX)
    };
    let requests: Vec<ChannelRequest> = m
        .channels
        .iter()
        .map(|c| ChannelRequest {
            name: c.name.value.clone(),
            writer: index_of(&c.writer.value),
            reader: index_of(&c.reader.value),
            size: c.size.value,
        })
        .collect();
    let placement = place_channels(m.sandboxes.len(), &requests);

    let sandboxes: Vec<SandboxPlan> = m
        .sandboxes
        .iter()
        .zip(placement.windows)
        .map(|(s, window)| {
            let runtime = s.runtime.value;
            let ram_size = s.memory.value;
            let cores: Vec<u32> = s.cores.value.iter().map(|c| c.value).collect();
            let standby: Vec<u32> = s
                .standby_cores
                .iter()
                .flat_map(|c| &c.value)
                .map(|c| c.value)
                .collect();
            let mut regions = vec![layout::ram_region(ram_size)];
            regions.extend(window.regions);
            SandboxPlan {
                name: s.name.value.clone(),
                runtime,
                on_fault: s.on_fault.value,
                app_dir: s.app_dir(m),
                args: s.args.iter().map(|a| a.value.clone()).collect(),
                env: s
                    .env
                    .iter()
                    .map(|(k, v)| (k.value.clone(), v.value.clone()))
                    .collect(),
                ram_size,
                vcpus: layout::vcpus(runtime, ram_size, &cores, &standby),
                regions,
                devices: s.devices.iter().map(|d| device_plan(&d.value)).collect(),
                boot: layout::boot_layout(runtime, !window.ends.is_empty()),
                channel_ends: window.ends,
                migration: migration_plan(m, s),
            }
        })
        .collect();

    let monitor_reserve = budget::monitor_reserve(sandboxes.len());
    let host_memory_needed = budget::host_memory_needed(
        monitor_reserve,
        sandboxes.iter().flat_map(|s| {
            let standby = s.migration.as_ref().is_some_and(|m| m.separate_memory);
            std::iter::repeat_n(s.ram_size, if standby { 2 } else { 1 })
        }),
        placement
            .channels
            .iter()
            .map(|c| budget::channel_bytes(c.data_size)),
    );
    Plan {
        system_name: m.system.name.value.clone(),
        system_cores: m.system.cores.value,
        system_memory: m.system.memory.value,
        console_port: m.system.console.value.port(),
        monitor_reserve,
        host_memory_needed,
        sandboxes,
        channels: placement.channels,
    }
}

/// A device as the plan (and the table) carries it. Validation kept IRQ lines at most
/// `MAX_IRQ`.
fn device_plan(d: &manifest::Device) -> DevicePlan {
    match *d {
        manifest::Device::Ports {
            first,
            last,
            ref irq,
        } => DevicePlan::Ports {
            first,
            last,
            irq: irq.as_ref().and_then(|i| u8::try_from(i.value).ok()),
        },
        manifest::Device::Pci(p) => DevicePlan::Pci {
            select: p.select,
            dma_unprotected: p.dma == manifest::Dma::Unprotected,
            start_without: p.if_absent == manifest::IfAbsent::StartWithout,
        },
    }
}

/// A sandbox's migration terms (`None` without `standby_cores`).
fn migration_plan(m: &Manifest, s: &manifest::Sandbox) -> Option<MigrationPlan> {
    s.standby_cores.as_ref()?;
    let mut migrate_by: Vec<usize> = s
        .migrate_by
        .iter()
        .filter_map(|c| {
            let name = if c.value == manifest::validate::MIGRATE_SELF {
                &s.name.value
            } else {
                &c.value
            };
            m.sandboxes.iter().position(|o| &o.name.value == name)
        })
        .collect();
    migrate_by.sort_unstable();
    migrate_by.dedup();
    Some(MigrationPlan {
        separate_memory: s.standby_memory.value == manifest::StandbyMemory::Separate,
        migrate_by,
        max_downtime_ns: s.max_downtime.as_ref().map_or(0, |d| d.value),
        hide_downtime: s.downtime_clock.value == manifest::DowntimeClock::Hidden,
    })
}

#[cfg(test)]
mod tests;
