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

#[cfg(test)]
mod tests {
    use super::*;

    /// The calibration part of a real boot log (bounds.toml, Bochs), with sandbox lines
    /// mixed in.
    const BOOT: &str = "\
quest: TSC 10000 kHz (measured against the PIT)
quest: calibration: copy cold 135 (max 140), warm 130 (max 135) cycles per KiB
quest: calibration: channel send 75 (max 80) + 1282 (max 1283) per KiB, recv 120 (max 120) + 1276 (max 1277) per KiB cycles
[bulk-sink] hello
quest: calibration: vm exit+entry 70 (max 70) cycles
quest: calibration: ipi delivery 15 (max 20) cycles
quest: calibration: wait wake-up 30 (max 35) cycles
quest: calibration: channel 'bulk' cores 0->1: line round trip 25 (max 30) cycles, tsc offset -5 +- 15 cycles
quest: calibration: channel 'ticks' cores 2->3: line round trip 25 (max 45) cycles, tsc offset 0 +- 15 cycles
quest: calibration: done in 1040990 TSC cycles (32 trials each, 2 core pairs)
quest: latency 'bulk': 3 messages, worst 900, total 1000, early 0 cycles; buckets 7:2,10:1
";

    #[test]
    fn a_boot_log_gives_its_profile_and_latencies() {
        let p = profile(BOOT, "bochs", "bounds").expect("complete");
        assert_eq!(p.platform.tsc_khz, 10_000);
        assert_eq!(
            p.cycles.recv_per_kib,
            Measured {
                median: 1276,
                max: 1277
            }
        );
        assert_eq!(p.cycles.wait_wakeup.max, 35);
        assert_eq!(p.cycles.copy_warm_per_kib.median, 130);
        assert_eq!(p.channels.len(), 2);
        assert_eq!(
            (p.channels[0].cores, p.channels[0].tsc_offset),
            ([0, 1], -5)
        );
        // The profile's own line round trip is the worst pair's.
        assert_eq!(p.cycles.line_round_trip.max, 45);
        // What it writes reads back.
        assert_eq!(Profile::parse(&p.render()), Ok(p));
        let l = latencies(BOOT);
        assert_eq!(l.len(), 1);
        assert_eq!(
            (l[0].0.as_str(), l[0].1.messages, l[0].1.worst),
            ("bulk", 3, 900)
        );
    }

    #[test]
    fn a_missing_line_is_named() {
        for (line, what) in [
            ("quest: TSC", "TSC"),
            ("quest: calibration: copy", "copy"),
            ("quest: calibration: channel send", "send/recv"),
            ("quest: calibration: wait wake-up", "wake-up"),
        ] {
            let cut: String = BOOT
                .lines()
                .filter(|l| !l.starts_with(line))
                .map(|l| format!("{l}\n"))
                .collect();
            let e = profile(&cut, "bochs", "bounds").unwrap_err();
            assert!(e.contains(what), "{line}: {e}");
        }
        let no_channels: String = BOOT
            .lines()
            .filter(|l| !l.contains("channel '"))
            .map(|l| format!("{l}\n"))
            .collect();
        let e = profile(&no_channels, "bochs", "hello").unwrap_err();
        assert!(e.contains("no channels"), "{e}");
    }
}
