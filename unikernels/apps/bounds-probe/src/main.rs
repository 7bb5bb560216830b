//! A bare endpoint of `partition-manifests/bounds.toml`: `args = [ROLE, CHANNEL]`.
//!
//! Writers: `burst` (`BURST` messages back to back, then wait until all are taken),
//! `steady` (at least `INTERVAL_US` apart), `rare` (a pause of `PAUSE_US` before each).
//! Readers: `spin`, `poll` (drain the ring every `PERIOD_US`; `OVERRUN = n` makes every
//! n-th look three periods late, breaking the declared period), `doorbell` (sleep in WAIT).
//! `COUNT` messages of stream `SEED` either way. Durations are converted with the TSC
//! frequency the monitor measured.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use chan_proto::bounds::{read, write, Reader, Writer};
use chan_proto::number;
use quest_channel::{Receiver, Sender};
use quest_rt::doorbell::VmcallDoorbell;

/// Polls a doorbell reader makes before it sleeps in WAIT: a few microseconds, so a
/// writer's pause of a millisecond or more always finds it asleep and the doorbell path
/// (IPI, VM exit and entry) is what each message measures. (The library's default,
/// 16 384 polls, outlasts the `pages` writer's 2 ms pause on Bochs: the reader never
/// slept.)
const DOORBELL_SPIN_LIMIT: u32 = 200;
use quest_rt::{println, Ctx};

quest_rt::entry!(main, vcpu0_only);

fn main(ctx: &Ctx) -> i32 {
    let env = ctx.args();
    let mut args = env.args();
    let role = args.next().unwrap_or("");
    let channel = args.next().unwrap_or("");
    let var = |name: &str, default: u64| number(env.var(name), default);
    let cycles = |micros: u64| micros.saturating_mul(u64::from(quest_rt::time::tsc_khz())) / 1000;
    let count = var("COUNT", 1000);
    let seed = var("SEED", 1);
    let result: Result<String, String> = match role {
        "burst" | "steady" | "rare" => {
            let how = match role {
                "burst" => Writer::Burst(var("BURST", 8)),
                "steady" => Writer::Steady(cycles(var("INTERVAL_US", 100))),
                _ => Writer::Rare(cycles(var("PAUSE_US", 1000))),
            };
            Sender::open(channel)
                .map_err(|e| format!("cannot open {channel}: {e}"))
                .and_then(|tx| match how {
                    Writer::Rare(_) => {
                        write(&mut tx.with_doorbell(VmcallDoorbell), seed, count, how)
                    }
                    _ => write(&mut { tx }, seed, count, how),
                })
        }
        "spin" | "poll" | "doorbell" => {
            let how = match role {
                "poll" => Reader::Poll {
                    period: cycles(var("PERIOD_US", 1000)),
                    overrun_every: var("OVERRUN", 0),
                },
                _ => Reader::Blocking,
            };
            Receiver::open(channel)
                .map_err(|e| format!("cannot open {channel}: {e}"))
                .and_then(|rx| match role {
                    "doorbell" => read(
                        &mut rx
                            .with_doorbell(VmcallDoorbell)
                            .with_spin_limit(DOORBELL_SPIN_LIMIT),
                        seed,
                        count,
                        how,
                    ),
                    _ => read(&mut { rx }, seed, count, how),
                })
        }
        other => Err(format!(
            "unknown role {other:?} (burst, steady, rare, spin, poll or doorbell)"
        )),
    };
    match result {
        Ok(done) => {
            println!("{role} {channel}: {done}");
            0
        }
        Err(e) => {
            println!("{role} {channel}: FAILED: {e}");
            1
        }
    }
}
