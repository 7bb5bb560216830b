//! The plan as JSON (`quest-build plan --json`): the report's content for programs.
//!
//! Keys come out in the order of the fields below (stable); addresses and sizes are plain
//! integers in bytes; access is an `rwx` string.

use super::channels::capacity;
use super::table::EncodedTable;
use super::types::{DevicePlan, Plan, RegionPlan, Role, SandboxPlan};
use super::units::{access, console};
use crate::manifest::budget::{host_allocation, LOW_MEMORY_RESERVE};
use quest_abi::{GuestPhysAddr, OnFault, PciSelector, RegionKind, Runtime};
use serde::Serialize;
use std::path::Path;

#[derive(Serialize)]
struct JsonPlan<'a> {
    system: JsonSystem<'a>,
    sandboxes: Vec<JsonSandbox<'a>>,
    channels: Vec<JsonChannel<'a>>,
    host_memory: JsonHostMemory,
    table: JsonTable,
}

/// A device: `{"kind": "ports", "first", "last", "irq"}` or `{"kind": "pci", "pci",
/// "index", "dma", "if_absent"}` (`pci` as the manifest writes it; `index` only for an ID).
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum JsonDevice {
    Ports {
        first: u16,
        last: u16,
        irq: Option<u8>,
    },
    Pci {
        pci: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        index: Option<u32>,
        dma: &'static str,
        if_absent: &'static str,
    },
}

fn json_device(d: &DevicePlan) -> JsonDevice {
    match *d {
        DevicePlan::Ports { first, last, irq } => JsonDevice::Ports { first, last, irq },
        DevicePlan::Pci {
            select,
            dma_unprotected,
            start_without,
        } => {
            let (pci, index) = match select {
                PciSelector::Address(a) => (a.to_string(), None),
                PciSelector::Id { id, index } => (id.to_string(), Some(index)),
            };
            JsonDevice::Pci {
                pci,
                index,
                dma: if dma_unprotected {
                    "unprotected"
                } else {
                    "protected"
                },
                if_absent: if start_without {
                    "start-without"
                } else {
                    "keep-stopped"
                },
            }
        }
    }
}

#[derive(Serialize)]
struct JsonSystem<'a> {
    name: &'a str,
    cores: u32,
    memory: u64,
    console: String,
    console_port: u16,
    idle_cores: Vec<u32>,
}

#[derive(Serialize)]
struct JsonSandbox<'a> {
    index: usize,
    name: &'a str,
    runtime: &'static str,
    on_fault: &'static str,
    app: String,
    args: &'a [String],
    env: Vec<[&'a str; 2]>,
    ram_size: u64,
    vcpus: Vec<JsonVcpu>,
    boot: JsonBoot,
    ports: Vec<[u16; 2]>,
    devices: Vec<JsonDevice>,
    regions: Vec<JsonRegion<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    migration: Option<JsonMigration>,
}

#[derive(Serialize)]
struct JsonMigration {
    standby_memory: &'static str,
    migrate_by: Vec<usize>,
    max_downtime_ns: u64,
}

#[derive(Serialize)]
struct JsonVcpu {
    index: u32,
    core: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    standby_core: Option<u32>,
    stack_top: u64,
}

#[derive(Serialize)]
struct JsonBoot {
    image_gpa: u64,
    boot_info_gpa: u64,
    page_table_gpa: u64,
    directory_gpa: Option<u64>,
    patch_tsc_khz_gpa: Option<u64>,
    patch_boot_time_gpa: Option<u64>,
    patch_boot_time_ns_gpa: Option<u64>,
    patch_launch_count_gpa: Option<u64>,
}

#[derive(Serialize)]
struct JsonRegion<'a> {
    kind: &'static str,
    gpa: u64,
    size: u64,
    access: String,
    channel: Option<&'a str>,
    role: Option<&'static str>,
}

#[derive(Serialize)]
struct JsonChannel<'a> {
    index: usize,
    name: &'a str,
    writer: &'a str,
    reader: &'a str,
    data_size: u64,
    ack_size: u64,
    capacity: u64,
    writer_gpa: u64,
    reader_gpa: u64,
}

#[derive(Serialize)]
struct JsonHostMemory {
    low_memory: u64,
    monitor_reserve: u64,
    allocations: Vec<JsonAllocation>,
    needed: u64,
    available: u64,
}

#[derive(Serialize)]
struct JsonAllocation {
    kind: &'static str,
    name: String,
    size: u64,
}

#[derive(Serialize)]
struct JsonTable {
    size: usize,
    crc32: u32,
}

fn role(r: Role) -> &'static str {
    match r {
        Role::Writer => "writer",
        Role::Reader => "reader",
    }
}

fn region<'a>(plan: &'a Plan, sb: &SandboxPlan, r: &RegionPlan) -> JsonRegion<'a> {
    JsonRegion {
        kind: match r.kind {
            RegionKind::Ram => "ram",
            RegionKind::Directory => "directory",
            RegionKind::ChannelData => "channel-data",
            RegionKind::ChannelAck => "channel-ack",
        },
        gpa: r.gpa.as_u64(),
        size: r.size,
        access: access(r.access),
        channel: r
            .channel
            .and_then(|c| plan.channels.get(c))
            .map(|c| c.name.as_str()),
        role: r.channel.and_then(|c| {
            sb.channel_ends
                .iter()
                .find(|e| e.channel == c)
                .map(|e| role(e.role))
        }),
    }
}

/// Renders the plan as pretty-printed JSON. `base_dir` is the manifest's directory:
/// application paths are given relative to it, as the manifest writes them.
pub fn render(plan: &Plan, table: &EncodedTable, base_dir: &Path) -> String {
    let name = |i: usize| plan.sandboxes.get(i).map_or("?", |s| s.name.as_str());
    let used = |c: u32| {
        plan.sandboxes.iter().any(|s| {
            s.vcpus
                .iter()
                .any(|v| v.core == c || v.standby_core == Some(c))
        })
    };
    let json = JsonPlan {
        system: JsonSystem {
            name: &plan.system_name,
            cores: plan.system_cores,
            memory: plan.system_memory,
            console: console(plan.console_port),
            console_port: plan.console_port,
            idle_cores: (0..plan.system_cores).filter(|&c| !used(c)).collect(),
        },
        sandboxes: plan
            .sandboxes
            .iter()
            .enumerate()
            .map(|(index, sb)| JsonSandbox {
                index,
                name: &sb.name,
                runtime: match sb.runtime {
                    Runtime::Bare => "bare",
                    Runtime::Hermit => "hermit",
                },
                on_fault: match sb.on_fault {
                    OnFault::HaltSandbox => "halt-sandbox",
                    OnFault::Restart => "restart",
                    OnFault::HaltSystem => "halt-system",
                },
                app: sb
                    .app_dir
                    .strip_prefix(base_dir)
                    .unwrap_or(&sb.app_dir)
                    .display()
                    .to_string(),
                args: &sb.args,
                env: sb
                    .env
                    .iter()
                    .map(|(k, v)| [k.as_str(), v.as_str()])
                    .collect(),
                ram_size: sb.ram_size,
                vcpus: sb
                    .vcpus
                    .iter()
                    .map(|v| JsonVcpu {
                        index: v.index,
                        core: v.core,
                        standby_core: v.standby_core,
                        stack_top: v.stack_top,
                    })
                    .collect(),
                boot: JsonBoot {
                    image_gpa: sb.boot.image_gpa.as_u64(),
                    boot_info_gpa: sb.boot.boot_info_gpa.as_u64(),
                    page_table_gpa: sb.boot.page_table_gpa.as_u64(),
                    directory_gpa: sb.boot.directory_gpa.map(GuestPhysAddr::as_u64),
                    patch_tsc_khz_gpa: sb.boot.patch_tsc_khz_gpa.map(GuestPhysAddr::as_u64),
                    patch_boot_time_gpa: sb.boot.patch_boot_time_gpa.map(GuestPhysAddr::as_u64),
                    patch_boot_time_ns_gpa: sb
                        .boot
                        .patch_boot_time_ns_gpa
                        .map(GuestPhysAddr::as_u64),
                    patch_launch_count_gpa: sb
                        .boot
                        .patch_launch_count_gpa
                        .map(GuestPhysAddr::as_u64),
                },
                ports: sb.ports().map(|(a, b)| [a, b]).collect(),
                devices: sb.devices.iter().map(json_device).collect(),
                regions: sb.regions.iter().map(|r| region(plan, sb, r)).collect(),
                migration: sb.migration.as_ref().map(|m| JsonMigration {
                    standby_memory: if m.separate_memory {
                        "separate"
                    } else {
                        "same"
                    },
                    migrate_by: m.migrate_by.clone(),
                    max_downtime_ns: m.max_downtime_ns,
                }),
            })
            .collect(),
        channels: plan
            .channels
            .iter()
            .enumerate()
            .map(|(index, c)| JsonChannel {
                index,
                name: &c.name,
                writer: name(c.writer),
                reader: name(c.reader),
                data_size: c.data_size,
                ack_size: c.ack_size,
                capacity: capacity(c.data_size),
                writer_gpa: c.writer_gpa.as_u64(),
                reader_gpa: c.reader_gpa.as_u64(),
            })
            .collect(),
        host_memory: JsonHostMemory {
            low_memory: LOW_MEMORY_RESERVE,
            monitor_reserve: plan.monitor_reserve,
            allocations: plan
                .sandboxes
                .iter()
                .map(|s| JsonAllocation {
                    kind: "sandbox",
                    name: s.name.clone(),
                    size: host_allocation(s.ram_size),
                })
                .chain(plan.channels.iter().map(|c| JsonAllocation {
                    kind: "channel",
                    name: c.name.clone(),
                    size: host_allocation(c.data_size.saturating_add(c.ack_size)),
                }))
                .collect(),
            needed: plan.host_memory_needed,
            available: plan.system_memory,
        },
        table: JsonTable {
            size: table.table.len(),
            crc32: table.checksum(),
        },
    };
    // Serializing plain structs of strings and integers cannot fail.
    let mut out = serde_json::to_string_pretty(&json).unwrap_or_default();
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testing;
    use serde_json::Value;

    #[test]
    fn json_carries_the_plan() {
        let (p, t, text) = testing::render_pingpong(render);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["system"]["name"], "test");
        assert_eq!(v["system"]["idle_cores"], serde_json::json!([3]));
        assert_eq!(v["sandboxes"][1]["vcpus"][1]["core"], 2);
        assert_eq!(v["sandboxes"][0]["app"], "apps/ping");
        assert_eq!(
            v["sandboxes"][1]["ports"],
            serde_json::json!([[0x2f8, 0x2ff]])
        );
        let r = &v["sandboxes"][1]["regions"][2];
        assert_eq!(r["kind"], "channel-data");
        assert_eq!(r["access"], "r--");
        assert_eq!(r["channel"], "ping-to-pong");
        assert_eq!(r["role"], "reader");
        assert_eq!(
            v["channels"][0]["writer_gpa"],
            p.channels[0].writer_gpa.as_u64()
        );
        assert_eq!(
            v["channels"][1]["capacity"],
            quest_channel::max_message_len(8192) as u64
        );
        assert_eq!(v["host_memory"]["needed"], p.host_memory_needed);
        assert_eq!(v["table"]["crc32"], t.checksum());
        assert_eq!(v["table"]["size"], t.table.len());
        // Keys keep their declared order.
        let keys: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("  \""))
            .map(|l| l.trim().split('"').nth(1).unwrap())
            .collect();
        assert_eq!(
            keys,
            ["system", "sandboxes", "channels", "host_memory", "table"]
        );
    }
}
