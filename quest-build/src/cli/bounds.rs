//! `quest-build bounds MANIFEST [--platform FILE] [--json]`: the worst-case latency of one
//! message on each channel, term by term, and each migratable sandbox's worst-case
//! downtime with the admission condition, in cycles and microseconds.

use crate::bounds::formula::{micros, QueueLimit};
use crate::bounds::migration::{self, MigrationBound};
use crate::bounds::profile::Profile;
use crate::bounds::{analyse, ChannelBound, BOCHS_PROFILE};
use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// `quest-build bounds`.
#[derive(Debug, clap::Args)]
pub struct BoundsArgs {
    /// The manifest whose channels to bound.
    #[arg(value_name = "MANIFEST")]
    pub manifest: PathBuf,
    /// A platform profile (`quest-build run --calibrate` writes one); default: the
    /// profile shipped for Bochs.
    #[arg(long, value_name = "FILE")]
    pub platform: Option<PathBuf>,
    /// Print JSON instead of a report.
    #[arg(long)]
    pub json: bool,
}

/// Which profile was used, in words.
fn profile_of(args: &BoundsArgs) -> Result<(Profile, String), String> {
    match &args.platform {
        Some(path) => Profile::load(path)
            .map(|p| (p, path.display().to_string()))
            .map_err(|e| e.to_string()),
        None => Profile::parse(BOCHS_PROFILE)
            .map(|p| (p, "shipped profile for Bochs".to_owned()))
            .map_err(|e| format!("the shipped Bochs profile is invalid: {e}")),
    }
}

/// Prints every channel's bound. Status 1 if the manifest or the profile is invalid.
pub fn run(args: &BoundsArgs) -> ExitCode {
    let Some(m) = super::load_manifest(&args.manifest) else {
        return ExitCode::from(1);
    };
    let (profile, which) = match profile_of(args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let bounds = analyse(&m, &profile);
    let moves = migration::analyse(
        &m,
        &profile.cycles.migration_costs(),
        profile.platform.tsc_khz,
    );
    let analysis = Analysis {
        system: &m.system.name.value,
        profile: &profile,
        which: &which,
        bounds: &bounds,
        moves: &moves,
    };
    let text = if args.json {
        analysis.json()
    } else {
        analysis.report()
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    ExitCode::SUCCESS
}

/// Groups digits by thousands (`12 345`).
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// What `bounds` prints, before it is printed.
#[derive(Clone, Copy, Debug)]
pub struct Analysis<'a> {
    /// The system's name.
    pub system: &'a str,
    /// The platform profile used.
    pub profile: &'a Profile,
    /// Which profile, in words.
    pub which: &'a str,
    /// Every channel's bound.
    pub bounds: &'a [ChannelBound],
    /// Every migratable sandbox's downtime.
    pub moves: &'a [MigrationBound],
}

impl Analysis<'_> {
    /// The human report.
    pub fn report(&self) -> String {
        let Self {
            system,
            profile,
            which,
            bounds,
            moves,
        } = *self;
        let khz = profile.platform.tsc_khz;
        let mut s = String::new();
        let _ = writeln!(
        s,
        "bounds for '{system}': {} channel(s), {} migratable sandbox(es)\nplatform: {} ({which}), TSC {khz} kHz",
        bounds.len(),
        moves.len(),
        profile.platform.machine,
    );
        if which.starts_with("shipped") {
            let _ = writeln!(
                s,
                "  (measure this machine's constants with `quest-build run --calibrate MANIFEST`)"
            );
        }
        let us = |c: u64| micros(c, khz);
        for c in bounds {
            let b = &c.bound;
            let mode = match c.poll {
                Some((p, j)) => format!("poll every {} cycles (jitter {})", grouped(p), grouped(j)),
                None => c.mode.to_owned(),
            };
            let promise = match (c.min_interval, c.burst) {
                (Some(i), Some(n)) => {
                    format!("sends >= {} cycles apart, bursts <= {n}", grouped(i))
                }
                (Some(i), None) => format!("sends >= {} cycles apart", grouped(i)),
                (None, Some(n)) => format!("bursts <= {n}"),
                (None, None) => "no rate promised".to_owned(),
            };
            let _ = writeln!(
            s,
            "\nchannel '{}' {} -> {}: reader {mode}; ring {} B, messages <= {} B ({} fit); {promise}",
            c.name, c.writer, c.reader, c.ring, c.max_message, b.capacity,
        );
            let rows = [
                ("writer copy (send)", b.writer_copy),
                ("record lines to the reader", b.transfer),
                ("detection", b.detection),
                (
                    &*format!(
                        "queueing ({} ahead{})",
                        b.ahead,
                        match b.queue_limit {
                            QueueLimit::Promise => "",
                            QueueLimit::Ring => ", ring full",
                            QueueLimit::NoPromise => ", ring full: no promise",
                            QueueLimit::ReaderTooSlow => ", ring full: reader too slow",
                        }
                    ),
                    b.queueing,
                ),
                ("reader copy (recv)", b.reader_copy),
            ];
            for (what, cycles) in rows {
                let _ = writeln!(s, "  {what:<28} {:>14} cycles", grouped(cycles));
            }
            let _ = writeln!(
                s,
                "  {:<28} {:>14} cycles = {:.2} us",
                "bound",
                grouped(b.total),
                us(b.total)
            );
            if b.queue_limit == QueueLimit::ReaderTooSlow {
                let _ = writeln!(
                    s,
                    "  note: the reader takes longer per message than the writer's min_interval \
                 allows, so the queue can grow until the ring is full; raise min_interval \
                 or lower reader_work"
                );
            }
            let _ = writeln!(
                s,
                "  {:<28} {:>14} cycles = {:.2} us",
                "full-ring send wait",
                grouped(b.full_ring_wait),
                us(b.full_ring_wait)
            );
        }
        for m in moves {
            migration_report(&mut s, m, khz);
        }
        s
    }

    /// The JSON form (for tools).
    pub fn json(&self) -> String {
        let khz = self.profile.platform.tsc_khz;
        let channels: Vec<_> = self
            .bounds
            .iter()
            .map(|c| {
                let mut v = serde_json::to_value(c).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("bound_us".into(), micros(c.bound.total, khz).into());
                    o.insert(
                        "full_ring_wait_us".into(),
                        micros(c.bound.full_ring_wait, khz).into(),
                    );
                }
                v
            })
            .collect();
        let doc = serde_json::json!({
            "system": self.system,
            "platform": {
                "machine": self.profile.platform.machine,
                "source": self.which,
                "tsc_khz": khz,
            },
            "channels": channels,
            "migrations": self
            .moves
                .iter()
                .map(|m| {
                    let mut v = serde_json::to_value(m).unwrap_or_default();
                    if let Some(o) = v.as_object_mut() {
                        o.insert("worst_us".into(), micros(m.worst, khz).into());
                    }
                    v
                })
                .collect::<Vec<_>>(),
        });
        serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
    }
}

/// One migratable sandbox: its pause, term by term, and the admission condition.
fn migration_report(s: &mut String, m: &MigrationBound, khz: u64) {
    let us = |c: u64| micros(c, khz);
    let list = |c: &[u32]| {
        let items: Vec<String> = c.iter().map(u32::to_string).collect();
        format!("[{}]", items.join(", "))
    };
    let _ = writeln!(
        s,
        "\nsandbox '{}' migrates cores {} <-> {}, {} KiB of RAM {}; asked by {}",
        m.sandbox,
        list(&m.cores),
        list(&m.standby_cores),
        m.ram / 1024,
        if m.moves_memory {
            "moving between its two regions"
        } else {
            "staying in place"
        },
        if m.migrate_by.is_empty() {
            "nobody".to_owned()
        } else {
            m.migrate_by.join(", ")
        },
    );
    let rows = [
        ("stop and resume the vCPUs", m.park),
        ("least copy while stopped", m.least_copy),
        ("least pause (admission)", m.least),
        ("stop-and-copy of all RAM", m.stop_and_copy),
    ];
    for (what, cycles) in rows {
        let _ = writeln!(s, "  {what:<28} {:>14} cycles", grouped(cycles));
    }
    match m.budget {
        Some(b) => {
            let _ = writeln!(
                s,
                "  {:<28} {:>14} cycles = {:.2} us",
                "max_downtime",
                grouped(b),
                us(b)
            );
            if m.admissible {
                let _ = writeln!(
                    s,
                    "  {:<28} {:>14} cycles = {:.2} us\n  admission: accepted if the least pause \
                     fits in max_downtime ({} <= {}: holds), the\n  destination is free and no \
                     other migration of it runs; pre-copy stops the sandbox once\n  the dirty \
                     rest fits in max_downtime, or copies all RAM stopped if that fits",
                    "worst-case downtime",
                    grouped(m.worst),
                    us(m.worst),
                    grouped(m.least),
                    grouped(b),
                );
            } else {
                let _ = writeln!(
                    s,
                    "  admission: every request is refused (\"would exceed max_downtime\"): \
                     the least pause {} > max_downtime {}",
                    grouped(m.least),
                    grouped(b),
                );
            }
        }
        None => {
            let _ = writeln!(
                s,
                "  admission: no max_downtime, so every request is refused"
            );
        }
    }
}
