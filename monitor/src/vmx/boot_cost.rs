//! The boot-cost lines: how long from the monitor's first instruction until every vCPU
//! of every sandbox made its first VM entry, and per sandbox from the start of its vCPU
//! setup (VMXON, EPT, VMCS) to its last vCPU's first entry. Bookkeeping is pure
//! (`quest_monitor_core::boot_cost`); the vCPU that completes the set prints:
//!
//! `quest: all sandboxes running after <N> TSC cycles` (read by `quest-build bench`),
//! then per sandbox `quest: boot cost of '<name>': launch to first entry of its <k> vCPUs in
//! <M> TSC cycles` (not `quest:   '<name>': ...`, which is the summary's line format),
//! preceded by `quest: sandbox '<name>' launched at TSC <T>` (absolute).

use super::vcpu::Vcpu;
use quest_abi::name_str;
use quest_monitor_core::boot_cost::FirstEntries;

static FIRST_ENTRIES: FirstEntries = FirstEntries::new();

/// A vCPU core of sandbox `s` starts setting up its vCPU now.
pub fn launch(s: usize) {
    FIRST_ENTRIES.launch(s, crate::arch::tsc::now());
}

/// `v` is about to make its first VM entry; `tsc` was read just now. The last vCPU of all
/// to get here prints the boot cost (before its entry; `tsc` excludes the printing).
pub fn entered(v: &Vcpu, tsc: u64) {
    let table = &v.sys.table;
    if !FIRST_ENTRIES.entered(v.sandbox, tsc, table.vcpus.len()) {
        return;
    }
    crate::println!(
        "quest: all sandboxes running after {} TSC cycles",
        FIRST_ENTRIES.total_cycles(crate::arch::tsc::entry())
    );
    for (s, entry) in table.sandboxes.iter().enumerate() {
        let vcpus = table.sandbox_vcpus(s).len();
        if let Some(tsc) = FIRST_ENTRIES.launched_at(s) {
            // Absolute, so that a guest printing its own TSC (which has no offset) can
            // tell how long it took from launch to its `main` (`quest-build bench`).
            crate::println!(
                "quest: sandbox '{}' launched at TSC {tsc}",
                name_str(&entry.name).unwrap_or("?")
            );
        }
        if let Some(cycles) = FIRST_ENTRIES.sandbox_cycles(s, vcpus) {
            crate::println!(
                "quest: boot cost of '{}': launch to first entry of its {vcpus} vCPUs in {cycles} TSC cycles",
                name_str(&entry.name).unwrap_or("?")
            );
        }
    }
}
