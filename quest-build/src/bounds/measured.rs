//! What one boot measured, read from its console: the platform profile the monitor's
//! calibration lines describe (`quest-build run --calibrate` writes it), and each
//! channel's latency record from the end of the run (`--check-bounds` checks them).

use super::profile::{ChannelPair, Cycles, Measured, Origin, Profile};
use crate::run::console::records;
use quest_abi::calibration::Cost;
use quest_abi::console::{Constant, Record};
use quest_abi::latency::Latency;

fn measured(c: Cost) -> Measured {
    Measured {
        median: c.median,
        max: c.max,
    }
}

/// The profile a boot's calibration lines describe, measured on `machine` booting
/// `system`; what is missing if the console lacks a line.
pub fn profile(console: &str, machine: &str, system: &str) -> Result<Profile, String> {
    let mut khz = None;
    let mut copy = None;
    let mut ops = None;
    let mut costs = [None; 3];
    let mut channels = Vec::new();
    for r in records(console) {
        match r {
            Record::Tsc { khz: k, .. } => khz = Some(k),
            Record::CalibrationCopy { cold, warm } => copy = Some((cold, warm)),
            Record::CalibrationChannelOps {
                send_fixed,
                send_per_kib,
                recv_fixed,
                recv_per_kib,
            } => ops = Some((send_fixed, send_per_kib, recv_fixed, recv_per_kib)),
            Record::CalibrationCost { what, cost } => {
                let i = Constant::ALL.iter().position(|&c| c == what).unwrap_or(0);
                costs[i] = Some(cost);
            }
            Record::CalibrationChannel { channel, pair: p } => channels.push(ChannelPair {
                name: channel.to_owned(),
                cores: [p.writer_core, p.reader_core],
                line_round_trip: measured(p.line),
                tsc_offset: p.tsc_offset,
                tsc_uncertainty: p.uncertainty,
            }),
            _ => {}
        }
    }
    let missing = |what: &str| {
        format!("the boot log has no {what} line (is this monitor older than calibration?)")
    };
    let khz = khz.ok_or_else(|| missing("`quest: TSC` frequency"))?;
    let (cold, warm) = copy.ok_or_else(|| missing("`quest: calibration: copy`"))?;
    let (send_fixed, send_per_kib, recv_fixed, recv_per_kib) =
        ops.ok_or_else(|| missing("`quest: calibration: channel send/recv`"))?;
    let [Some(exit), Some(ipi), Some(wake)] = costs else {
        return Err(missing(
            "`quest: calibration:` vm exit+entry, ipi delivery or wait wake-up",
        ));
    };
    let line = channels
        .iter()
        .map(|c| c.line_round_trip)
        .max_by_key(|m| m.max)
        .ok_or_else(|| {
            "the boot measured no core pair (the system has no channels); calibrate with a \
             manifest that has channels, e.g. partition-manifests/bounds.toml"
                .to_owned()
        })?;
    Ok(Profile {
        platform: Origin {
            machine: machine.to_owned(),
            system: system.to_owned(),
            tsc_khz: khz,
        },
        cycles: Cycles {
            line_round_trip: line,
            send_fixed: measured(send_fixed),
            send_per_kib: measured(send_per_kib),
            recv_fixed: measured(recv_fixed),
            recv_per_kib: measured(recv_per_kib),
            copy_cold_per_kib: measured(cold),
            copy_warm_per_kib: measured(warm),
            vm_exit_entry: measured(exit),
            ipi: measured(ipi),
            wait_wakeup: measured(wake),
        },
        channels,
    })
}

/// Each channel's latency record (`quest: latency '<name>': ...`), in console order.
pub fn latencies(console: &str) -> Vec<(String, Latency)> {
    records(console)
        .filter_map(|r| match r {
            Record::ChannelLatency { channel, latency } => Some((channel.to_owned(), latency)),
            _ => None,
        })
        .collect()
}
