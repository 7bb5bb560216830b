//! Ping: the active end of `partition-manifests/pingpong.toml`, as a bare `quest-rt` app.
//!
//! The script (a backpressure burst, verified mixed-size messages both ways, then the
//! round-trip and stream benchmark) is `chan_proto::ping`, shared with the Hermit
//! `ping-std`; this app supplies the console and the TSC frequency the monitor reports.
#![no_std]
#![no_main]

extern crate alloc;

use chan_proto::ping::{Params, Runtime, StreamRate};
use core::fmt;
use quest_rt::time::tsc_khz;
use quest_rt::{println, Ctx};

quest_rt::entry!(main, vcpu0_only);

/// The bare runtime: quest-rt's console and the monitor's TSC frequency.
struct Bare;

impl Runtime for Bare {
    fn name(&self) -> &'static str {
        "ping"
    }

    fn println(&mut self, line: fmt::Arguments<'_>) {
        println!("{line}");
    }

    fn stream_rate(&mut self, bytes: u64, cycles: u64) -> StreamRate {
        let khz = tsc_khz() as u128;
        StreamRate {
            tsc_khz: khz,
            mb_per_s: bytes as u128 * khz / cycles as u128 / 1000,
        }
    }
}

fn main(ctx: &Ctx) -> i32 {
    let env = ctx.args();
    chan_proto::ping::main(&mut Bare, Params::from_env(|name| env.var(name)))
}
