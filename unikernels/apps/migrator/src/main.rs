//! The migration test (`partition-manifests/migration.toml`), one program in three roles
//! (the first argument):
//! - `mover`: streams numbered, checksummed messages on `stream` while it migrates
//!   itself `SELF` times (and a controller migrates it too); after each of its own
//!   migrations it checks that its TSC did not go backwards, that the jump covers the
//!   downtime the monitor reported and that the downtime is within `MAX_DOWNTIME_MS`,
//!   and that its RAM working set (a checksummed 64 KiB block) survived. It exits once
//!   the controller says it is done.
//! - `controller`: migrates `mover` `CONTROL` times (retrying while it is busy), checks
//!   the refusals it must get (a sandbox without standby placement, itself), then tells
//!   the mover on `done`. With `READY` set it first waits for one message on the channel
//!   of that name (the mover says when it is ready to be moved), and with `SPACING_MS`
//!   it lets the mover run that long at each placement.
//! - `sink`: reads every message of `stream` and verifies it (none lost, duplicated or
//!   reordered), measuring the largest gap between two messages on its own clock; then
//!   it asks to migrate the mover, which it may not.
#![no_std]
#![no_main]

use chan_proto::{make, mix, verify, MAX_LEN};
use quest_abi::hypercall::{Hypercall, MigrateRefusal, MIGRATE_SELF, OK};
use quest_channel::{Receiver, Sender};
use quest_rt::time::{rdtsc, tsc_khz};
use quest_rt::{println, Ctx};

quest_rt::entry!(main, vcpu0_only);

/// The stream's seed.
const SEED: u64 = 0x6d69_6772;
/// Words in the mover's RAM working set (64 KiB).
const WORDS: usize = 8192;
/// Table index of the mover (the manifest's order).
const MOVER: u64 = 1;
/// Table index of the sink.
const SINK: u64 = 2;

/// `MIGRATE(rdi)`: (RAX, RDX) = (result, downtime in cycles when accepted).
fn migrate(rdi: u64) -> (u64, u64) {
    let (rax, rdx): (u64, u64);
    // SAFETY: VMCALL enters the monitor, which validates RDI and returns with every
    // register but RAX and RDX preserved (the migration moves them with the vCPU).
    unsafe {
        core::arch::asm!(
            "vmcall",
            inlateout("rax") Hypercall::Migrate.number() => rax,
            in("rdi") rdi,
            lateout("rdx") rdx,
            options(nostack),
        );
    }
    (rax, rdx)
}

fn words_sum(words: &[u64]) -> u64 {
    words.iter().fold(0u64, |h, &w| mix(h ^ w).rotate_left(7))
}

fn main(ctx: &Ctx) -> i32 {
    let role = ctx.args().args().next().unwrap_or("");
    let var = |name| chan_proto::number(ctx.args().var(name), 0);
    match role {
        "mover" => mover(var("SELF"), var("BURST").max(1), var("MAX_DOWNTIME_MS")),
        "controller" => controller(var("CONTROL"), ctx.args().var("READY"), var("SPACING_MS")),
        "sink" => sink(var("MESSAGES")),
        _ => {
            println!("migrator: unknown role {role:?}");
            2
        }
    }
}

fn mover(rounds: u64, burst: u64, max_downtime_ms: u64) -> i32 {
    let (Ok(mut tx), Ok(mut done)) = (Sender::open("stream"), Receiver::open("done")) else {
        println!("mover: cannot open its channels");
        return 2;
    };
    let budget = max_downtime_ms.saturating_mul(u64::from(tsc_khz()));
    let mut ram = [0u64; WORDS];
    for (i, w) in ram.iter_mut().enumerate() {
        *w = mix(SEED ^ i as u64);
    }
    let sum = words_sum(&ram);
    let mut buf = [0u8; MAX_LEN];
    let (mut seq, mut worst, mut busy, mut last) = (0u64, 0u64, 0u64, rdtsc());
    for round in 0..rounds {
        for _ in 0..burst {
            let len = make(SEED, seq, &mut buf);
            if let Err(e) = tx.send(&buf[..len]) {
                println!("mover: message {seq}: {e}");
                return 1;
            }
            seq += 1;
            let now = rdtsc();
            if now < last {
                println!("mover: TSC went backwards: {now} after {last}");
                return 1;
            }
            last = now;
        }
        // The controller may be migrating us at the same moment: then we are busy.
        let (before, (result, downtime), after) = loop {
            let before = rdtsc();
            let answer = migrate(MIGRATE_SELF);
            let after = rdtsc();
            if before < last {
                println!("mover: TSC went backwards: {before} after {last}");
                return 1;
            }
            if answer.0 != MigrateRefusal::Busy.code() {
                break (before, answer, after);
            }
            busy += 1;
            last = after;
        };
        if result != OK {
            let why = MigrateRefusal::from_code(result).map_or("?", MigrateRefusal::as_str);
            println!("mover: migration {round} refused: {why} ({result:#x})");
            return 1;
        }
        if after < before || after - before < downtime || downtime > budget {
            println!(
                "mover: migration {round}: TSC {before} -> {after}, downtime {downtime} (budget {budget})"
            );
            return 1;
        }
        worst = worst.max(downtime);
        // SAFETY: a plain read of our own array; volatile so the check reads the RAM the
        // monitor moved, not a value kept in a register.
        let now_sum = words_sum(&ram.map(|w| unsafe { core::ptr::read_volatile(&w) }));
        if now_sum != sum {
            println!("mover: RAM working set damaged after migration {round}");
            return 1;
        }
        last = after;
    }
    // Keep streaming (and checking the clock) until the controller is done with us.
    let mut byte = [0u8; 1];
    loop {
        match done.try_recv(&mut byte) {
            Ok(Some(_)) => break,
            Ok(None) => {}
            Err(e) => {
                println!("mover: done: {e}");
                return 1;
            }
        }
        let now = rdtsc();
        if now < last {
            println!("mover: TSC went backwards: {now} after {last}");
            return 1;
        }
        last = now;
    }
    println!(
        "mover: {rounds} self-migrations (busy {busy} times), worst downtime {worst} cycles, {seq} messages sent, TSC monotonic, RAM intact"
    );
    0
}

fn controller(count: u64, ready: Option<&str>, spacing_ms: u64) -> i32 {
    let Ok(mut done) = Sender::open("done") else {
        println!("controller: cannot open done");
        return 2;
    };
    if let Some(name) = ready {
        let mut byte = [0u8; 1];
        let Ok(mut rx) = Receiver::open(name) else {
            println!("controller: cannot open {name}");
            return 2;
        };
        if let Err(e) = rx.recv(&mut byte) {
            println!("controller: {name}: {e}");
            return 1;
        }
    }
    // Without SPACING_MS, a short pause.
    let spacing = match spacing_ms {
        0 => 20_000,
        ms => ms.saturating_mul(u64::from(tsc_khz())),
    };
    let (mut moved, mut busy, mut worst) = (0u64, 0u64, 0u64);
    while moved < count {
        match migrate(MOVER) {
            (OK, downtime) => {
                moved += 1;
                worst = worst.max(downtime);
            }
            (code, _) if code == MigrateRefusal::Busy.code() => busy += 1,
            (code, _) => {
                println!("controller: migration {moved} refused: {code:#x}");
                return 1;
            }
        }
        // Let the mover run a little at each placement.
        let until = rdtsc() + spacing;
        while rdtsc() < until {
            core::hint::spin_loop();
        }
    }
    let not_allowed = MigrateRefusal::NotAllowed.code();
    let refusals = [(SINK, "the sink"), (MIGRATE_SELF, "itself")];
    for (target, what) in refusals {
        let (code, _) = migrate(target);
        if code != not_allowed {
            println!("controller: migrating {what}: {code:#x}, expected not allowed");
            return 1;
        }
    }
    if done.send(&[1]).is_err() {
        println!("controller: cannot tell the mover");
        return 1;
    }
    println!(
        "controller: {moved} migrations of the mover (busy {busy} times), worst downtime {worst} cycles, refusals as expected"
    );
    0
}

fn sink(messages: u64) -> i32 {
    let Ok(mut rx) = Receiver::open("stream") else {
        println!("sink: cannot open stream");
        return 2;
    };
    let mut buf = [0u8; MAX_LEN];
    let (mut gap, mut last) = (0u64, None::<u64>);
    for seq in 0..messages {
        let n = match rx.recv(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                println!("sink: message {seq}: {e}");
                return 1;
            }
        };
        let now = rdtsc();
        if let Some(l) = last {
            gap = gap.max(now.saturating_sub(l));
        }
        last = Some(now);
        if let Err(e) = verify(SEED, seq, &buf[..n]) {
            println!("sink: message {seq}: {e}");
            return 1;
        }
    }
    let (code, _) = migrate(MOVER);
    if code != MigrateRefusal::NotAllowed.code() {
        println!("sink: migrating the mover answered {code:#x}, expected not allowed");
        return 1;
    }
    println!("sink: {messages} messages verified in order, largest gap {gap} cycles");
    0
}
