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

    /// The profile as a file: a comment, then TOML.
    pub fn render(&self) -> String {
        let body = toml::to_string(self).unwrap_or_default();
        format!(
            "# Quest platform profile: what the monitor measured at boot, in TSC cycles\n\
             # ({{ median, max }} over its trials). Written by `quest-build run --calibrate`,\n\
             # read by `quest-build bounds --platform`; see partition-manifests/README.md.\n\n\
             {body}"
        )
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
