//! Crashes on its first two launches and exits 0 on the third: with
//! `on_fault = "restart"` its output proves the monitor brought it back.
#![no_std]
#![no_main]

use quest_rt::{println, Ctx};

quest_rt::entry!(main, vcpu0_only);

/// The launch on which the crasher finally exits cleanly.
const CLEAN_LAUNCH: u32 = 3;

fn main(ctx: &Ctx) -> i32 {
    let launch = ctx.launch_count();
    println!("crasher: launch {launch}");
    if launch < CLEAN_LAUNCH {
        println!("crasher: faulting on purpose (ud2)");
        // SAFETY: not sound on purpose: UD2 raises #UD, which (with no IDT of ours) ends
        // in a triple fault the monitor must contain and, with on_fault = "restart", undo.
        unsafe { core::arch::asm!("ud2", options(nomem, nostack, noreturn)) }
    }
    println!("crasher: launch {launch} survived, exiting cleanly");
    0
}
