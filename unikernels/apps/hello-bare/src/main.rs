//! Hello from every core: each vCPU prints its sandbox, vCPU index, core and APIC ID;
//! vCPU 0 also prints the arguments, the environment, and checks that the heap works.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use quest_rt::{println, Ctx};

quest_rt::entry!(main);

fn main(ctx: &Ctx) -> i32 {
    println!(
        "hello from {} vcpu {} on core {} (apic id {})",
        ctx.name(),
        ctx.vcpu(),
        ctx.core(),
        quest_rt::cpu::apic_id()
    );
    if ctx.vcpu() != 0 {
        return 0;
    }
    let args: Vec<&str> = ctx.args().args().collect();
    println!("args: {args:?}");
    for (key, value) in ctx.args().env() {
        println!("env: {key}={value}");
    }
    // The heap: build a string on it and check what came out.
    let mut text = String::new();
    for i in 0..100u32 {
        text.push_str(if i % 2 == 0 { "ab" } else { "c" });
    }
    if text.len() != 150 || text.matches('c').count() != 50 {
        println!("heap check failed");
        return 1;
    }
    println!(
        "launch {}, {} vcpus, tsc {} kHz, heap ok",
        ctx.launch_count(),
        ctx.num_vcpus(),
        quest_rt::time::tsc_khz()
    );
    0
}
