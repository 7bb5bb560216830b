//! The attacker: tries one thing a sandbox must not be able to do, named by an argument,
//! and reports if it got away with it (it never should: the monitor stops it first).
//!
//! Arguments are attack names, optionally `name:value`. With several, launch N does the
//! Nth (run it with `on_fault = "restart"`), and a launch past the last exits 0.
//! Attacks: `read-outside`, `write-outside` (RAM just past our own, mapped by editing our
//! page tables), `write-channel` (a channel data area we only read, made writable in our
//! page tables so only EPT stands in the way), `port[:PORT]` (`out` to a foreign port,
//! default the monitor console 0x3f8), `msr[:MSR]` (`wrmsr`, default IA32_APIC_BASE),
//! `ipi[:APIC]` (x2APIC ICR fixed IPI to an APIC ID not ours), `triple-fault`,
//! `write-calibration` (reads and checks the monitor's calibration page, printing what it
//! says, then writes it, made writable in our page tables so only EPT stands in the way),
//! `touch:ADDR` (reads ADDR, e.g. a PCI BAR of another sandbox's device, mapped in our
//! page tables so only EPT/NPT stands in the way).
//!
//! Two checks are not attacks the monitor must stop by force: `doorbell-bad-index` rings
//! the `DOORBELL` hypercall with channel indices that are not ours (past our directory,
//! huge, negative) and checks each gets `ERR_INVALID` while our own channel's index gets
//! `OK`; `pci-config[:VVVV:DDDD]` writes the configuration space of every function slot
//! of bus 0 and checks that it sees no function at all (see `pci_config`). Each exits 0
//! when contained, `NOT_CONTAINED` (3) otherwise; so with several arguments, put it last.
#![no_std]
#![no_main]

extern crate alloc;

mod attacks;
mod pci_config;

use alloc::vec::Vec;
use quest_rt::console::not_contained;
use quest_rt::{println, Ctx};

quest_rt::entry!(main, vcpu0_only);

fn main(ctx: &Ctx) -> i32 {
    let names: Vec<&str> = ctx.args().args().collect();
    let launch = ctx.launch_count().max(1) as usize;
    let Some(attack) = names.get(launch - 1) else {
        println!("attacker: all {} attacks done", names.len());
        return 0;
    };
    let (name, value) = match attack.split_once(':') {
        Some((n, v)) => (n, Some(v)),
        None => (*attack, None),
    };
    println!("attacker: launch {launch}: attack {attack}");
    if name == "doorbell-bad-index" {
        return match attacks::doorbell_bad_index(ctx) {
            Ok(()) => 0,
            Err(what) => not_contained("attacker", what),
        };
    }
    if name == "pci-config" {
        return match pci_config::run(value) {
            Ok(()) => 0,
            Err(what) => not_contained("attacker", &what),
        };
    }
    match attacks::run(ctx, name, value) {
        Ok(what) => not_contained("attacker", what),
        Err(e) => {
            println!("attacker: cannot run {attack}: {e}");
            2
        }
    }
}
