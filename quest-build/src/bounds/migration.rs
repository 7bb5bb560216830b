//! Migration: each migratable sandbox's worst-case downtime and the monitor's admission
//! condition, from the same platform costs and the same `quest_abi` functions the
//! monitor's admission test (`quest_monitor_core::migration::admit`) uses.
//!
//! The monitor pre-copies RAM while the sandbox runs and stops it only once what is left
//! to copy, plus stopping and resuming every vCPU, fits in `max_downtime`; a stop-and-copy
//! of the whole RAM that fits is always allowed. So every accepted migration pauses the
//! sandbox for at most the smaller of `max_downtime` and a whole stop-and-copy, and a
//! migration is accepted only if its least possible pause fits.
//!
//! The stop's fixed part here is the calibrated floor (`stop_fixed_cycles` with nothing
//! measured: an IPI, a VM exit and an entry per vCPU). The monitor counts, once a
//! sandbox has stopped, the largest fixed part its stops measured instead, with the same
//! function: the hand-off of each vCPU's state between cores that no boot constant
//! measures (on Bochs about 40 000 cycles against a floor of 85). So `least` and
//! `admissible` are what the first request meets; later ones may need more budget.

use crate::manifest::types::{Manifest, StandbyMemory};
use quest_abi::hypercall::{
    budget_cycles, copy_cycles, min_downtime_cycles, stop_fixed_cycles, MigrationCosts,
};
use serde::Serialize;

/// One migratable sandbox's analysis, in TSC cycles.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MigrationBound {
    /// The sandbox.
    pub sandbox: String,
    /// Its cores, and the standby cores it moves to (and back from).
    pub cores: Vec<u32>,
    /// The standby cores.
    pub standby_cores: Vec<u32>,
    /// Its RAM, bytes.
    pub ram: u64,
    /// Whether its RAM moves too (`standby_memory = "separate"`).
    pub moves_memory: bool,
    /// Who may ask (`self` and controller names).
    pub migrate_by: Vec<String>,
    /// `max_downtime` in cycles (rounded down), `None` without one.
    pub budget: Option<u64>,
    /// Stopping and resuming every vCPU (an IPI, a VM exit and an entry each): the
    /// calibrated floor of the stop's fixed part.
    pub park: u64,
    /// The least copy while stopped: what the running vCPUs keep dirtying (one dirty
    /// granule each), none for a core-only move.
    pub least_copy: u64,
    /// `park + least_copy`: no migration pauses it for less; the admission test.
    pub least: u64,
    /// Stopping it and copying all of its RAM (no pre-copy).
    pub stop_and_copy: u64,
    /// Whether a request can be accepted at all (`least <= budget`).
    pub admissible: bool,
    /// The longest pause an accepted migration causes: `min(budget, stop_and_copy)`.
    pub worst: u64,
}

/// Every sandbox with standby cores, analysed with `costs` at `tsc_khz`.
pub fn analyse(m: &Manifest, costs: &MigrationCosts, tsc_khz: u64) -> Vec<MigrationBound> {
    m.sandboxes
        .iter()
        .filter_map(|s| {
            let standby = s.standby_cores.as_ref()?;
            let vcpus = s.cores.value.len() as u64;
            let ram = s.memory.value;
            let moves_memory = s.standby_memory.value == StandbyMemory::Separate;
            let least = min_downtime_cycles(vcpus, ram, moves_memory, costs);
            let park = stop_fixed_cycles(vcpus, costs, 0);
            let stop_and_copy = park.saturating_add(if moves_memory {
                copy_cycles(ram, costs)
            } else {
                0
            });
            let budget = s
                .max_downtime
                .as_ref()
                .map(|d| budget_cycles(d.value, tsc_khz));
            let admissible = budget.is_some_and(|b| least <= b);
            Some(MigrationBound {
                sandbox: s.name.value.clone(),
                cores: s.cores.value.iter().map(|c| c.value).collect(),
                standby_cores: standby.value.iter().map(|c| c.value).collect(),
                ram,
                moves_memory,
                migrate_by: s.migrate_by.iter().map(|w| w.value.clone()).collect(),
                budget,
                park,
                least_copy: least - park,
                least,
                stop_and_copy,
                admissible,
                worst: budget.map_or(stop_and_copy, |b| b.min(stop_and_copy)),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{parse_and_validate, CargoAppCheck};
    use std::path::Path;

    const COSTS: MigrationCosts = MigrationCosts {
        ipi: 15,
        vm_exit_entry: 70,
        copy_per_kib: 135,
    };
    const EXAMPLE: &str = include_str!("../../../partition-manifests/migration.toml");

    /// The migration example with `mover`'s keys edited (`from` -> `to`).
    fn example(edits: &[(&str, &str)]) -> Manifest {
        let mut text = EXAMPLE.to_owned();
        for (from, to) in edits {
            assert!(text.contains(from), "the example has no `{from}`");
            text = text.replacen(from, to, 1);
        }
        let path = Path::new("../partition-manifests/migration.toml");
        match parse_and_validate(path, &text, &CargoAppCheck::new()) {
            Ok(m) => m,
            Err(d) => panic!("edited example invalid: {}", d.render(false)),
        }
    }

    fn mover(edits: &[(&str, &str)]) -> MigrationBound {
        let b = analyse(&example(edits), &COSTS, 10_000);
        let names: Vec<&str> = b.iter().map(|m| m.sandbox.as_str()).collect();
        assert_eq!(
            names,
            ["mover", "faulter"],
            "the sandboxes with standby cores"
        );
        b.into_iter().next().unwrap_or_else(|| unreachable!())
    }

    #[test]
    fn only_sandboxes_with_standby_cores_are_analysed() {
        let b = mover(&[]);
        assert_eq!(b.sandbox, "mover");
        assert_eq!((b.cores, b.standby_cores), (vec![1], vec![2]));
        assert_eq!(b.migrate_by, ["self", "controller"]);
    }

    #[test]
    fn core_only_moves_copy_nothing() {
        let b = mover(&[("standby_memory = \"separate\"", "standby_memory = \"same\"")]);
        assert!(!b.moves_memory);
        assert_eq!(b.park, 85);
        assert_eq!(
            (b.least_copy, b.least, b.stop_and_copy, b.worst),
            (0, 85, 85, 85)
        );
        assert!(b.admissible);
    }

    #[test]
    fn worst_is_the_smaller_of_budget_and_stop_and_copy() {
        let big = (
            "memory = \"4MiB\"\nargs = [\"mover\"]",
            "memory = \"64MiB\"\nargs = [\"mover\"]",
        );
        let b = mover(&[big]);
        let all = copy_cycles(64 << 20, &COSTS);
        assert_eq!(b.ram, 64 << 20);
        assert_eq!(b.stop_and_copy, 85 + all);
        assert_eq!(b.budget, Some(10_000_000), "1 s at 10 MHz");
        assert_eq!(b.worst, (85 + all).min(10_000_000));
        assert!(b.least < b.stop_and_copy);
        assert_eq!(b.least, b.park + b.least_copy);
        let tight = mover(&[big, ("max_downtime = \"1s\"", "max_downtime = \"100ms\"")]);
        assert_eq!(
            tight.worst, 1_000_000,
            "pre-copy keeps the pause within the budget"
        );
    }

    #[test]
    fn a_budget_below_the_least_pause_is_not_admissible() {
        let b = mover(&[]);
        let m = analyse(&example(&[]), &COSTS, 1);
        assert_eq!(m[0].sandbox, "mover");
        // At 1 kHz, 1 s is 1 000 cycles: less than copying one dirty granule.
        assert_eq!(m[0].budget, Some(1_000));
        assert!(!m[0].admissible);
        assert!(b.admissible);
    }
}
