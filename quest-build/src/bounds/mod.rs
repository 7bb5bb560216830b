//! Bounded communication: the worst-case latency of one message on each channel, from
//! the channel's declared model (manifest) and the platform's measured costs (a profile),
//! and the check of observed latencies against it.

pub mod check;
pub mod formula;
pub mod measured;
pub mod migration;
pub mod profile;

use crate::manifest::types::{Channel as ManifestChannel, Manifest, ReaderMode, Spanned};
use formula::{bound, cycles_of_ns, Bound, Channel, Detection};
use profile::Profile;
use serde::Serialize;

/// The profile shipped for Bochs (the emulator `quest-build run` boots), measured by
/// `quest-build run --calibrate` on the channel examples.
pub const BOCHS_PROFILE: &str = include_str!("../../platforms/bochs.platform.toml");

/// One channel's analysis.
#[derive(Clone, Debug, Serialize)]
pub struct ChannelBound {
    /// Its name.
    pub name: String,
    /// Writer sandbox.
    pub writer: String,
    /// Reader sandbox.
    pub reader: String,
    /// `spin`, `poll` or `doorbell`.
    pub mode: &'static str,
    /// Ring bytes.
    pub ring: u64,
    /// The largest message (declared, or what the ring holds).
    pub max_message: u64,
    /// The poll period and jitter, cycles (poll mode only).
    pub poll: Option<(u64, u64)>,
    /// The promised least interval between sends, cycles.
    pub min_interval: Option<u64>,
    /// The promised burst.
    pub burst: Option<u64>,
    /// The bound, term by term.
    pub bound: Bound,
}

/// The model of a manifest channel, with durations converted at `tsc_khz`.
pub fn model(c: &ManifestChannel, tsc_khz: u64) -> Channel {
    let data = usize::try_from(c.size.value).unwrap_or(usize::MAX);
    let ring = quest_channel::wire::ring_size(data) as u64;
    let most = quest_channel::wire::max_message_len(data) as u64;
    let max_message = c.max_message.as_ref().map_or(most, |m| m.value.min(most));
    let cycles = |d: &Option<Spanned<u64>>| d.as_ref().map(|d| cycles_of_ns(d.value, tsc_khz));
    let detection = match c.reader_mode.value {
        ReaderMode::Spin => Detection::Spin,
        ReaderMode::Doorbell => Detection::Doorbell,
        ReaderMode::Poll => Detection::Poll {
            period: cycles(&c.poll_period).unwrap_or(0),
            jitter: cycles(&c.poll_jitter).unwrap_or(0),
        },
    };
    Channel {
        ring,
        max_message,
        detection,
        min_interval: cycles(&c.min_interval),
        reader_work: cycles(&c.reader_work).unwrap_or(0),
        burst: c.burst.as_ref().map(|b| u64::from(b.value)),
    }
}

/// Every channel's bound under `profile`.
pub fn analyse(m: &Manifest, profile: &Profile) -> Vec<ChannelBound> {
    let khz = profile.platform.tsc_khz;
    m.channels
        .iter()
        .map(|c| {
            let ch = model(c, khz);
            ChannelBound {
                name: c.name.value.clone(),
                writer: c.writer.value.clone(),
                reader: c.reader.value.clone(),
                mode: match c.reader_mode.value {
                    ReaderMode::Spin => "spin",
                    ReaderMode::Poll => "poll",
                    ReaderMode::Doorbell => "doorbell",
                },
                ring: ch.ring,
                max_message: ch.max_message,
                poll: match ch.detection {
                    Detection::Poll { period, jitter } => Some((period, jitter)),
                    _ => None,
                },
                min_interval: ch.min_interval,
                burst: ch.burst,
                bound: bound(&ch, &profile.costs(&c.name.value)),
            }
        })
        .collect()
}
