//! The plan as a report for people (`quest-build plan`).

use super::channels::{capacity, RING_HEADER_SIZE};
use super::table::EncodedTable;
use super::types::{DevicePlan, Plan, RegionPlan, Role, SandboxPlan};
use super::units::{access, addr, console, size};
use crate::manifest::budget::{host_allocation, LOW_MEMORY_RESERVE};
use quest_abi::{RegionKind, Runtime};
use quest_channel::wire::RECORD_HEADER_SIZE;
use std::fmt::Write;
use std::path::Path;

/// Renders the report. `base_dir` is the manifest's directory: application paths are
/// shown relative to it, as the manifest writes them.
pub fn render(plan: &Plan, table: &EncodedTable, base_dir: &Path) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "system `{}`: {} cores, {} RAM, console {} ({:#x})",
        plan.system_name,
        plan.system_cores,
        size(plan.system_memory),
        console(plan.console_port),
        plan.console_port
    );
    out.push('\n');
    core_grid(&mut out, plan);
    for (i, sb) in plan.sandboxes.iter().enumerate() {
        out.push('\n');
        sandbox(&mut out, plan, i, sb, base_dir);
    }
    if !plan.channels.is_empty() {
        out.push('\n');
        channels(&mut out, plan);
    }
    out.push('\n');
    host_memory(&mut out, plan);
    out.push('\n');
    let _ = writeln!(
        out,
        "partition table: {} bytes, CRC-32 {:#010x} (plan only: `quest-build image` adds the payloads)",
        table.table.len(),
        table.checksum()
    );
    out
}

/// Lines up `rows` in columns: every column as wide as its widest cell, two spaces apart.
fn columns(out: &mut String, indent: &str, rows: &[Vec<String>]) {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::from(indent);
        for (c, cell) in row.iter().enumerate() {
            let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// `items` joined with commas, or `none` when there are none.
fn list_or(items: &[String], none: &str) -> String {
    if items.is_empty() {
        none.to_owned()
    } else {
        items.join(", ")
    }
}

/// Cores across, sandboxes down; a cell names the vCPU running there.
fn core_grid(out: &mut String, plan: &Plan) {
    let _ = writeln!(out, "cores (vN: the sandbox's vCPU N runs on that core)");
    let mut header = vec!["core".to_owned()];
    header.extend((0..plan.system_cores).map(|c| c.to_string()));
    let mut rows = vec![header];
    for sb in &plan.sandboxes {
        let mut row = vec![sb.name.clone()];
        row.extend((0..plan.system_cores).map(|c| {
            let running = sb.vcpus.iter().find(|v| v.core == c);
            let standby = sb.vcpus.iter().find(|v| v.standby_core == Some(c));
            match (running, standby) {
                (Some(v), _) => format!("v{}", v.index),
                (None, Some(v)) => format!("s{}", v.index),
                (None, None) => ".".to_owned(),
            }
        }));
        rows.push(row);
    }
    columns(out, "  ", &rows);
    if plan.sandboxes.iter().any(|s| s.migration.is_some()) {
        let _ = writeln!(
            out,
            "  sN: the standby core of vCPU N (it runs there after a migration)"
        );
    }
    let idle: Vec<String> = (0..plan.system_cores)
        .filter(|&c| {
            !plan.sandboxes.iter().any(|s| {
                s.vcpus
                    .iter()
                    .any(|v| v.core == c || v.standby_core == Some(c))
            })
        })
        .map(|c| c.to_string())
        .collect();
    if !idle.is_empty() {
        let _ = writeln!(out, "  idle cores (monitor only): {}", idle.join(", "));
    }
}

fn runtime_name(r: Runtime) -> &'static str {
    match r {
        Runtime::Bare => "bare",
        Runtime::Hermit => "hermit",
    }
}

/// What a region is, in words.
fn region_label(plan: &Plan, sb: &SandboxPlan, r: &RegionPlan) -> String {
    let channel = r.channel.and_then(|c| plan.channels.get(c));
    let role = r
        .channel
        .and_then(|c| sb.channel_ends.iter().find(|e| e.channel == c))
        .map_or("", |e| match e.role {
            Role::Writer => "writer",
            Role::Reader => "reader",
        });
    let name = channel.map_or("?", |c| c.name.as_str());
    match r.kind {
        RegionKind::Ram => "RAM".to_owned(),
        RegionKind::Directory => "channel directory".to_owned(),
        RegionKind::ChannelData => format!("channel `{name}` data ({role})"),
        RegionKind::ChannelAck => format!("channel `{name}` ack ({role})"),
    }
}

fn sandbox(out: &mut String, plan: &Plan, index: usize, sb: &SandboxPlan, base_dir: &Path) {
    let _ = writeln!(
        out,
        "sandbox {index} `{}`: {}, {} vCPU{}, {} RAM, on fault: {}",
        sb.name,
        runtime_name(sb.runtime),
        sb.vcpus.len(),
        if sb.vcpus.len() == 1 { "" } else { "s" },
        size(sb.ram_size),
        match sb.on_fault {
            quest_abi::OnFault::HaltSandbox => "halt-sandbox",
            quest_abi::OnFault::Restart => "restart",
            quest_abi::OnFault::HaltSystem => "halt-system",
        }
    );
    let app = sb.app_dir.strip_prefix(base_dir).unwrap_or(&sb.app_dir);
    let mut rows = vec![vec!["app".to_owned(), app.display().to_string()]];
    if !sb.args.is_empty() {
        rows.push(vec!["args".to_owned(), sb.args.join(" ")]);
    }
    if !sb.env.is_empty() {
        let env: Vec<String> = sb.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        rows.push(vec!["env".to_owned(), env.join(" ")]);
    }
    let vcpus: Vec<String> = sb
        .vcpus
        .iter()
        .map(|v| format!("v{} -> core {} (rsp {:#x})", v.index, v.core, v.stack_top))
        .collect();
    rows.push(vec!["vcpus".to_owned(), vcpus.join(", ")]);
    if let Some(m) = &sb.migration {
        let standby: Vec<String> = sb
            .vcpus
            .iter()
            .map(|v| {
                let core = v.standby_core.map_or("?".to_owned(), |c| c.to_string());
                format!("v{} -> core {core}", v.index)
            })
            .collect();
        let by: Vec<&str> = m
            .migrate_by
            .iter()
            .map(|&i| plan.sandboxes.get(i).map_or("?", |s| s.name.as_str()))
            .collect();
        rows.push(vec![
            "migrates".to_owned(),
            format!(
                "{}, {} RAM; asked by {}; max downtime {}",
                standby.join(", "),
                if m.separate_memory {
                    "separate standby"
                } else {
                    "same"
                },
                by.join(", "),
                crate::manifest::size::human_duration(m.max_downtime_ns)
            ),
        ]);
    }
    let b = &sb.boot;
    rows.push(vec![
        "boot".to_owned(),
        format!(
            "image {:#x}, boot info {:#x} (rdi), page tables {:#x} (cr3), rsi = vCPU index",
            b.image_gpa, b.boot_info_gpa, b.page_table_gpa
        ),
    ]);
    let patches: Vec<String> = [
        ("TSC kHz", b.patch_tsc_khz_gpa),
        ("boot time", b.patch_boot_time_gpa),
        ("boot time (ns)", b.patch_boot_time_ns_gpa),
        ("launch count", b.patch_launch_count_gpa),
    ]
    .iter()
    .filter_map(|(what, gpa)| gpa.map(|g| format!("{what} at {g:#x}")))
    .collect();
    rows.push(vec![
        "patched".to_owned(),
        list_or(&patches, "nothing (monitor writes no boot-time values)"),
    ]);
    let devices: Vec<String> = sb.devices.iter().map(DevicePlan::describe).collect();
    rows.push(vec!["devices".to_owned(), list_or(&devices, "none")]);
    if !sb.devices.is_empty() {
        // What only the boot can fill in (the monitor prints it): where firmware put the
        // BARs and which line a PCI function's INTx uses.
        let unprotected = sb.devices.iter().any(|d| {
            matches!(
                d,
                DevicePlan::Pci {
                    dma_unprotected: true,
                    ..
                }
            )
        });
        rows.push(vec![
            "at boot".to_owned(),
            format!(
                "BARs where firmware puts them (uncached, guest = host address); IRQ line N \
                 -> vector 32+N on v0; DMA confined to its RAM and channels by an IOMMU ({} \
                 without one)",
                if unprotected {
                    "unprotected"
                } else {
                    "refused"
                }
            ),
        ]);
    }
    columns(out, "  ", &rows);
    let _ = writeln!(out, "  guest-physical memory map");
    let map: Vec<Vec<String>> = sb
        .regions
        .iter()
        .map(|r| {
            vec![
                addr(r.gpa.as_u64()),
                "-".to_owned(),
                addr(r.gpa.as_u64().saturating_add(r.size)),
                size(r.size),
                access(r.access),
                region_label(plan, sb, r),
            ]
        })
        .collect();
    columns(out, "    ", &map);
}

fn channels(out: &mut String, plan: &Plan) {
    let _ = writeln!(
        out,
        "channels (capacity = largest message: data size - {RING_HEADER_SIZE} B ring header \
         - {RECORD_HEADER_SIZE} B record header and stamp)"
    );
    let name = |i: usize| plan.sandboxes.get(i).map_or("?", |s| s.name.as_str());
    let mut rows = vec![[
        "name",
        "writer",
        "reader",
        "data",
        "ack",
        "capacity",
        "writer gpa",
        "reader gpa",
    ]
    .map(str::to_owned)
    .to_vec()];
    for c in &plan.channels {
        rows.push(vec![
            c.name.clone(),
            name(c.writer).to_owned(),
            name(c.reader).to_owned(),
            size(c.data_size),
            size(c.ack_size),
            format!("{} B", capacity(c.data_size)),
            addr(c.writer_gpa.as_u64()),
            addr(c.reader_gpa.as_u64()),
        ]);
    }
    columns(out, "  ", &rows);
}

fn host_memory(out: &mut String, plan: &Plan) {
    let _ = writeln!(
        out,
        "host memory (placed by the monitor at boot, each allocation 2 MiB-aligned)"
    );
    let mut rows = vec![
        vec![
            "low memory".to_owned(),
            size(LOW_MEMORY_RESERVE),
            "firmware's first MiB".to_owned(),
        ],
        vec![
            "monitor reserve".to_owned(),
            size(plan.monitor_reserve),
            "image, stacks, VMCS, EPT tables, directories".to_owned(),
        ],
    ];
    for sb in &plan.sandboxes {
        rows.push(vec![
            format!("sandbox `{}`", sb.name),
            size(host_allocation(sb.ram_size)),
            "RAM".to_owned(),
        ]);
        if sb.migration.as_ref().is_some_and(|m| m.separate_memory) {
            rows.push(vec![
                format!("sandbox `{}`", sb.name),
                size(host_allocation(sb.ram_size)),
                "standby RAM".to_owned(),
            ]);
        }
    }
    for c in &plan.channels {
        rows.push(vec![
            format!("channel `{}`", c.name),
            size(host_allocation(c.data_size.saturating_add(c.ack_size))),
            format!("{} data + {} ack", size(c.data_size), size(c.ack_size)),
        ]);
    }
    let left = plan.system_memory.checked_sub(plan.host_memory_needed);
    rows.push(vec![
        "total".to_owned(),
        size(plan.host_memory_needed),
        match left {
            Some(left) => format!("of {} ({} left)", size(plan.system_memory), size(left)),
            None => format!(
                "of {}: {} TOO MUCH",
                size(plan.system_memory),
                size(plan.host_memory_needed - plan.system_memory)
            ),
        },
    ]);
    columns(out, "  ", &rows);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testing;

    #[test]
    fn report_shows_grid_maps_channels_budget_and_table() {
        let (p, t, r) = testing::render_pingpong(render);
        let lines: Vec<&str> = r.lines().collect();
        for line in [
            "  core  0   1   2   3",
            "  ping  v0  .   .   .",
            "  pong  .   v0  v1  .",
        ] {
            assert!(lines.contains(&line), "{r}");
        }
        let largest = format!("{} B", quest_channel::max_message_len(64 << 10));
        let crc = format!("CRC-32 {:#010x}", t.checksum());
        let table_size = format!("{} bytes", t.table.len());
        for wanted in [
            "idle cores (monitor only): 3",
            "  app      apps/ping\n",
            "0x0000_0000_0000  -  0x0000_0400_0000  64 MiB  rwx  RAM",
            "0x0040_0000_2000  -  0x0040_0001_2000  64 KiB  rw-  channel `ping-to-pong` data (writer)",
            "v1 -> core 2 (rsp 0x7f0000)",
            "devices  ports 0x2f8-0x2ff",
            &largest,
            &crc,
            &table_size,
        ] {
            assert!(r.contains(wanted), "{r}");
        }
        let total = size(p.host_memory_needed);
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("  total") && l.contains(&total)),
            "{r}"
        );
    }
}
