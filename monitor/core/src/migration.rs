//! The monitor's decisions about a `MIGRATE` hypercall (`quest_abi::hypercall`): which
//! sandbox it names, whether the caller may ask, and the admission test, in the order
//! the monitor applies them; and the TSC offset that keeps a moved vCPU's clock
//! continuous. Pure, so every refusal is tested on the host.

use quest_abi::hypercall::{
    budget_cycles, copy_cycles, least_downtime_cycles, stop_fixed_cycles, MigrateRefusal,
    MigrationCosts, MIGRATE_SELF,
};
use quest_abi::view::Migration;
use quest_abi::SandboxId;

/// The sandbox a `MIGRATE` with `rdi` from `caller` names, in a table of `count`
/// sandboxes (`None`: no such sandbox, answer `ERR_INVALID`).
pub fn target(rdi: u64, caller: SandboxId, count: usize) -> Option<SandboxId> {
    if rdi == MIGRATE_SELF {
        return Some(caller);
    }
    usize::try_from(rdi)
        .ok()
        .filter(|&i| i < count)
        .and_then(SandboxId::from_index)
}

/// What the monitor knows when it decides.
#[derive(Clone, Copy, Debug)]
pub struct Request {
    /// Who asks.
    pub caller: SandboxId,
    /// The target's migration terms (`None`: it has no standby placement).
    pub terms: Option<Migration>,
    /// The target's vCPUs.
    pub vcpus: u64,
    /// The target's RAM, bytes.
    pub ram: u64,
    /// Whether this migration moves its RAM (a separate standby region).
    pub moves_memory: bool,
    /// Whether the RAM is pre-copied while the sandbox runs (the CPU has EPT dirty
    /// flags): then the stop copies only what is still dirty; otherwise all of it. The
    /// old region is scrubbed after the sandbox resumes, either way.
    pub precopy: bool,
    /// The target owns PCI functions or IRQ lines (then it never migrates).
    pub owns_devices: bool,
    /// The target runs (launched, not stopping, not migrating).
    pub idle_for_migration: bool,
    /// Every destination core waits in the monitor, and the standby region (if any) is
    /// free.
    pub destination_free: bool,
    /// The calibrated costs.
    pub costs: MigrationCosts,
    /// The largest fixed part of the target's earlier stops, TSC cycles (0: none yet;
    /// `quest_abi::hypercall::stop_fixed_cycles`).
    pub measured_stop: u64,
    /// TSC frequency, kHz.
    pub tsc_khz: u64,
}

/// Accepts or refuses `r`. The order is the order of the checks: who asks, the state of
/// the target, the admission test, the destination.
pub fn admit(r: &Request) -> Result<(), MigrateRefusal> {
    let terms = r
        .terms
        .filter(|t| t.allows(r.caller))
        .ok_or(MigrateRefusal::NotAllowed)?;
    if r.owns_devices {
        return Err(MigrateRefusal::OwnsDevices);
    }
    if !r.idle_for_migration {
        return Err(MigrateRefusal::Busy);
    }
    let least = stop_cycles(r);
    if least > budget_cycles(terms.max_downtime_ns, r.tsc_khz) {
        return Err(MigrateRefusal::WouldExceedMaxDowntime);
    }
    if !r.destination_free {
        return Err(MigrateRefusal::DestinationNotFree);
    }
    Ok(())
}

/// The least downtime of `r` as the monitor does it: the stop's fixed part (every vCPU
/// stopped and resumed; what earlier stops of the target measured, once there were
/// some), and with memory, the copy of what is still dirty after pre-copy (at least a
/// dirty granule per vCPU), or of all RAM without pre-copy.
pub fn stop_cycles(r: &Request) -> u64 {
    let park = stop_fixed_cycles(r.vcpus, &r.costs, r.measured_stop);
    match (r.moves_memory, r.precopy) {
        (false, _) => park,
        (true, true) => least_downtime_cycles(r.vcpus, r.ram, true, &r.costs, r.measured_stop),
        (true, false) => park.saturating_add(copy_cycles(r.ram, &r.costs)),
    }
}

/// The VMCS TSC offset a vCPU needs on its destination core so that its TSC goes on
/// from where it was: `old_offset` on the source, whose TSC reads `source_minus_dest`
/// cycles ahead of the destination's (calibrated). Wrapping, as the CPU adds it.
pub fn moved_tsc_offset(old_offset: u64, source_minus_dest: i64) -> u64 {
    old_offset.wrapping_add(source_minus_dest as u64)
}

/// The host TSC value at which a guest deadline of `guest` (its own TSC, which reads the
/// host's plus `tsc_offset`) falls. 0 disarms the timer and stays 0; a deadline that
/// translates to 0 becomes 1 (already past) rather than disarming it.
pub fn host_deadline(guest: u64, tsc_offset: u64) -> u64 {
    if guest == 0 {
        0
    } else {
        guest.wrapping_sub(tsc_offset).max(1)
    }
}

/// What the guest reads back for a host deadline `host` ([`host_deadline`]'s inverse; 0:
/// not armed, or fired).
pub fn guest_deadline(host: u64, tsc_offset: u64) -> u64 {
    if host == 0 {
        0
    } else {
        host.wrapping_add(tsc_offset)
    }
}

/// How much of a migration's pause a sandbox with `downtime_clock = "hidden"` does not
/// see: from the last of its vCPUs leaving its guest (`last_exit`) to the release
/// (`release`). Every vCPU left at or before `last_exit` and enters again after
/// `release`, so taking this off every vCPU's TSC offset keeps each one's clock
/// monotonic, and all of them still agree with each other.
pub fn hidden_cycles(last_exit: u64, release: u64) -> u64 {
    release.saturating_sub(last_exit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_translate_between_guest_and_host_tsc() {
        // The guest's TSC runs 1000 behind the host's (offset -1000).
        let off = 1000u64.wrapping_neg();
        assert_eq!(host_deadline(5000, off), 6000);
        assert_eq!(guest_deadline(6000, off), 5000);
        assert_eq!(host_deadline(0, off), 0, "0 disarms");
        assert_eq!(guest_deadline(0, off), 0, "0: not armed");
        assert_eq!(
            host_deadline(1000, 1000),
            1,
            "a translated 0 is past, not disarmed"
        );
        for g in [1u64, 77, u64::MAX] {
            assert_eq!(guest_deadline(host_deadline(g, off), off), g);
        }
        assert_eq!(hidden_cycles(100, 350), 250);
        assert_eq!(hidden_cycles(400, 350), 0, "never negative");
    }

    fn terms(migrate_by: u64, max_downtime_ns: u64) -> Option<Migration> {
        Some(Migration {
            separate_memory: false,
            hide_downtime: false,
            migrate_by,
            max_downtime_ns,
        })
    }

    fn request() -> Request {
        Request {
            caller: SandboxId::new(1),
            terms: terms(0b10, 1_000_000),
            vcpus: 2,
            ram: 8 << 20,
            moves_memory: false,
            precopy: false,
            owns_devices: false,
            idle_for_migration: true,
            destination_free: true,
            costs: MigrationCosts {
                ipi: 20,
                vm_exit_entry: 70,
                copy_per_kib: 135,
            },
            measured_stop: 0,
            tsc_khz: 10_000,
        }
    }

    #[test]
    fn targets_are_self_or_an_existing_sandbox() {
        let me = SandboxId::new(2);
        assert_eq!(target(MIGRATE_SELF, me, 3), Some(me));
        assert_eq!(target(0, me, 3), Some(SandboxId::new(0)));
        assert_eq!(target(3, me, 3), None);
        assert_eq!(target(u64::MAX - 1, me, 3), None);
    }

    #[test]
    fn each_refusal_has_its_cause() {
        assert_eq!(admit(&request()), Ok(()));
        let with = |f: fn(&mut Request)| {
            let mut r = request();
            f(&mut r);
            admit(&r)
        };
        assert_eq!(
            with(|r| r.caller = SandboxId::new(0)),
            Err(MigrateRefusal::NotAllowed)
        );
        assert_eq!(with(|r| r.terms = None), Err(MigrateRefusal::NotAllowed));
        assert_eq!(
            with(|r| r.idle_for_migration = false),
            Err(MigrateRefusal::Busy)
        );
        assert_eq!(
            with(|r| {
                r.owns_devices = true;
                r.idle_for_migration = false;
            }),
            Err(MigrateRefusal::OwnsDevices),
            "a sandbox with devices never moves, busy or not"
        );
        // 1 ms at 10 MHz = 10000 cycles: parking two vCPUs fits, copying 8 MiB does not.
        assert_eq!(
            with(|r| r.moves_memory = true),
            Err(MigrateRefusal::WouldExceedMaxDowntime)
        );
        assert_eq!(
            with(|r| r.terms = terms(0b10, 17_999)),
            Err(MigrateRefusal::WouldExceedMaxDowntime),
            "2 x 90 cycles need 18 us"
        );
        assert_eq!(with(|r| r.terms = terms(0b10, 18_000)), Ok(()));
        assert_eq!(
            with(|r| r.destination_free = false),
            Err(MigrateRefusal::DestinationNotFree)
        );
        // Not allowed comes first: a stranger learns nothing about the target's state.
        assert_eq!(
            with(|r| {
                r.caller = SandboxId::new(5);
                r.idle_for_migration = false;
            }),
            Err(MigrateRefusal::NotAllowed)
        );
    }

    #[test]
    fn stop_and_copy_counts_the_copy_and_pre_copy_the_least_final_copy() {
        let mut r = request();
        assert_eq!(stop_cycles(&r), 2 * 90);
        r.moves_memory = true;
        assert_eq!(stop_cycles(&r), 2 * 90 + 8192 * 135);
        // The budget that admits exactly that.
        r.terms = terms(0b10, (2 * 90 + 8192 * 135) * 100);
        assert_eq!(admit(&r), Ok(()));
        r.terms = terms(0b10, (2 * 90 + 8192 * 135) * 100 - 100);
        assert_eq!(admit(&r), Err(MigrateRefusal::WouldExceedMaxDowntime));
        // With pre-copy, a dirty granule per vCPU is the least that remains.
        r.precopy = true;
        assert_eq!(stop_cycles(&r), 2 * 90 + 2 * 2048 * 135);
        assert_eq!(admit(&r), Ok(()));
        r.terms = terms(0b10, (2 * 90 + 2 * 2048 * 135) * 100 - 100);
        assert_eq!(admit(&r), Err(MigrateRefusal::WouldExceedMaxDowntime));
        // Once a stop of the target measured its fixed part, that counts instead.
        r.measured_stop = 40_000;
        assert_eq!(stop_cycles(&r), 40_000 + 2 * 2048 * 135);
        r.terms = terms(0b10, (40_000 + 2 * 2048 * 135) * 100);
        assert_eq!(admit(&r), Ok(()));
        r.terms = terms(0b10, (40_000 + 2 * 2048 * 135) * 100 - 100);
        assert_eq!(admit(&r), Err(MigrateRefusal::WouldExceedMaxDowntime));
        r.moves_memory = false;
        assert_eq!(stop_cycles(&r), 40_000, "a core-only move too");
    }

    #[test]
    fn budgets_and_offsets() {
        assert_eq!(budget_cycles(1_000_000, 10_000), 10_000);
        assert_eq!(budget_cycles(1, 999), 0, "rounded down");
        assert_eq!(budget_cycles(u64::MAX, u64::MAX), u64::MAX);
        assert_eq!(moved_tsc_offset(0, 0), 0);
        assert_eq!(moved_tsc_offset(100, -30), 70);
        assert_eq!(moved_tsc_offset(0, -1), u64::MAX, "a negative offset wraps");
    }
}
