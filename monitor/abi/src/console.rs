//! The monitor's console lines that the host reads: one [`Record`] type, printed by the
//! monitor through [`core::fmt::Display`] and parsed by `quest-build` (run verdict, exit
//! status, benchmark) with [`Record::parse`], side by side so they cannot drift apart.
//!
//! Every monitor line starts with `quest: ` ([`PREFIX`]); sandbox output is prefixed
//! `[name] `, so a sandbox cannot forge a record. Both sides are allocation-free: the
//! printer writes through `core::fmt`, the parser borrows from the line.

use crate::calibration::{Cost, PairCalibration};
use crate::latency::{Latency, BUCKETS};
use crate::table::MAX_VCPUS_PER_SANDBOX;
use core::fmt;

/// Start of every monitor line.
pub const PREFIX: &str = "quest: ";

/// How a sandbox ended, as its summary line says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SandboxEnd {
    /// It exited with this status.
    Exited(i32),
    /// It was halted after a fault.
    Halted,
    /// It was never started: a device it needs (`if_absent = "keep-stopped"`) is not
    /// on the machine (the boot log names it).
    NotStarted,
    /// It was still running.
    Running,
}

/// VM exits by reason: the monitor prints counters it holds (`Counts`), the parser hands
/// back the text it read (`Text`, `name n` pairs separated by `, `).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reasons<'a> {
    /// `(reason name, count)` pairs; zero counts are left out when printed.
    Counts(&'a [(&'a str, u64)]),
    /// As parsed.
    Text(&'a str),
}

impl<'a> Reasons<'a> {
    /// Every `(reason, count)` with a non-zero count, in printed order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, u64)> + 'a {
        let (counts, text): (&'a [(&'a str, u64)], &'a str) = match *self {
            Self::Counts(c) => (c, ""),
            Self::Text(t) => (&[], t),
        };
        let parsed = text.split(", ").filter(|p| !p.is_empty()).filter_map(|p| {
            let (name, n) = p.rsplit_once(' ')?;
            Some((name, n.parse().ok()?))
        });
        counts
            .iter()
            .copied()
            .filter(|&(_, n)| n != 0)
            .chain(parsed)
    }
}

/// One sandbox's line of the summary block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SandboxSummary<'a> {
    /// Sandbox name.
    pub name: &'a str,
    /// How it ended.
    pub end: SandboxEnd,
    /// Faults it took.
    pub faults: u64,
    /// Times it was launched (1 + restarts).
    pub launches: u64,
    /// VM exits of all reasons.
    pub exits: u64,
    /// VM exits by reason.
    pub reasons: Reasons<'a>,
    /// Doorbells it rang.
    pub doorbells: u64,
    /// `WAIT` hypercalls it made.
    pub waits: u64,
    /// Of those, the ones that slept.
    pub slept: u64,
}

/// The cores of a sandbox's vCPUs, vCPU order, as a migration record prints them
/// (`[1, 2]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreList {
    cores: [u32; MAX_VCPUS_PER_SANDBOX],
    len: usize,
}

impl CoreList {
    /// The cores of `cores`; `None` for more than [`MAX_VCPUS_PER_SANDBOX`].
    pub fn new(cores: impl IntoIterator<Item = u32>) -> Option<Self> {
        let mut list = Self {
            cores: [0; MAX_VCPUS_PER_SANDBOX],
            len: 0,
        };
        for c in cores {
            *list.cores.get_mut(list.len)? = c;
            list.len += 1;
        }
        Some(list)
    }

    /// The cores.
    pub fn as_slice(&self) -> &[u32] {
        &self.cores[..self.len]
    }

    fn parse(text: &str) -> Option<Self> {
        let inner = text.strip_prefix('[')?.strip_suffix(']')?;
        let mut list = Self::new([])?;
        for item in inner.split(", ").filter(|i| !i.is_empty()) {
            *list.cores.get_mut(list.len)? = item.parse().ok()?;
            list.len += 1;
        }
        Some(list)
    }
}

impl fmt::Display for CoreList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, c) in self.as_slice().iter().enumerate() {
            write!(f, "{}{c}", if i == 0 { "" } else { ", " })?;
        }
        f.write_str("]")
    }
}

/// What one migration did ([`Record::Migrated`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Migrated<'a> {
    /// Sandbox name.
    pub sandbox: &'a str,
    /// The cores it ran on.
    pub from_cores: CoreList,
    /// The cores it runs on now.
    pub to_cores: CoreList,
    /// Host-physical base of its RAM before.
    pub from_memory: u64,
    /// ... and after (the same for a core-only migration).
    pub to_memory: u64,
    /// Pre-copy rounds (0: core-only, or stop-and-copy).
    pub rounds: u64,
    /// 4 KiB pages copied while it was stopped.
    pub pages: u64,
    /// TSC cycles from the stop request until its last vCPU entered the guest again on
    /// the destination, measured there.
    pub downtime: u64,
}

/// A monitor console line the host reads.
// A record is built, printed (or parsed) and dropped one line at a time; the latency
// variant's 65 histogram buckets make it large, which costs nothing here.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// `quest: TSC <kHz> kHz (<source>)`: the TSC frequency and how it was found.
    Tsc {
        /// Frequency in kHz.
        khz: u64,
        /// How it was measured.
        source: &'a str,
    },
    /// `quest: all sandboxes running after <N> TSC cycles`: boot cost, from monitor entry
    /// until every vCPU made its first VM entry.
    Running {
        /// TSC cycles.
        cycles: u64,
    },
    /// `quest: boot cost is <R> passes over all sandbox memory (<MiB> MiB in <P> TSC
    /// cycles per pass)`: the boot cost against one pass over sandbox memory, as the
    /// monitor measured it while zeroing.
    BootRatio {
        /// Boot cost in passes, in hundredths ([`Record::boot_ratio`]).
        hundredths: u64,
        /// Sandbox memory in MiB.
        mib: u64,
        /// TSC cycles of one pass over it.
        pass_cycles: u64,
    },
    /// `quest: sandbox '<name>' launched at TSC <T>` (absolute TSC, which guests share).
    Launched {
        /// Sandbox name.
        sandbox: &'a str,
        /// TSC at its first vCPU's launch.
        tsc: u64,
    },
    /// `quest: boot cost of '<name>': launch to first entry of its <k> vCPUs in <M> TSC
    /// cycles`.
    SandboxBoot {
        /// Sandbox name.
        sandbox: &'a str,
        /// Its vCPUs.
        vcpus: u64,
        /// TSC cycles from its launch to its last vCPU's first entry.
        cycles: u64,
    },
    /// `quest: summary:`: the summary block follows.
    SummaryStart,
    /// `quest:   '<name>': exited <n>, faults <f>, launches <l>, exits <e>[: <reason n>,
    /// ...]; doorbells <d>, waits <w> (slept <s>)`.
    Summary(SandboxSummary<'a>),
    /// `quest: all sandboxes exited 0`: the system succeeded.
    Passed,
    /// `quest: not every sandbox exited 0`.
    NotPassed,
    /// `quest: system failed: <why>`.
    SystemFailed(&'a str),
    /// `quest: calibration: copy cold <m> (max <x>), warm <m> (max <x>) cycles per KiB`.
    CalibrationCopy {
        /// Source and destination not cached.
        cold: Cost,
        /// Both cached.
        warm: Cost,
    },
    /// `quest: calibration: <what> <m> (max <x>) cycles`.
    CalibrationCost {
        /// Which constant.
        what: Constant,
        /// Median and maximum, TSC cycles.
        cost: Cost,
    },
    /// `quest: calibration: channel '<name>' cores <w>-><r>: line round trip <m> (max
    /// <x>) cycles, tsc offset <o> +- <u> cycles`: `<w>-><r>` is the core pair with the
    /// worst round trip; the offset (reader minus writer) covers every pair.
    CalibrationChannel {
        /// Channel name.
        channel: &'a str,
        /// Its worst core pair and their offset.
        pair: PairCalibration,
    },
    /// `quest: calibration: channel send <m> (max <x>) + <m> (max <x>) per KiB, recv <m>
    /// (max <x>) + <m> (max <x>) per KiB cycles`: the channel library's own `send` and
    /// `recv` on one core, cold: the cost of an empty message, and per KiB of record.
    CalibrationChannelOps {
        /// `send` of an empty message.
        send_fixed: Cost,
        /// `send`'s cost per KiB of record.
        send_per_kib: Cost,
        /// `recv` of an empty message.
        recv_fixed: Cost,
        /// `recv`'s cost per KiB of record.
        recv_per_kib: Cost,
    },
    /// `quest: latency '<channel>': <n> messages, worst <w>, total <t>, early <e> cycles;
    /// buckets <i>:<count>,...` (or `buckets none`): what the channel's reader recorded
    /// (`crate::latency`), printed with the summary.
    ChannelLatency {
        /// Channel name.
        channel: &'a str,
        /// The reader's statistics.
        latency: Latency,
    },
    /// `quest: migrated '<sandbox>' cores [..] -> [..], memory <from> -> <to>, <n>
    /// pre-copy rounds, <p> pages, downtime <d> cycles` (addresses in hex).
    Migrated(Migrated<'a>),
    /// `quest: migration of '<sandbox>' asked by '<by>' refused: <reason>` (a
    /// `quest_abi::hypercall::MigrateRefusal`'s words).
    MigrationRefused {
        /// The sandbox to migrate.
        sandbox: &'a str,
        /// Who asked.
        by: &'a str,
        /// Why not.
        reason: &'a str,
    },
    /// `quest: migration of '<sandbox>' abandoned: <reason>, <n> pre-copy rounds, <p>
    /// pages`: an accepted migration given up before the sandbox stopped (it runs where
    /// it was, or its `on_fault` applied); the destination region was scrubbed.
    MigrationAbandoned {
        /// The sandbox.
        sandbox: &'a str,
        /// Why (no comma).
        reason: &'a str,
        /// Pre-copy rounds done.
        rounds: u32,
        /// Pages copied (now scrubbed).
        pages: u64,
    },
    /// `quest: migrations of '<sandbox>': <n>, worst downtime <d> cycles`, with the
    /// summary, for each sandbox that may migrate.
    Migrations {
        /// Sandbox name.
        sandbox: &'a str,
        /// Migrations done.
        count: u64,
        /// The longest downtime among them, TSC cycles.
        worst_downtime: u64,
    },
    /// `quest: standby region of '<sandbox>' at <region>: <z> scrubs verified zero, <w>
    /// found written`, with the summary, for each sandbox whose standby placement has
    /// its own RAM: of the scrubs of the region it left (after a move or an abandoned
    /// pre-copy), how many the monitor found still all zero when it checked them (right
    /// before the next pre-copy or stop-and-copy into that region, and at summary time for
    /// the region it is standing by then), and how many it found written. `region` is the
    /// standby region at summary time (hex).
    StandbyScrubs {
        /// Sandbox name.
        sandbox: &'a str,
        /// Host-physical address of its standby region at summary time.
        region: u64,
        /// Scrubs found all zero when checked.
        zero: u64,
        /// Scrubs found written ([`Record::StandbyWritten`]).
        written: u64,
    },
    /// `quest: standby region of '<sandbox>' at <region>: written after its scrub, first
    /// non-zero byte at offset <offset>` (hex): a check found data in a region nobody may
    /// use (a stray write, or a skipped or short scrub); the monitor zeroes it again.
    StandbyWritten {
        /// Sandbox name.
        sandbox: &'a str,
        /// Host-physical address of the region.
        region: u64,
        /// Offset of its first non-zero byte.
        offset: u64,
    },
    /// `quest: calibration: done in <c> TSC cycles (<t> trials each, <p> core pairs)`.
    CalibrationDone {
        /// TSC cycles the calibration took.
        cycles: u64,
        /// Trials per measurement.
        trials: u64,
        /// Distinct core pairs measured.
        pairs: u64,
    },
}

/// A platform constant with a [`Record::CalibrationCost`] line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Constant {
    /// `vm exit+entry`: a guest `cpuid` exit and the entry back.
    VmExitEntry,
    /// `ipi delivery`: an NMI IPI until the target's handler ran, seen on the sender.
    Ipi,
    /// `wait wake-up`: a core halted as in `WAIT`, from the doorbell NMI to its first
    /// store after waking, seen on the sender.
    Wake,
}

impl Constant {
    /// Every constant, in printed order.
    pub const ALL: [Self; 3] = [Self::VmExitEntry, Self::Ipi, Self::Wake];

    /// How the line names it.
    pub fn name(self) -> &'static str {
        match self {
            Self::VmExitEntry => "vm exit+entry",
            Self::Ipi => "ipi delivery",
            Self::Wake => "wait wake-up",
        }
    }
}

const CALIBRATION: &str = "calibration: ";

const PASSED: &str = "all sandboxes exited 0";
const NOT_PASSED: &str = "not every sandbox exited 0";
const STANDBY: &str = "standby region of '";

impl Record<'_> {
    /// The [`Record::BootRatio`] of a boot that cost `boot_cycles` when one pass over the
    /// `mib` MiB of sandbox memory takes `pass_cycles` (ratio 0 for a zero pass).
    pub fn boot_ratio(boot_cycles: u64, mib: u64, pass_cycles: u64) -> Self {
        let hundredths = (u128::from(boot_cycles) * 100)
            .checked_div(u128::from(pass_cycles))
            .map_or(0, |r| u64::try_from(r).unwrap_or(u64::MAX));
        Self::BootRatio {
            hundredths,
            mib,
            pass_cycles,
        }
    }
}

impl fmt::Display for Record<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(PREFIX)?;
        match *self {
            Self::Tsc { khz, source } => write!(f, "TSC {khz} kHz ({source})"),
            Self::Running { cycles } => {
                write!(f, "all sandboxes running after {cycles} TSC cycles")
            }
            Self::BootRatio {
                hundredths: r,
                mib,
                pass_cycles,
            } => {
                write!(
                    f,
                    "boot cost is {}.{:02} passes over all sandbox memory ({mib} MiB in {pass_cycles} TSC cycles per pass)",
                    r / 100,
                    r % 100
                )
            }
            Self::Launched { sandbox, tsc } => {
                write!(f, "sandbox '{sandbox}' launched at TSC {tsc}")
            }
            Self::SandboxBoot {
                sandbox,
                vcpus,
                cycles,
            } => write!(
                f,
                "boot cost of '{sandbox}': launch to first entry of its {vcpus} vCPUs in {cycles} TSC cycles"
            ),
            Self::SummaryStart => f.write_str("summary:"),
            Self::Summary(s) => {
                write!(f, "  '{}': ", s.name)?;
                match s.end {
                    SandboxEnd::Exited(code) => write!(f, "exited {code}")?,
                    SandboxEnd::Halted => f.write_str("halted")?,
                    SandboxEnd::NotStarted => f.write_str("not started")?,
                    SandboxEnd::Running => f.write_str("running")?,
                }
                write!(
                    f,
                    ", faults {}, launches {}, exits {}",
                    s.faults, s.launches, s.exits
                )?;
                let mut sep = ':';
                for (name, n) in s.reasons.iter() {
                    write!(f, "{sep} {name} {n}")?;
                    sep = ',';
                }
                write!(
                    f,
                    "; doorbells {}, waits {} (slept {})",
                    s.doorbells, s.waits, s.slept
                )
            }
            Self::Passed => f.write_str(PASSED),
            Self::NotPassed => f.write_str(NOT_PASSED),
            Self::SystemFailed(why) => write!(f, "system failed: {why}"),
            Self::CalibrationCopy { cold, warm } => write!(
                f,
                "{CALIBRATION}copy cold {} (max {}), warm {} (max {}) cycles per KiB",
                cold.median, cold.max, warm.median, warm.max
            ),
            Self::CalibrationCost { what, cost } => write!(
                f,
                "{CALIBRATION}{} {} (max {}) cycles",
                what.name(),
                cost.median,
                cost.max
            ),
            Self::CalibrationChannel { channel, pair: p } => write!(
                f,
                "{CALIBRATION}channel '{channel}' cores {}->{}: line round trip {} (max {}) cycles, tsc offset {} +- {} cycles",
                p.writer_core, p.reader_core, p.line.median, p.line.max, p.tsc_offset, p.uncertainty
            ),
            Self::CalibrationChannelOps {
                send_fixed: sf,
                send_per_kib: sk,
                recv_fixed: rf,
                recv_per_kib: rk,
            } => write!(
                f,
                "{CALIBRATION}channel send {} (max {}) + {} (max {}) per KiB, recv {} (max {}) + {} (max {}) per KiB cycles",
                sf.median, sf.max, sk.median, sk.max, rf.median, rf.max, rk.median, rk.max
            ),
            Self::ChannelLatency { channel, latency: l } => {
                write!(
                    f,
                    "latency '{channel}': {} messages, worst {}, total {}, early {} cycles; buckets ",
                    l.messages, l.worst, l.total, l.early
                )?;
                let mut any = false;
                for (i, n) in l.buckets.iter().enumerate().filter(|(_, &n)| n > 0) {
                    write!(f, "{}{i}:{n}", if any { "," } else { "" })?;
                    any = true;
                }
                if !any {
                    f.write_str("none")?;
                }
                Ok(())
            }
            Self::Migrated(m) => write!(
                f,
                "migrated '{}' cores {} -> {}, memory {:#x} -> {:#x}, {} pre-copy rounds, {} pages, downtime {} cycles",
                m.sandbox, m.from_cores, m.to_cores, m.from_memory, m.to_memory, m.rounds, m.pages, m.downtime
            ),
            Self::MigrationRefused {
                sandbox,
                by,
                reason,
            } => write!(f, "migration of '{sandbox}' asked by '{by}' refused: {reason}"),
            Self::MigrationAbandoned {
                sandbox,
                reason,
                rounds,
                pages,
            } => write!(
                f,
                "migration of '{sandbox}' abandoned: {reason}, {rounds} pre-copy rounds, {pages} pages"
            ),
            Self::Migrations {
                sandbox,
                count,
                worst_downtime,
            } => write!(
                f,
                "migrations of '{sandbox}': {count}, worst downtime {worst_downtime} cycles"
            ),
            Self::StandbyScrubs {
                sandbox,
                region,
                zero,
                written,
            } => write!(
                f,
                "{STANDBY}{sandbox}' at {region:#x}: {zero} scrubs verified zero, {written} found written"
            ),
            Self::StandbyWritten {
                sandbox,
                region,
                offset,
            } => write!(
                f,
                "{STANDBY}{sandbox}' at {region:#x}: written after its scrub, first non-zero byte at offset {offset:#x}"
            ),
            Self::CalibrationDone {
                cycles,
                trials,
                pairs,
            } => write!(
                f,
                "{CALIBRATION}done in {cycles} TSC cycles ({trials} trials each, {pairs} core pairs)"
            ),
        }
    }
}

/// `text` split at the first `sep`, the left part parsed as a number.
fn num_before<'a, T: core::str::FromStr>(text: &'a str, sep: &str) -> Option<(T, &'a str)> {
    let (n, rest) = text.split_once(sep)?;
    Some((n.parse().ok()?, rest))
}

impl<'a> Record<'a> {
    /// The record `line` holds (without its line end; a trailing `\r` is ignored), or
    /// `None` for any other line, including every sandbox line.
    pub fn parse(line: &'a str) -> Option<Self> {
        let l = line.trim_end_matches('\r').strip_prefix(PREFIX)?;
        if let Some(rest) = l.strip_prefix("TSC ") {
            let (khz, rest) = num_before(rest, " kHz (")?;
            let source = rest.strip_suffix(')')?;
            return Some(Self::Tsc { khz, source });
        }
        if let Some(rest) = l.strip_prefix("all sandboxes running after ") {
            let cycles = rest.strip_suffix(" TSC cycles")?.parse().ok()?;
            return Some(Self::Running { cycles });
        }
        if let Some(rest) = l.strip_prefix("boot cost is ") {
            let (whole, rest) = num_before::<u64>(rest, ".")?;
            let (frac, rest) = rest.split_at_checked(2)?;
            let frac: u64 = frac.parse().ok()?;
            let rest = rest.strip_prefix(" passes over all sandbox memory (")?;
            let (mib, rest) = num_before(rest, " MiB in ")?;
            let (pass_cycles, rest) = num_before(rest, " TSC cycles per pass)")?;
            if !rest.is_empty() {
                return None;
            }
            return Some(Self::BootRatio {
                hundredths: whole.checked_mul(100)?.checked_add(frac)?,
                mib,
                pass_cycles,
            });
        }
        if let Some(rest) = l.strip_prefix("sandbox '") {
            let (sandbox, rest) = rest.split_once("' launched at TSC ")?;
            return Some(Self::Launched {
                sandbox,
                tsc: rest.parse().ok()?,
            });
        }
        if let Some(rest) = l.strip_prefix("boot cost of '") {
            let (sandbox, rest) = rest.split_once("': launch to first entry of its ")?;
            let (vcpus, rest) = num_before(rest, " vCPUs in ")?;
            let cycles = rest.strip_suffix(" TSC cycles")?.parse().ok()?;
            return Some(Self::SandboxBoot {
                sandbox,
                vcpus,
                cycles,
            });
        }
        if let Some(rest) = l.strip_prefix("  '") {
            return Self::parse_summary(rest).map(Self::Summary);
        }
        if let Some(rest) = l.strip_prefix(CALIBRATION) {
            return Self::parse_calibration(rest);
        }
        if let Some(rest) = l.strip_prefix("latency '") {
            return Self::parse_latency(rest);
        }
        if let Some(rest) = l.strip_prefix("migrated '") {
            return Self::parse_migrated(rest).map(Self::Migrated);
        }
        if let Some(rest) = l.strip_prefix("migration of '") {
            if let Some((sandbox, rest)) = rest.split_once("' abandoned: ") {
                let (rest, pages) = rest.rsplit_once(", ")?;
                let (reason, rounds) = rest.rsplit_once(", ")?;
                return Some(Self::MigrationAbandoned {
                    sandbox,
                    reason,
                    rounds: rounds.strip_suffix(" pre-copy rounds")?.parse().ok()?,
                    pages: pages.strip_suffix(" pages")?.parse().ok()?,
                });
            }
            let (sandbox, rest) = rest.split_once("' asked by '")?;
            let (by, reason) = rest.split_once("' refused: ")?;
            return Some(Self::MigrationRefused {
                sandbox,
                by,
                reason,
            });
        }
        if let Some(rest) = l.strip_prefix("migrations of '") {
            let (sandbox, rest) = rest.split_once("': ")?;
            let (count, rest) = num_before(rest, ", worst downtime ")?;
            let worst_downtime = rest.strip_suffix(" cycles")?.parse().ok()?;
            return Some(Self::Migrations {
                sandbox,
                count,
                worst_downtime,
            });
        }
        if let Some(rest) = l.strip_prefix(STANDBY) {
            return Self::parse_standby(rest);
        }
        match l {
            "summary:" => Some(Self::SummaryStart),
            PASSED => Some(Self::Passed),
            NOT_PASSED => Some(Self::NotPassed),
            _ => l.strip_prefix("system failed: ").map(Self::SystemFailed),
        }
    }

    /// The rest of a `standby region of '` line.
    fn parse_standby(rest: &'a str) -> Option<Self> {
        let (sandbox, rest) = rest.split_once("' at 0x")?;
        let (region, rest) = rest.split_once(": ")?;
        let region = u64::from_str_radix(region, 16).ok()?;
        if let Some(offset) =
            rest.strip_prefix("written after its scrub, first non-zero byte at offset 0x")
        {
            return Some(Self::StandbyWritten {
                sandbox,
                region,
                offset: u64::from_str_radix(offset, 16).ok()?,
            });
        }
        let (zero, rest) = num_before(rest, " scrubs verified zero, ")?;
        let written = rest.strip_suffix(" found written")?.parse().ok()?;
        Some(Self::StandbyScrubs {
            sandbox,
            region,
            zero,
            written,
        })
    }

    fn parse_calibration(rest: &'a str) -> Option<Self> {
        /// `<median> (max <max>)` followed by `end`.
        fn cost<'b>(text: &'b str, end: &str) -> Option<(Cost, &'b str)> {
            let (median, rest) = num_before(text, " (max ")?;
            let (max, rest) = num_before(rest, end)?;
            Some((Cost { median, max }, rest))
        }
        if let Some(rest) = rest.strip_prefix("copy cold ") {
            let (cold, rest) = cost(rest, "), warm ")?;
            let (warm, rest) = cost(rest, ") cycles per KiB")?;
            return rest
                .is_empty()
                .then_some(Self::CalibrationCopy { cold, warm });
        }
        if let Some(rest) = rest.strip_prefix("channel '") {
            let (channel, rest) = rest.split_once("' cores ")?;
            let (writer_core, rest) = num_before(rest, "->")?;
            let (reader_core, rest) = num_before(rest, ": line round trip ")?;
            let (line, rest) = cost(rest, ") cycles, tsc offset ")?;
            let (tsc_offset, rest) = num_before(rest, " +- ")?;
            let uncertainty = rest.strip_suffix(" cycles")?.parse().ok()?;
            let pair = PairCalibration {
                writer_core,
                reader_core,
                line,
                tsc_offset,
                uncertainty,
            };
            return Some(Self::CalibrationChannel { channel, pair });
        }
        if let Some(rest) = rest.strip_prefix("channel send ") {
            let (send_fixed, rest) = cost(rest, ") + ")?;
            let (send_per_kib, rest) = cost(rest, ") per KiB, recv ")?;
            let (recv_fixed, rest) = cost(rest, ") + ")?;
            let (recv_per_kib, rest) = cost(rest, ") per KiB cycles")?;
            return rest.is_empty().then_some(Self::CalibrationChannelOps {
                send_fixed,
                send_per_kib,
                recv_fixed,
                recv_per_kib,
            });
        }
        if let Some(rest) = rest.strip_prefix("done in ") {
            let (cycles, rest) = num_before(rest, " TSC cycles (")?;
            let (trials, rest) = num_before(rest, " trials each, ")?;
            let pairs = rest.strip_suffix(" core pairs)")?.parse().ok()?;
            return Some(Self::CalibrationDone {
                cycles,
                trials,
                pairs,
            });
        }
        Constant::ALL.into_iter().find_map(|what| {
            let rest = rest.strip_prefix(what.name())?.strip_prefix(' ')?;
            let (cost, rest) = cost(rest, ") cycles")?;
            rest.is_empty()
                .then_some(Self::CalibrationCost { what, cost })
        })
    }

    fn parse_latency(rest: &'a str) -> Option<Self> {
        let (channel, rest) = rest.split_once("': ")?;
        let (messages, rest) = num_before(rest, " messages, worst ")?;
        let (worst, rest) = num_before(rest, ", total ")?;
        let (total, rest) = num_before(rest, ", early ")?;
        let (early, rest) = num_before(rest, " cycles; buckets ")?;
        let mut buckets = [0u64; BUCKETS];
        if rest != "none" {
            for item in rest.split(',') {
                let (i, n) = item.split_once(':')?;
                let i: usize = i.parse().ok()?;
                *buckets.get_mut(i)? = n.parse().ok()?;
            }
        }
        Some(Self::ChannelLatency {
            channel,
            latency: Latency {
                messages,
                worst,
                total,
                early,
                buckets,
            },
        })
    }

    fn parse_migrated(rest: &'a str) -> Option<Migrated<'a>> {
        fn hex(text: &str) -> Option<u64> {
            u64::from_str_radix(text.strip_prefix("0x")?, 16).ok()
        }
        let (sandbox, rest) = rest.split_once("' cores ")?;
        let (from, rest) = rest.split_once(" -> ")?;
        let (to, rest) = rest.split_once(", memory ")?;
        let (from_memory, rest) = rest.split_once(" -> ")?;
        let (to_memory, rest) = rest.split_once(", ")?;
        let (rounds, rest) = num_before(rest, " pre-copy rounds, ")?;
        let (pages, rest) = num_before(rest, " pages, downtime ")?;
        let downtime = rest.strip_suffix(" cycles")?.parse().ok()?;
        Some(Migrated {
            sandbox,
            from_cores: CoreList::parse(from)?,
            to_cores: CoreList::parse(to)?,
            from_memory: hex(from_memory)?,
            to_memory: hex(to_memory)?,
            rounds,
            pages,
            downtime,
        })
    }

    fn parse_summary(rest: &'a str) -> Option<SandboxSummary<'a>> {
        let (name, rest) = rest.split_once("': ")?;
        let (end, rest) = rest.split_once(", faults ")?;
        let end = match end {
            "halted" => SandboxEnd::Halted,
            "not started" => SandboxEnd::NotStarted,
            "running" => SandboxEnd::Running,
            _ => SandboxEnd::Exited(end.strip_prefix("exited ")?.parse().ok()?),
        };
        let (faults, rest) = num_before(rest, ", launches ")?;
        let (launches, rest) = num_before(rest, ", exits ")?;
        let (exits, rest) = rest.split_once([':', ';'])?;
        let (reasons, rest) = match rest.split_once("; ") {
            Some((reasons, rest)) => (reasons.trim_start(), rest),
            None => ("", rest.trim_start()),
        };
        let (doorbells, rest) = num_before(rest.strip_prefix("doorbells ")?, ", waits ")?;
        let (waits, rest) = num_before(rest, " (slept ")?;
        let slept = rest.strip_suffix(')')?.parse().ok()?;
        Some(SandboxSummary {
            name,
            end,
            faults,
            launches,
            exits: exits.parse().ok()?,
            reasons: Reasons::Text(reasons),
            doorbells,
            waits,
            slept,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use proptest::prelude::*;
    use std::string::ToString;
    use std::vec::Vec;

    /// Each record prints as its text, and the text parses back into the record.
    fn prints_and_parses_back<const N: usize>(cases: [(Record<'_>, &str); N]) {
        for (record, text) in cases {
            let printed = record.to_string();
            assert_eq!(printed, text);
            assert_eq!(Record::parse(&printed), Some(record), "{text}");
        }
    }

    /// None of `lines` parses as a record.
    fn not_records(lines: &[&str]) {
        for line in lines {
            assert_eq!(Record::parse(line), None, "{line:?}");
        }
    }

    #[test]
    fn migration_lines_print_and_parse_back() {
        let cores = |c: &[u32]| CoreList::new(c.iter().copied()).unwrap();
        let cases = [
            (
                Record::Migrated(Migrated {
                    sandbox: "mover",
                    from_cores: cores(&[1, 2]),
                    to_cores: cores(&[4, 3]),
                    from_memory: 0x2a0_0000,
                    to_memory: 0x2a0_0000,
                    rounds: 0,
                    pages: 0,
                    downtime: 18_211,
                }),
                "quest: migrated 'mover' cores [1, 2] -> [4, 3], memory 0x2a00000 -> 0x2a00000, 0 pre-copy rounds, 0 pages, downtime 18211 cycles",
            ),
            (
                Record::MigrationRefused {
                    sandbox: "mover",
                    by: "intruder",
                    reason: "not allowed",
                },
                "quest: migration of 'mover' asked by 'intruder' refused: not allowed",
            ),
            (
                Record::MigrationAbandoned {
                    sandbox: "mover",
                    reason: "pre-copy did not converge",
                    rounds: 8,
                    pages: 9_000,
                },
                "quest: migration of 'mover' abandoned: pre-copy did not converge, 8 pre-copy rounds, 9000 pages",
            ),
            (
                Record::Migrations {
                    sandbox: "mover",
                    count: 100,
                    worst_downtime: 20_000,
                },
                "quest: migrations of 'mover': 100, worst downtime 20000 cycles",
            ),
            (
                Record::StandbyScrubs {
                    sandbox: "mover",
                    region: 0x380_0000,
                    zero: 100,
                    written: 0,
                },
                "quest: standby region of 'mover' at 0x3800000: 100 scrubs verified zero, 0 found written",
            ),
            (
                Record::StandbyWritten {
                    sandbox: "mover",
                    region: 0x320_0000,
                    offset: 0x1_2340,
                },
                "quest: standby region of 'mover' at 0x3200000: written after its scrub, first non-zero byte at offset 0x12340",
            ),
        ];
        prints_and_parses_back(cases);
        not_records(&[
            "quest: migrated 'm' cores [1 -> [2], memory 0x0 -> 0x0, 0 pre-copy rounds, 0 pages, downtime 1 cycles",
            "quest: migrated 'm' cores [1] -> [x], memory 0x0 -> 0x0, 0 pre-copy rounds, 0 pages, downtime 1 cycles",
            "quest: migrated 'm' cores [1] -> [2], memory 10 -> 0x0, 0 pre-copy rounds, 0 pages, downtime 1 cycles",
            "quest: migrations of 'm': many, worst downtime 1 cycles",
            "quest: migration of 'm' abandoned: x, y pre-copy rounds, 1 pages",
            "quest: migration of 'm' abandoned: 1 pre-copy rounds, 1 pages",
            "quest: standby region of 'm' at 3800000: 1 scrubs verified zero, 0 found written",
            "quest: standby region of 'm' at 0x3800000: 1 scrubs verified zero",
            "quest: standby region of 'm' at 0x3800000: written after its scrub, first non-zero byte at offset 12",
        ]);
        assert!(CoreList::new(0..17).is_none());
    }

    #[test]
    fn lines_are_printed_as_before_and_parse_back() {
        let cases: [(Record<'_>, &str); 9] = [
            (
                Record::Tsc { khz: 9999, source: "measured against the PIT" },
                "quest: TSC 9999 kHz (measured against the PIT)",
            ),
            (
                Record::Running { cycles: 96_544_910 },
                "quest: all sandboxes running after 96544910 TSC cycles",
            ),
            (
                Record::Launched { sandbox: "alpha", tsc: 210_640_105 },
                "quest: sandbox 'alpha' launched at TSC 210640105",
            ),
            (
                Record::SandboxBoot { sandbox: "beta", vcpus: 1, cycles: 22175 },
                "quest: boot cost of 'beta': launch to first entry of its 1 vCPUs in 22175 TSC cycles",
            ),
            (Record::SummaryStart, "quest: summary:"),
            (Record::Passed, "quest: all sandboxes exited 0"),
            (Record::NotPassed, "quest: not every sandbox exited 0"),
            (
                Record::SystemFailed("1 of 2 sandboxes did not exit 0"),
                "quest: system failed: 1 of 2 sandboxes did not exit 0",
            ),
            (
                Record::boot_ratio(3_070_000, 104, 2_000_000),
                "quest: boot cost is 1.53 passes over all sandbox memory (104 MiB in 2000000 TSC cycles per pass)",
            ),
        ];
        prints_and_parses_back(cases);
    }

    #[test]
    fn latency_lines_round_trip() {
        let mut buckets = [0u64; BUCKETS];
        (buckets[0], buckets[11], buckets[64]) = (1, 7, 2);
        let latency = Latency {
            messages: 10,
            worst: u64::MAX,
            total: 5,
            early: 1,
            buckets,
        };
        let record = Record::ChannelLatency {
            channel: "bulk",
            latency,
        };
        let text = "quest: latency 'bulk': 10 messages, worst 18446744073709551615, total 5, early 1 cycles; buckets 0:1,11:7,64:2";
        assert_eq!(record.to_string(), text);
        assert_eq!(Record::parse(text), Some(record));
        let empty = Record::ChannelLatency {
            channel: "quiet",
            latency: Latency {
                messages: 0,
                worst: 0,
                total: 0,
                early: 0,
                buckets: [0; BUCKETS],
            },
        };
        assert_eq!(Record::parse(&empty.to_string()), Some(empty));
        not_records(&[
            "quest: latency 'bulk': 10 messages, worst 1, total 5, early 1 cycles; buckets 65:1",
            "quest: latency 'bulk': 10 messages, worst 1, total 5, early 1 cycles; buckets 3:x",
            "quest: latency 'bulk': 10 messages, worst 1, total 5 cycles; buckets none",
        ]);
    }

    #[test]
    fn calibration_lines_round_trip() {
        let c = |median, max| Cost { median, max };
        let cases: [(Record<'_>, &str); 7] = [
            (
                Record::CalibrationCopy { cold: c(900, 1400), warm: c(60, 75) },
                "quest: calibration: copy cold 900 (max 1400), warm 60 (max 75) cycles per KiB",
            ),
            (
                Record::CalibrationCost { what: Constant::VmExitEntry, cost: c(1100, 2500) },
                "quest: calibration: vm exit+entry 1100 (max 2500) cycles",
            ),
            (
                Record::CalibrationCost { what: Constant::Ipi, cost: c(2000, 2000) },
                "quest: calibration: ipi delivery 2000 (max 2000) cycles",
            ),
            (
                Record::CalibrationCost { what: Constant::Wake, cost: c(4000, 9000) },
                "quest: calibration: wait wake-up 4000 (max 9000) cycles",
            ),
            (
                Record::CalibrationChannel {
                    channel: "ping-to-pong",
                    pair: PairCalibration {
                        writer_core: 0,
                        reader_core: 1,
                        line: c(180, 420),
                        tsc_offset: -12,
                        uncertainty: 90,
                    },
                },
                "quest: calibration: channel 'ping-to-pong' cores 0->1: line round trip 180 (max 420) cycles, tsc offset -12 +- 90 cycles",
            ),
            (
                Record::CalibrationDone { cycles: 1_500_000, trials: 32, pairs: 1 },
                "quest: calibration: done in 1500000 TSC cycles (32 trials each, 1 core pairs)",
            ),
            (
                Record::CalibrationChannelOps {
                    send_fixed: c(40, 90),
                    send_per_kib: c(700, 800),
                    recv_fixed: c(50, 99),
                    recv_per_kib: c(900, 1000),
                },
                "quest: calibration: channel send 40 (max 90) + 700 (max 800) per KiB, recv 50 (max 99) + 900 (max 1000) per KiB cycles",
            ),
        ];
        prints_and_parses_back(cases);
        not_records(&[
            "quest: calibration: channel send 1 (max 2) + 3 (max 4) per KiB, recv 5 (max 6) + 7 (max 8) per KiB cycles.",
            "quest: calibration: vm exit+entry 1 (max x) cycles",
            "quest: calibration: teleport 1 (max 2) cycles",
            "quest: calibration: wait wake-up 1 (max 2) cycles ",
            "quest: calibration: channel 'a' cores 0->: line round trip 1 (max 2) cycles, tsc offset 0 +- 0 cycles",
        ]);
    }

    #[test]
    fn the_ratio_is_printed_in_hundredths() {
        let r = Record::boot_ratio(20_500_000, 8, 2_000_000);
        assert!(r
            .to_string()
            .starts_with("quest: boot cost is 10.25 passes"));
        assert_eq!(Record::parse(&r.to_string()), Some(r));
        let zero = Record::boot_ratio(1, 8, 0);
        assert!(matches!(zero, Record::BootRatio { hundredths: 0, .. }));
    }

    #[test]
    fn summary_lines_round_trip_with_and_without_reasons() {
        let counts = [("cpuid", 5), ("hlt", 0), ("io", 3)];
        let s = SandboxSummary {
            name: "a",
            end: SandboxEnd::Exited(-1),
            faults: 0,
            launches: 1,
            exits: 8,
            reasons: Reasons::Counts(&counts),
            doorbells: 2,
            waits: 3,
            slept: 1,
        };
        let text = Record::Summary(s).to_string();
        let parsed = Record::parse(&text);
        assert_eq!(
            text,
            "quest:   'a': exited -1, faults 0, launches 1, exits 8: cpuid 5, io 3; doorbells 2, waits 3 (slept 1)"
        );
        let Some(Record::Summary(p)) = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(
            p.reasons.iter().collect::<Vec<_>>(),
            [("cpuid", 5), ("io", 3)]
        );
        assert_eq!(
            (p.name, p.end, p.exits, p.doorbells, p.waits, p.slept),
            ("a", SandboxEnd::Exited(-1), 8, 2, 3, 1)
        );

        let none = SandboxSummary {
            end: SandboxEnd::Halted,
            exits: 0,
            reasons: Reasons::Counts(&[]),
            ..s
        };
        let text = Record::Summary(none).to_string();
        let parsed = Record::parse(&text);
        assert_eq!(
            text,
            "quest:   'a': halted, faults 0, launches 1, exits 0; doorbells 2, waits 3 (slept 1)"
        );
        let Some(Record::Summary(p)) = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(
            (p.end, p.exits, p.reasons.iter().count()),
            (SandboxEnd::Halted, 0, 0)
        );

        let never = SandboxSummary {
            end: SandboxEnd::NotStarted,
            launches: 0,
            ..none
        };
        let text = Record::Summary(never).to_string();
        assert_eq!(
            text,
            "quest:   'a': not started, faults 0, launches 0, exits 0; doorbells 2, waits 3 (slept 1)"
        );
        let Some(Record::Summary(p)) = Record::parse(&text) else {
            panic!("{text}")
        };
        assert_eq!((p.end, p.launches), (SandboxEnd::NotStarted, 0));
    }

    #[test]
    fn sandbox_output_and_other_lines_are_not_records() {
        not_records(&[
            "[evil] quest: all sandboxes exited 0",
            "quest: all sandboxes exited 0 ",
            "quest: all sandboxes running after lots TSC cycles",
            "quest: memory: monitor frame pool at 0x400000-0x2801000 (36868 KiB)",
            "quest:   'a': exited 7",
            "",
        ]);
        assert_eq!(
            Record::parse("quest: summary:\r"),
            Some(Record::SummaryStart)
        );
    }

    proptest! {
        #[test]
        fn parsing_never_panics(line in ".{0,120}") {
            let _ = Record::parse(&line);
        }

        #[test]
        fn calibration_numbers_round_trip(a in any::<u64>(), b in any::<u64>(), o in any::<i64>(),
                                          w in any::<u32>(), r in any::<u32>()) {
            let cost = Cost { median: a, max: b };
            let records = [
                Record::CalibrationCopy { cold: cost, warm: Cost { median: b, max: a } },
                Record::CalibrationCost { what: Constant::Wake, cost },
                Record::CalibrationChannel {
                    channel: "c",
                    pair: PairCalibration {
                        writer_core: w, reader_core: r, line: cost, tsc_offset: o, uncertainty: b,
                    },
                },
                Record::CalibrationDone { cycles: a, trials: b, pairs: a },
            ];
            for record in records {
                let text = record.to_string();
                prop_assert_eq!(Record::parse(&text), Some(record));
            }
        }

        #[test]
        fn numbers_round_trip(a in any::<u64>(), b in any::<u64>(), code in any::<i32>()) {
            let s = SandboxSummary {
                name: "x-1", end: SandboxEnd::Exited(code), faults: a, launches: b, exits: a,
                reasons: Reasons::Counts(&[]), doorbells: b, waits: a, slept: b,
            };
            for r in [Record::Running { cycles: a }, Record::Launched { sandbox: "s", tsc: b }, Record::Summary(s)] {
                let text = r.to_string();
                let back = Record::parse(&text);
                match (r, back) {
                    (Record::Summary(x), Some(Record::Summary(y))) => {
                        prop_assert_eq!((x.end, x.faults, x.launches, x.exits, x.doorbells, x.waits, x.slept),
                                        (y.end, y.faults, y.launches, y.exits, y.doorbells, y.waits, y.slept));
                    }
                    (r, back) => prop_assert_eq!(Some(r), back),
                }
            }
        }
    }
}
