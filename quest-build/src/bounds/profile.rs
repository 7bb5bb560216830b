//! Platform profiles: the constants the monitor measured at boot (`quest-build run
//! --calibrate` writes one to `images/<system>.platform.toml`), read back by `quest-build
//! bounds`. The format is documented in partition-manifests/README.md.

use super::formula::Costs;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A measured value: the median and the largest of its trials, in TSC cycles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measured {
    /// Median of the trials.
    pub median: u64,
    /// Largest trial (bounds use this).
    pub max: u64,
}

/// Where and how the profile was measured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Origin {
    /// The machine, e.g. `bochs corei7_skylake_x, 2 cores, ips 10000000`.
    pub machine: String,
    /// The system booted to measure it.
    pub system: String,
    /// The TSC frequency, kHz.
    pub tsc_khz: u64,
}

/// Costs of the channel path, in TSC cycles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cycles {
    /// A cache line's round trip between two cores (the worst pair sharing a channel).
    pub line_round_trip: Measured,
    /// `send` of an empty message (cold).
    pub send_fixed: Measured,
    /// `send`'s cost per KiB of record (cold).
    pub send_per_kib: Measured,
    /// `recv` of an empty message (cold).
    pub recv_fixed: Measured,
    /// `recv`'s cost per KiB of record (cold).
    pub recv_per_kib: Measured,
    /// Copying one KiB, cold caches.
    pub copy_cold_per_kib: Measured,
    /// Copying one KiB, warm caches.
    pub copy_warm_per_kib: Measured,
    /// A VM exit and entry.
    pub vm_exit_entry: Measured,
    /// IPI delivery.
    pub ipi: Measured,
    /// WAIT wake-up after the doorbell IPI.
    pub wait_wakeup: Measured,
}

impl Cycles {
    /// What a migration's stop phase costs on this platform (the monitor derives the same
    /// from its calibration page).
    pub fn migration_costs(&self) -> quest_abi::hypercall::MigrationCosts {
        quest_abi::hypercall::MigrationCosts::from_max(
            self.ipi.max,
            self.vm_exit_entry.max,
            self.copy_cold_per_kib.max,
            self.copy_warm_per_kib.max,
        )
    }

    /// Each measurement with its key in the profile, in file order.
    pub fn each(&self) -> [(&'static str, &Measured); 10] {
        [
            ("line_round_trip", &self.line_round_trip),
            ("send_fixed", &self.send_fixed),
            ("send_per_kib", &self.send_per_kib),
            ("recv_fixed", &self.recv_fixed),
            ("recv_per_kib", &self.recv_per_kib),
            ("copy_cold_per_kib", &self.copy_cold_per_kib),
            ("copy_warm_per_kib", &self.copy_warm_per_kib),
            ("vm_exit_entry", &self.vm_exit_entry),
            ("ipi", &self.ipi),
            ("wait_wakeup", &self.wait_wakeup),
        ]
    }
}

/// One channel's core pair, as measured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelPair {
    /// The channel's name.
    pub name: String,
    /// Writer core, reader core (the worst pair measured).
    pub cores: [u32; 2],
    /// The line round trip between them.
    pub line_round_trip: Measured,
    /// Reader TSC minus writer TSC.
    pub tsc_offset: i64,
    /// How far the offset may be off (half the best exchange's round trip).
    pub tsc_uncertainty: u64,
}

/// A platform profile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Where it was measured.
    pub platform: Origin,
    /// The costs.
    pub cycles: Cycles,
    /// Per channel core pairs, when the measured system had channels.
    #[serde(default, rename = "channel")]
    pub channels: Vec<ChannelPair>,
}

/// Why a profile could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file could not be read.
    #[error("cannot read platform profile {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid profile.
    #[error("{path} is not a valid platform profile: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its location.
        message: String,
    },
}

impl Profile {
    /// Reads a profile file.
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ProfileError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses a profile's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let p: Self = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?;
        if p.platform.tsc_khz == 0 {
            return Err("`platform.tsc_khz` is 0".into());
        }
        Ok(p)
    }

    /// The profile as a file: a comment, then TOML with one line per measurement (what
    /// [`Profile::parse`] reads back).
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let m = |v: &Measured| format!("{{ median = {}, max = {} }}", v.median, v.max);
        let quoted = |s: &str| toml::Value::String(s.to_owned()).to_string();
        let c = &self.cycles;
        let mut out = String::from(
            "# Quest platform profile: what the monitor measured at boot, in TSC cycles\n\
             # ({ median, max } over its trials). Written by `quest-build run --calibrate`,\n\
             # read by `quest-build bounds --platform`; see partition-manifests/README.md.\n\n",
        );
        let _ = writeln!(out, "[platform]");
        let _ = writeln!(out, "machine = {}", quoted(&self.platform.machine));
        let _ = writeln!(out, "system = {}", quoted(&self.platform.system));
        let _ = writeln!(out, "tsc_khz = {}\n", self.platform.tsc_khz);
        let _ = writeln!(out, "[cycles]");
        for (name, v) in c.each() {
            let _ = writeln!(out, "{name} = {}", m(v));
        }
        for ch in &self.channels {
            let _ = writeln!(out, "\n[[channel]]");
            let _ = writeln!(out, "name = {}", quoted(&ch.name));
            let _ = writeln!(out, "cores = [{}, {}]", ch.cores[0], ch.cores[1]);
            let _ = writeln!(out, "line_round_trip = {}", m(&ch.line_round_trip));
            let _ = writeln!(out, "tsc_offset = {}", ch.tsc_offset);
            let _ = writeln!(out, "tsc_uncertainty = {}", ch.tsc_uncertainty);
        }
        out
    }

    /// The costs a bound uses for a channel: the worst of each measurement, with the
    /// channel's own core pair when it was measured and the worst pair otherwise.
    pub fn costs(&self, channel: &str) -> Costs {
        let c = &self.cycles;
        let round_trip = self
            .channels
            .iter()
            .find(|p| p.name == channel)
            .map_or(c.line_round_trip.max, |p| p.line_round_trip.max);
        Costs {
            line_transfer: round_trip.div_ceil(2),
            send_fixed: c.send_fixed.max,
            send_per_kib: c.send_per_kib.max,
            recv_fixed: c.recv_fixed.max,
            recv_per_kib: c.recv_per_kib.max,
            vm_exit_entry: c.vm_exit_entry.max,
            ipi: c.ipi.max,
            wake: c.wait_wakeup.max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Profile {
        let m = |median, max| Measured { median, max };
        Profile {
            platform: Origin {
                machine: "bochs \"quoted\", 2 cores".into(),
                system: "pingpong".into(),
                tsc_khz: 10_000,
            },
            cycles: Cycles {
                line_round_trip: m(25, 30),
                send_fixed: m(75, 80),
                send_per_kib: m(1282, 1283),
                recv_fixed: m(120, 120),
                recv_per_kib: m(1276, 1277),
                copy_cold_per_kib: m(135, 140),
                copy_warm_per_kib: m(130, 135),
                vm_exit_entry: m(70, 70),
                ipi: m(15, 20),
                wait_wakeup: m(30, 35),
            },
            channels: vec![ChannelPair {
                name: "ping-to-pong".into(),
                cores: [0, 1],
                line_round_trip: m(25, 40),
                tsc_offset: -12,
                tsc_uncertainty: 15,
            }],
        }
    }

    #[test]
    fn a_rendered_profile_reads_back() {
        let p = sample();
        assert_eq!(Profile::parse(&p.render()), Ok(p));
    }

    #[test]
    fn costs_use_the_worst_values_and_the_channels_own_pair() {
        let p = sample();
        let own = p.costs("ping-to-pong");
        assert_eq!(own.line_transfer, 20, "half its own round trip, rounded up");
        assert_eq!(p.costs("other").line_transfer, 15, "half the worst pair's");
        assert_eq!((own.send_fixed, own.recv_per_kib, own.wake), (80, 1277, 35));
    }

    #[test]
    fn bad_profiles_say_what_is_wrong() {
        let text = sample().render();
        let typo = text.replace("send_fixed", "send_fixd");
        assert!(Profile::parse(&typo).unwrap_err().contains("send_fixd"));
        let zero = text.replace("tsc_khz = 10000", "tsc_khz = 0");
        assert!(Profile::parse(&zero).unwrap_err().contains("tsc_khz"));
        assert!(Profile::parse("").is_err());
    }

    #[test]
    fn the_shipped_profile_is_valid() {
        let p = Profile::parse(crate::bounds::BOCHS_PROFILE).expect("valid");
        assert!(p.platform.machine.starts_with("bochs "));
        assert!(p.cycles.recv_per_kib.max > 0 && p.cycles.line_round_trip.max > 0);
    }
}
