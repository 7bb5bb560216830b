//! Boot test of migration (`partition-manifests/migration.toml`): a sandbox streams
//! verified messages while it migrates itself and a controller migrates it, back and
//! forth between two placements that differ in cores and host memory; the monitor's
//! records, the sandboxes' own checks (clock, RAM, messages) and the refusals are
//! asserted.
//!
//! Like `boot.rs`, it skips (loudly) only when Bochs is missing and `QUEST_REQUIRE_BOOT`
//! is unset.

use quest_abi::console::{Migrated, Record};

#[macro_use]
mod common;
use common::{assert_passed, line, number_after};

#[test]
fn a_sandbox_migrates_between_cores_and_memory_with_its_clock_ram_and_messages_intact() {
    let (_, out) = boot_example!("migration");
    let c = &out.console;
    assert_passed(&out);

    let records: Vec<Record<'_>> = c.lines().filter_map(Record::parse).collect();
    let tsc_khz = records
        .iter()
        .find_map(|r| match r {
            Record::Tsc { khz, .. } => Some(*khz),
            _ => None,
        })
        .expect("the TSC record");
    let moves: Vec<Migrated<'_>> = records
        .iter()
        .filter_map(|r| match r {
            Record::Migrated(m) => Some(*m),
            _ => None,
        })
        .collect();
    // SELF = 10 by the mover, CONTROL = 10 by the controller.
    assert_eq!(moves.len(), 20, "{moves:?}");
    let max_downtime = tsc_khz * 1000; // max_downtime = "1s"
    let standby = line(c, "quest: memory: sandbox 'mover' standby RAM at ");
    let standby = u64::from_str_radix(
        standby
            .split_once(" at 0x")
            .and_then(|(_, r)| r.split_once('-'))
            .map(|(a, _)| a)
            .expect("standby address"),
        16,
    )
    .expect("hex address");
    let home = moves[0].from_memory;
    assert_ne!(home, standby);
    for (i, m) in moves.iter().enumerate() {
        assert_eq!(m.sandbox, "mover");
        // Back and forth: cores 1 <-> 2, RAM home <-> standby region.
        let (from, to) = if i % 2 == 0 { (1, 2) } else { (2, 1) };
        assert_eq!(
            (m.from_cores.as_slice(), m.to_cores.as_slice()),
            (&[from][..], &[to][..])
        );
        let (a, b) = if i % 2 == 0 {
            (home, standby)
        } else {
            (standby, home)
        };
        assert_eq!((m.from_memory, m.to_memory), (a, b), "migration {i}");
        // Pre-copy (Bochs has EPT dirty flags): a first round of all 4 MiB, then what
        // was dirtied, bounded by the rounds allowed (8).
        assert!((1..=8).contains(&m.rounds), "{m:?}");
        assert!(m.pages >= 1024, "{m:?}");
        assert!(m.downtime > 0 && m.downtime <= max_downtime, "{m:?}");
    }
    let worst = moves.iter().map(|m| m.downtime).max().unwrap_or(0);
    assert!(records.contains(&Record::Migrations {
        sandbox: "mover",
        count: 20,
        worst_downtime: worst,
    }));

    // Who may not ask.
    for (sandbox, by) in [
        ("sink", "controller"),
        ("controller", "controller"),
        ("mover", "sink"),
    ] {
        assert!(
            records.contains(&Record::MigrationRefused {
                sandbox,
                by,
                reason: "not allowed"
            }),
            "{sandbox} by {by}"
        );
    }
    // Refusals never stopped anything: no refused migration was counted.
    assert!(records
        .iter()
        .all(|r| !matches!(r, Record::MigrationRefused { reason, .. } if *reason != "not allowed" && *reason != "busy")));

    // The sandboxes' own checks.
    let mover = line(c, "[mover] mover: 10 self-migrations");
    assert!(
        mover.contains("200 messages sent, TSC monotonic, RAM intact"),
        "{mover}"
    );
    assert!(
        number_after(mover, "worst downtime ") <= max_downtime,
        "{mover}"
    );
    line(c, "[controller] controller: 10 migrations of the mover");
    line(c, "refusals as expected");
    line(c, "[sink] sink: 200 messages verified in order");
}
