//! The boot-cost lines: how long from the monitor's first instruction until every vCPU
//! of every started sandbox made its first VM entry, and per sandbox from the start of its vCPU
//! setup (VMXON, EPT, VMCS) to its last vCPU's first entry. Bookkeeping is pure
//! (`quest_monitor_core::boot_cost`); the vCPU that completes the set prints:
//!
//! `quest: all sandboxes running after <N> TSC cycles` (read by `quest-build bench`), the
//! same against one pass over all sandbox memory (`quest: boot cost is <R> passes ...`),
//! then per sandbox `quest: boot cost of '<name>': launch to first entry of its <k> vCPUs in
//! <M> TSC cycles` (not `quest:   '<name>': ...`, which is the summary's line format),
//! preceded by `quest: sandbox '<name>' launched at TSC <T>` (absolute). Every line is a
//! `quest_abi::console::Record`.

use super::vcpu::Vcpu;
use quest_abi::console::Record;
use quest_abi::SandboxId;
use quest_monitor_core::boot_cost::FirstEntries;

static FIRST_ENTRIES: FirstEntries = FirstEntries::new();

/// A vCPU core of sandbox `s` starts setting up its vCPU now.
pub fn launch(s: SandboxId) {
    FIRST_ENTRIES.launch(s.index(), crate::arch::tsc::now());
}

/// `v` is about to make its first VM entry; `tsc` was read just now. The last vCPU of all
/// to get here prints the boot cost (before its entry; `tsc` excludes the printing).
pub fn entered(v: &Vcpu, tsc: u64) {
    let table = &v.sys.table;
    // A sandbox kept stopped for want of a device never enters: the set is complete
    // without its vCPUs (the PCI scan decided that before any vCPU ran).
    let starting: usize = table
        .sandboxes()
        .filter(|s| crate::pci::may_start(s.id()))
        .map(|s| s.vcpus().len())
        .sum();
    if !FIRST_ENTRIES.entered(v.sandbox.index(), tsc, starting) {
        return;
    }
    let cycles = FIRST_ENTRIES.total_cycles(crate::arch::tsc::entry());
    crate::println!("{}", Record::Running { cycles });
    let ram: u64 = table.sandboxes().map(|s| s.ram_size()).sum();
    if let Some(pass) = crate::sandbox_memory::one_pass_cycles(ram) {
        crate::println!("{}", Record::boot_ratio(cycles, ram >> 20, pass));
    }
    for entry in table.sandboxes() {
        let s = entry.id().index();
        let vcpus = entry.vcpus().len();
        let sandbox = entry.name();
        if let Some(tsc) = FIRST_ENTRIES.launched_at(s) {
            // Absolute, so that a guest printing its own TSC (which has no offset) can
            // tell how long it took from launch to its `main` (`quest-build bench`).
            crate::println!("{}", Record::Launched { sandbox, tsc });
        }
        if let Some(cycles) = FIRST_ENTRIES.sandbox_cycles(s, vcpus) {
            let vcpus = vcpus as u64;
            crate::println!(
                "{}",
                Record::SandboxBoot {
                    sandbox,
                    vcpus,
                    cycles
                }
            );
        }
    }
}
