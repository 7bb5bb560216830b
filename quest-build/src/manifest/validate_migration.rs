//! Checks of the migration keys (`standby_cores`, `standby_memory`, `migrate_by`,
//! `max_downtime`): where a sandbox may move, who may move it, and whether the pause it
//! tolerates is one the platform can ever meet.

use super::{Validator, MIGRATE_SELF as SELF};
use crate::bounds::profile::Profile;
use crate::bounds::BOCHS_PROFILE;
use crate::manifest::diag::Diagnostic;
use crate::manifest::parse::Draft;
use crate::manifest::schema::DraftSandbox;
use crate::manifest::size::human_duration;
use crate::manifest::types::{DowntimeClock, Span, StandbyMemory};
use quest_abi::hypercall::{min_downtime_cycles, MigrationCosts};
use std::collections::HashMap;

/// The migration costs of the shipped Bochs profile (`None` while none is shipped), and
/// its TSC frequency.
pub(crate) fn platform_costs() -> Option<(MigrationCosts, u64)> {
    let p = Profile::parse(BOCHS_PROFILE).ok()?;
    Some((p.cycles.migration_costs(), p.platform.tsc_khz))
}

fn name_of(s: &DraftSandbox) -> &str {
    s.name.as_ref().map_or("?", |n| n.value.as_str())
}

impl Validator<'_> {
    pub(super) fn migration(&mut self, draft: &Draft) {
        let system_cores = draft.system.as_ref().and_then(|s| s.cores.as_ref());
        // Every core's first owner: a sandbox's running cores, then standby cores.
        let mut owner: HashMap<u32, (&Span, &str, bool)> = HashMap::new();
        for s in &draft.sandboxes {
            for core in s.cores.iter().flat_map(|c| &c.value) {
                owner
                    .entry(core.value)
                    .or_insert((&core.span, name_of(s), false));
            }
        }
        for s in &draft.sandboxes {
            let name = name_of(s);
            let Some(standby) = &s.standby_cores else {
                self.not_migratable(s);
                continue;
            };
            if let Some(cores) = s
                .cores
                .as_ref()
                .filter(|c| c.value.len() != standby.value.len())
            {
                self.diags.push(
                    Diagnostic::error(
                        format!(
                            "sandbox `{name}` has {} standby core(s) for {} vCPU(s)",
                            standby.value.len(),
                            cores.value.len()
                        ),
                        standby.span.clone(),
                    )
                    .label("wrong number of standby cores")
                    .related(cores.span.clone(), "its vCPUs' cores")
                    .hint("list one standby core per vCPU, as many as in `cores`"),
                );
            }
            for core in &standby.value {
                if !self.core_exists(core, system_cores, "standby core") {
                    continue;
                }
                match owner.get(&core.value) {
                    Some(&(first, other, standby_too)) => {
                        let role = if standby_too {
                            "a standby core"
                        } else {
                            "a core"
                        };
                        let msg = if other == name {
                            format!(
                                "standby core {} is already {role} of sandbox `{name}` itself",
                                core.value
                            )
                        } else {
                            format!(
                                "standby core {} is already {role} of sandbox `{other}`",
                                core.value
                            )
                        };
                        self.diags.push(
                            Diagnostic::error(msg, core.span.clone())
                                .label("not free")
                                .related(first.clone(), "first used here")
                                .hint("a standby core belongs to its sandbox alone: no sandbox runs there, no other sandbox stands by there"),
                        );
                    }
                    None => {
                        owner.insert(core.value, (&core.span, name, true));
                    }
                }
            }
            self.controllers(draft, s, standby.span.clone());
            self.max_downtime(s, standby.span.clone());
        }
    }

    /// Without `standby_cores` the other migration keys mean nothing.
    fn not_migratable(&mut self, s: &DraftSandbox) {
        let mut spans: Vec<(&str, Span)> = Vec::new();
        if let Some(first) = s.migrate_by.first() {
            spans.push(("migrate_by", first.span.clone()));
        }
        if let Some(d) = &s.max_downtime {
            spans.push(("max_downtime", d.span.clone()));
        }
        if let Some(m) = s
            .standby_memory
            .as_ref()
            .filter(|m| m.value == StandbyMemory::Separate)
        {
            spans.push(("standby_memory", m.span.clone()));
        }
        if let Some(c) = s
            .downtime_clock
            .as_ref()
            .filter(|c| c.value == DowntimeClock::Hidden)
        {
            spans.push(("downtime_clock", c.span.clone()));
        }
        for (key, span) in spans {
            self.diags.push(
                Diagnostic::error(
                    format!(
                        "`{key}` needs `standby_cores`: sandbox `{}` has nowhere to migrate to",
                        name_of(s)
                    ),
                    span,
                )
                .label("no standby placement")
                .hint("add `standby_cores = [..]`, one free core per vCPU, or remove this key"),
            );
        }
    }

    fn controllers(&mut self, draft: &Draft, s: &DraftSandbox, standby: Span) {
        let name = name_of(s);
        if s.migrate_by.is_empty() {
            self.diags.push(
                Diagnostic::error(
                    format!("sandbox `{name}` has standby cores, but nobody may migrate it"),
                    standby,
                )
                .label("never used")
                .hint(
                    "add `migrate_by = [\"self\"]` (it moves itself) or name controller sandboxes",
                ),
            );
        }
        let mut names = super::sandbox_names(draft);
        names.push(SELF);
        for c in &s.migrate_by {
            if names.contains(&c.value.as_str()) {
                continue;
            }
            self.diags.push(super::unknown_sandbox(
                c,
                &names,
                " to control migrations",
                "unknown controller",
                "a controller is one of: ",
            ));
        }
    }

    fn max_downtime(&mut self, s: &DraftSandbox, standby: Span) {
        let name = name_of(s);
        let Some(max) = &s.max_downtime else {
            self.diags.push(
                Diagnostic::error(
                    format!("migratable sandbox `{name}` has no `max_downtime`"),
                    standby,
                )
                .label("how long may it pause?")
                .hint("add `max_downtime = \"5ms\"`: the longest pause a migration may cause it"),
            );
            return;
        };
        let (Some(cores), Some(ram), Some((costs, tsc_khz))) =
            (&s.cores, &s.memory, platform_costs())
        else {
            return;
        };
        let separate = s
            .standby_memory
            .as_ref()
            .is_some_and(|m| m.value == StandbyMemory::Separate);
        let vcpus = cores.value.len() as u64;
        let floor = min_downtime_cycles(vcpus, ram.value, separate, &costs);
        // Cycles to ns, rounded up.
        let floor_ns = (u128::from(floor) * 1_000_000).div_ceil(u128::from(tsc_khz.max(1)));
        let floor_ns = u64::try_from(floor_ns).unwrap_or(u64::MAX);
        // What the hint suggests: the floor rounded up to a whole microsecond.
        let suggested = floor_ns.div_ceil(1000).saturating_mul(1000);
        if max.value < floor_ns {
            let what = if separate {
                "parking and resuming each vCPU, and copying at least one dirty 2 MiB page per vCPU"
            } else {
                "parking and resuming each vCPU"
            };
            self.diags.push(
                Diagnostic::error(
                    format!(
                        "`max_downtime` is {}, but a migration of sandbox `{name}` ({vcpus} vCPU(s){}) pauses it at least {} on this platform",
                        human_duration(max.value),
                        if separate { ", separate memory" } else { "" },
                        human_duration(suggested)
                    ),
                    max.span.clone(),
                )
                .label("can never be met")
                .hint(format!(
                    "raise `max_downtime` to at least {} ({what}, with the shipped Bochs profile's costs)",
                    human_duration(suggested)
                )),
            );
        }
    }
}
