//! `quest-build run --check-bounds`: every message's latency, as each channel's reader
//! recorded it on its own clock (the monitor reports the records at the end), against the
//! channel's bound computed from the same boot's calibration.

use super::ChannelBound;
use quest_abi::latency::{bucket_floor, Latency, BUCKETS};
use serde::Serialize;
use std::fmt::Write as _;

/// One channel's verdict.
#[derive(Clone, Debug, Serialize)]
pub struct ChannelCheck {
    /// The channel.
    pub name: String,
    /// Its reader mode.
    pub mode: &'static str,
    /// The bound, cycles.
    pub bound: u64,
    /// Messages its reader received.
    pub messages: u64,
    /// The worst latency observed, cycles.
    pub worst: u64,
    /// The median latency, cycles: the lower edge of the bucket holding it.
    pub median_at_least: u64,
    /// Messages stamped in the reader's future (clock offset or a lying writer).
    pub early: u64,
    /// `worst / bound`.
    pub ratio: f64,
    /// Whether every message was within the bound.
    pub held: bool,
    /// Messages by significant bits of their latency (`[i]`: from 2^(i-1) cycles).
    pub histogram: Vec<u64>,
}

/// The whole run's verdict.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// Per channel, manifest order (channels whose reader recorded nothing are left out).
    pub channels: Vec<ChannelCheck>,
    /// Channels the manifest has but no reader reported.
    pub unreported: Vec<String>,
}

/// Checks what each reader observed against its channel's bound.
pub fn check(bounds: &[ChannelBound], observed: &[(String, Latency)]) -> Check {
    let mut channels = Vec::new();
    let mut unreported = Vec::new();
    for b in bounds {
        let Some((_, l)) = observed.iter().find(|(name, _)| *name == b.name) else {
            unreported.push(b.name.clone());
            continue;
        };
        let half = l.messages.div_ceil(2);
        let mut seen = 0u64;
        let median_bucket = l
            .buckets
            .iter()
            .position(|&n| {
                seen += n;
                seen >= half && half > 0
            })
            .unwrap_or(0);
        let bound = b.bound.total;
        channels.push(ChannelCheck {
            name: b.name.clone(),
            mode: b.mode,
            bound,
            messages: l.messages,
            worst: l.worst,
            median_at_least: bucket_floor(median_bucket),
            early: l.early,
            ratio: if bound == 0 {
                f64::INFINITY
            } else {
                l.worst as f64 / bound as f64
            },
            held: l.worst <= bound,
            histogram: l.buckets.to_vec(),
        });
    }
    Check {
        channels,
        unreported,
    }
}

impl Check {
    /// Whether every message on every channel was within its bound.
    pub fn held(&self) -> bool {
        self.channels.iter().all(|c| c.held)
    }

    /// Messages checked.
    pub fn messages(&self) -> u64 {
        self.channels.iter().map(|c| c.messages).sum()
    }

    /// The one-line verdict: `bounds: <m> messages on <k> channels, worst observed/bound
    /// <r>, held` or `... VIOLATED on <channel>[, <channel>...]`.
    pub fn line(&self) -> String {
        let worst = self.channels.iter().map(|c| c.ratio).fold(0.0f64, f64::max);
        let violated: Vec<&str> = self
            .channels
            .iter()
            .filter(|c| !c.held)
            .map(|c| c.name.as_str())
            .collect();
        let verdict = if violated.is_empty() {
            "held".to_owned()
        } else {
            format!("VIOLATED on {}", violated.join(", "))
        };
        format!(
            "bounds: {} messages on {} channels, worst observed/bound {worst:.2}, {verdict}",
            self.messages(),
            self.channels.len()
        )
    }

    /// Per channel: the numbers and a log2 histogram, one bar per bucket that has
    /// messages.
    pub fn report(&self) -> String {
        let mut s = String::new();
        for c in &self.channels {
            let _ = writeln!(
                s,
                "channel '{}' ({}): {} messages, median >= {} cycles, worst {} of bound {} cycles ({:.0}%){}{}",
                c.name,
                c.mode,
                c.messages,
                c.median_at_least,
                c.worst,
                c.bound,
                c.ratio * 100.0,
                if c.early > 0 { format!(", {} stamped early", c.early) } else { String::new() },
                if c.held { "" } else { "  VIOLATED" },
            );
            let most = c.histogram.iter().copied().max().unwrap_or(0).max(1);
            for (i, &n) in c.histogram.iter().enumerate().filter(|(_, &n)| n > 0) {
                let upper = if i + 1 < BUCKETS {
                    bucket_floor(i + 1)
                } else {
                    u64::MAX
                };
                let bar = "#".repeat(((n * 40).div_ceil(most)) as usize);
                let mark = if bucket_floor(i) > c.bound {
                    " > bound"
                } else {
                    ""
                };
                let _ = writeln!(
                    s,
                    "  {:>10} .. {:<10} {:>9}  {bar}{mark}",
                    bucket_floor(i),
                    upper,
                    n
                );
            }
        }
        for name in &self.unreported {
            let _ = writeln!(s, "channel '{name}': its reader recorded nothing");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounds::formula::{bound, Channel, Costs, Detection};
    use quest_abi::latency::bucket;

    fn bound_of(name: &str, total_hint: u64) -> ChannelBound {
        let k = Costs {
            line_transfer: total_hint,
            send_fixed: 0,
            send_per_kib: 0,
            recv_fixed: 0,
            recv_per_kib: 0,
            vm_exit_entry: 0,
            ipi: 0,
            wake: 0,
        };
        let c = Channel {
            ring: 4096 - 128,
            max_message: 0,
            detection: Detection::Spin,
            min_interval: None,
            burst: Some(1),
            reader_work: 0,
        };
        ChannelBound {
            name: name.into(),
            writer: "w".into(),
            reader: "r".into(),
            mode: "spin",
            ring: c.ring,
            max_message: 0,
            poll: None,
            min_interval: None,
            burst: Some(1),
            bound: bound(&c, &k),
        }
    }

    fn observed(latencies: &[u64]) -> Latency {
        let mut buckets = [0u64; BUCKETS];
        for &l in latencies {
            buckets[bucket(l)] += 1;
        }
        Latency {
            messages: latencies.len() as u64,
            worst: latencies.iter().copied().max().unwrap_or(0),
            total: latencies.iter().sum(),
            early: 0,
            buckets,
        }
    }

    #[test]
    fn one_message_over_its_bound_is_a_violation() {
        let a = bound_of("a", 100);
        let b = bound_of("b", 100);
        let (ta, tb) = (a.bound.total, b.bound.total);
        let ok = check(
            &[a.clone(), b.clone()],
            &[
                ("a".into(), observed(&[1, 2, ta])),
                ("b".into(), observed(&[tb / 2])),
            ],
        );
        assert!(ok.held());
        assert_eq!(
            ok.line(),
            "bounds: 4 messages on 2 channels, worst observed/bound 1.00, held"
        );
        let bad = check(
            &[a, b],
            &[
                ("a".into(), observed(&[1, ta + 1])),
                ("b".into(), observed(&[])),
            ],
        );
        assert!(!bad.held());
        assert!(bad.line().ends_with("VIOLATED on a"), "{}", bad.line());
        assert!(bad.report().contains("VIOLATED"));
    }

    #[test]
    fn a_channel_nobody_read_is_reported_not_counted() {
        let c = check(&[bound_of("quiet", 10)], &[]);
        assert!(c.held());
        assert_eq!(c.unreported, ["quiet"]);
        assert!(c.report().contains("recorded nothing"));
    }
}
