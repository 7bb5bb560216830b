//! The migration test (`partition-manifests/migration.toml`), one program in several
//! roles (the first argument):
//! - `mover`: streams numbered, checksummed messages on `stream` while it migrates
//!   itself `SELF` times (and a controller migrates it too), and keeps rewriting a
//!   working set of `WORKING_SET_KIB` KiB on its heap (each pass checks every word still
//!   holds the previous pass's value, so a page pre-copy missed is caught; it rewrites it
//!   again each time its own request is refused as busy, which is while the controller's
//!   migration of it is under way); right after each of its own migrations it asks
//!   again, which must be refused (destination not free: the old placement is still
//!   being scrubbed; or busy); after each of its own migrations it checks that its TSC did not go backwards, that the jump covers
//!   the downtime the monitor reported and that the downtime is within
//!   `MAX_DOWNTIME_MS`, and that the working set survived. It exits once the controller
//!   says it is done.
//! - `controller`: first (with `FAULTER` set, the faulter's table index) waits until the
//!   faulter is ready and migrates it, which must be abandoned (it faults during
//!   pre-copy); then migrates `mover` `CONTROL` times (retrying while it is busy), checks
//!   the refusals it must get (a sandbox without standby placement, itself), then tells
//!   the mover on `done`. With `READY` set it first waits for one message on the channel
//!   of that name (the mover says when it is ready to be moved), and with `SPACING_MS`
//!   it lets the mover run that long at each placement.
//! - `sink`: reads every message of `stream` and verifies it (none lost, duplicated or
//!   reordered), measuring the largest gap between two messages on its own clock; then
//!   it asks to migrate the mover, which it may not.
//! - `faulter` (its own table index in `SELF_INDEX`): asks for a stop-and-copy of itself,
//!   which its `max_downtime` cannot allow (refused, it runs on), tells the controller on
//!   `ready`, then asks again until the answer is busy (the controller's migration of it
//!   is under way, in pre-copy) and faults on purpose (UD2). Relaunched by
//!   `on_fault = "restart"`, it exits 0.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use chan_proto::{make, verify, MAX_LEN};
use quest_abi::hypercall::{Hypercall, MigrateRefusal, MIGRATE_SELF, MIGRATE_STOP_AND_COPY, OK};
use quest_channel::{Receiver, Sender};
use quest_rt::time::{rdtsc, tsc_khz};
use quest_rt::{println, Ctx};

quest_rt::entry!(main, vcpu0_only);

/// The stream's seed.
const SEED: u64 = 0x6d69_6772;
/// Table index of the mover (the manifest's order).
const MOVER: u64 = 1;
/// Table index of the sink.
const SINK: u64 = 2;

/// `MIGRATE(rdi)`: (RAX, RDX) = (result, downtime in cycles when accepted), entered
/// with this processor's instruction (`quest_rt::hypercall::Instruction`).
fn migrate(rdi: u64) -> (u64, u64) {
    let (rax, rdx): (u64, u64);
    macro_rules! enter {
        ($insn:literal) => {
            // SAFETY: the instruction enters the monitor, which validates RDI and returns
            // with every register but RAX and RDX preserved (the migration moves them
            // with the vCPU).
            unsafe {
                core::arch::asm!(
                    $insn,
                    inlateout("rax") Hypercall::Migrate.number() => rax,
                    in("rdi") rdi,
                    lateout("rdx") rdx,
                    options(nostack),
                );
            }
        };
    }
    match quest_rt::hypercall::Instruction::current() {
        quest_rt::hypercall::Instruction::Vmcall => enter!("vmcall"),
        quest_rt::hypercall::Instruction::Vmmcall => enter!("vmmcall"),
    }
    (rax, rdx)
}

/// A result code in words.
fn refusal(code: u64) -> &'static str {
    MigrateRefusal::from_code(code).map_or("?", MigrateRefusal::as_str)
}

/// Whether `code` means "not now, ask again later": the sandbox's migration is under way
/// (busy), or the last one's old placement is still being scrubbed (destination not free).
fn retry_later(code: u64) -> bool {
    code == MigrateRefusal::Busy.code() || code == MigrateRefusal::DestinationNotFree.code()
}

/// Waits between retries of a refused request, twice as long each time (from 10 000 up to
/// 1 000 000 TSC cycles): every refusal is a console line, so polling stays cheap.
struct Backoff(u64);

impl Backoff {
    const fn new() -> Self {
        Self(10_000)
    }

    fn wait(&mut self) {
        spin(self.0);
        self.0 = (self.0 * 2).min(1_000_000);
    }
}

/// Spins for `cycles` TSC cycles.
fn spin(cycles: u64) {
    let until = rdtsc() + cycles;
    while rdtsc() < until {
        core::hint::spin_loop();
    }
}

/// RAM the mover keeps rewriting: word `i` holds [`WorkingSet::value`] of the current
/// generation, so a word that went back to an older generation (a page a migration
/// copied before its last write and never again) is caught.
struct WorkingSet {
    words: Vec<u64>,
    generation: u64,
}

impl WorkingSet {
    fn new(kib: u64) -> Self {
        let words = (0..kib * 128).map(|i| Self::value(0, i as usize)).collect();
        Self {
            words,
            generation: 0,
        }
    }

    fn value(generation: u64, i: usize) -> u64 {
        SEED ^ (generation << 40) ^ i as u64
    }

    /// Checks every word (`Err`: the first wrong index); with `rewrite`, moves each to
    /// the next generation as it goes (every page of the set is dirtied).
    fn pass(&mut self, rewrite: bool) -> Result<(), usize> {
        let g = self.generation;
        for (i, w) in self.words.iter_mut().enumerate() {
            // SAFETY: a plain read and write of our own heap word; volatile so each pass
            // reads the RAM the monitor may have moved and really writes it.
            unsafe {
                if core::ptr::read_volatile(w) != Self::value(g, i) {
                    return Err(i);
                }
                if rewrite {
                    core::ptr::write_volatile(w, Self::value(g + 1, i));
                }
            }
        }
        if rewrite {
            self.generation += 1;
        }
        Ok(())
    }
}

fn main(ctx: &Ctx) -> i32 {
    let role = ctx.args().args().next().unwrap_or("");
    let var = |name| chan_proto::number(ctx.args().var(name), 0);
    match role {
        "mover" => mover(&Mover {
            rounds: var("SELF"),
            burst: var("BURST").max(1),
            max_downtime_ms: var("MAX_DOWNTIME_MS"),
            working_set_kib: var("WORKING_SET_KIB"),
        }),
        "controller" => controller(
            var("CONTROL"),
            ctx.args().var("READY"),
            var("SPACING_MS"),
            var("FAULTER"),
        ),
        "sink" => sink(var("MESSAGES")),
        "faulter" => faulter(ctx, var("SELF_INDEX")),
        "clock" => clock(ctx.args().var("TIME").unwrap_or("time")),
        "bench-subject" => bench_subject(
            ctx.args().var("MODE").unwrap_or("idle"),
            var("WORKING_SET_KIB"),
            ctx.args().var("DONE").unwrap_or("done"),
        ),
        "bench-controller" => {
            bench_controller(var("SUBJECTS"), var("PRECOPY"), var("STOP_AND_COPY"))
        }
        "clock-controller" => clock_controller(var("CONTROL")),
        _ => {
            println!("migrator: unknown role {role:?}");
            2
        }
    }
}

/// The mover's settings.
struct Mover {
    rounds: u64,
    burst: u64,
    max_downtime_ms: u64,
    working_set_kib: u64,
}

fn mover(cfg: &Mover) -> i32 {
    let (Ok(mut tx), Ok(mut done)) = (Sender::open("stream"), Receiver::open("done")) else {
        println!("mover: cannot open its channels");
        return 2;
    };
    let budget = cfg.max_downtime_ms.saturating_mul(u64::from(tsc_khz()));
    let mut ws = WorkingSet::new(cfg.working_set_kib);
    let mut buf = [0u8; MAX_LEN];
    let (mut seq, mut worst, mut busy, mut last) = (0u64, 0u64, 0u64, rdtsc());
    let mut not_free = 0u64;
    let damaged = |ws: &WorkingSet, at: usize, when: &str| {
        println!(
            "mover: working set damaged {when}: word {at} not of generation {}",
            ws.generation
        );
        1
    };
    for round in 0..cfg.rounds {
        for _ in 0..cfg.burst {
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
        if let Err(at) = ws.pass(true) {
            return damaged(&ws, at, "while running");
        }
        // The controller may be migrating us at the same moment: then we are busy, and
        // rewrite the working set before asking again, so that its pre-copy sees pages
        // dirtied while it copies (and the monitor is not asked again at once).
        let (before, (result, downtime), after) = loop {
            let before = rdtsc();
            let answer = migrate(MIGRATE_SELF);
            let after = rdtsc();
            if before < last {
                println!("mover: TSC went backwards: {before} after {last}");
                return 1;
            }
            if !retry_later(answer.0) {
                break (before, answer, after);
            }
            if answer.0 == MigrateRefusal::DestinationNotFree.code() {
                not_free += 1;
            } else {
                busy += 1;
            }
            last = after;
            if let Err(at) = ws.pass(true) {
                return damaged(&ws, at, "while the controller migrates it");
            }
        };
        if result != OK {
            println!(
                "mover: migration {round} refused: {} ({result:#x})",
                refusal(result)
            );
            return 1;
        }
        if after < before || after - before < downtime || downtime > budget {
            println!(
                "mover: migration {round}: TSC {before} -> {after}, downtime {downtime} (budget {budget})"
            );
            return 1;
        }
        worst = worst.max(downtime);
        // Asked again at once, the next migration's destination (the placement just
        // left) is still being reported and scrubbed: not free (or the controller's
        // migration of us is under way: busy). Never accepted.
        match migrate(MIGRATE_SELF) {
            (code, _) if code == MigrateRefusal::DestinationNotFree.code() => not_free += 1,
            (code, _) if code == MigrateRefusal::Busy.code() => busy += 1,
            (code, _) => {
                println!(
                    "mover: asked again right after migration {round}: {} ({code:#x}), expected destination not free",
                    refusal(code)
                );
                return 1;
            }
        }
        if let Err(at) = ws.pass(false) {
            return damaged(&ws, at, &alloc::format!("after migration {round}"));
        }
        last = after;
    }
    // Keep checking the working set (read only) and the clock until the controller is
    // done with us. (Rewriting it here too, so that every later controller migration
    // sees dirty pages, hung the monitor at the last migration in two boots: see the
    // report of branch i-mtests.)
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
        if let Err(at) = ws.pass(false) {
            return damaged(&ws, at, "while the controller migrates it");
        }
        let now = rdtsc();
        if now < last {
            println!("mover: TSC went backwards: {now} after {last}");
            return 1;
        }
        last = now;
    }
    println!(
        "mover: {} self-migrations (busy {busy} times, destination not free {not_free} times), worst downtime {worst} cycles, {seq} messages sent, TSC monotonic, working set of {} KiB intact after {} passes",
        cfg.rounds, cfg.working_set_kib, ws.generation
    );
    0
}

/// Migrates the faulter once it is ready: the migration must be abandoned.
fn migrate_faulter(faulter: u64) -> Result<(), ()> {
    let Ok(mut ready) = Receiver::open("ready") else {
        println!("controller: cannot open ready");
        return Err(());
    };
    let mut byte = [0u8; 1];
    if ready.recv(&mut byte).is_err() {
        println!("controller: ready: the faulter never said so");
        return Err(());
    }
    // The faulter's own (refused) requests hold it busy for a moment.
    let mut busy = 0u64;
    let code = loop {
        match migrate(faulter) {
            (code, _) if code == MigrateRefusal::Busy.code() => busy += 1,
            (code, _) => break code,
        }
        spin(1000);
    };
    if code != MigrateRefusal::Abandoned.code() {
        println!(
            "controller: migrating the faulter answered {} ({code:#x}), expected abandoned",
            refusal(code)
        );
        return Err(());
    }
    println!(
        "controller: migration of the faulter abandoned ({code:#x}) after {busy} busy answers"
    );
    Ok(())
}

fn controller(count: u64, ready: Option<&str>, spacing_ms: u64, faulter: u64) -> i32 {
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
    if faulter != 0 && migrate_faulter(faulter).is_err() {
        return 1;
    }
    let (mut moved, mut busy, mut worst) = (0u64, 0u64, 0u64);
    while moved < count {
        match migrate(MOVER) {
            (OK, downtime) => {
                moved += 1;
                worst = worst.max(downtime);
            }
            (code, _) if retry_later(code) => busy += 1,
            (code, _) => {
                println!("controller: migration {moved} refused: {code:#x}");
                return 1;
            }
        }
        // Let the mover run a little at each placement.
        spin(spacing);
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

fn faulter(ctx: &Ctx, me: u64) -> i32 {
    if ctx.launch_count() > 1 {
        println!(
            "faulter: relaunched after its fault (launch {}), exiting",
            ctx.launch_count()
        );
        return 0;
    }
    let Ok(mut ready) = Sender::open("ready") else {
        println!("faulter: cannot open ready");
        return 2;
    };
    let stop_and_copy = me | MIGRATE_STOP_AND_COPY;
    let exceeds = MigrateRefusal::WouldExceedMaxDowntime.code();
    let (code, _) = migrate(stop_and_copy);
    if code != exceeds {
        println!(
            "faulter: stop-and-copy answered {} ({code:#x}), expected would exceed max_downtime",
            refusal(code)
        );
        return 1;
    }
    println!(
        "faulter: stop-and-copy refused: {} ({code:#x}), still running",
        refusal(code)
    );
    if ready.send(&[1]).is_err() {
        println!("faulter: cannot tell the controller");
        return 1;
    }
    // Until the controller's migration of us is under way, the same request is refused
    // by the admission test; once it is, we are busy.
    let code = loop {
        spin(50_000);
        match migrate(stop_and_copy) {
            (code, _) if code == exceeds => {}
            (code, _) => break code,
        }
    };
    if code != MigrateRefusal::Busy.code() {
        println!(
            "faulter: asking again answered {} ({code:#x}), expected busy",
            refusal(code)
        );
        return 1;
    }
    println!(
        "faulter: asking again: {} ({code:#x}), its migration is under way; faulting on purpose (ud2)",
        refusal(code)
    );
    // SAFETY: not sound on purpose: UD2 raises #UD, which (with no IDT of ours) ends in a
    // triple fault during pre-copy; the monitor must abandon the migration and apply
    // on_fault.
    unsafe { core::arch::asm!("ud2", options(nomem, nostack, noreturn)) }
}

/// `clock` (partition-manifests/migration-clock.toml): reads its TSC without pause until
/// the channel `channel` (env `TIME`) brings the controller's TSC, noting the largest step between two reads (the
/// pauses its clock saw); then prints that step and how far its clock is behind the
/// controller's (the pauses it did not see).
fn clock(channel: &str) -> i32 {
    let Ok(mut time) = Receiver::open(channel) else {
        println!("clock: cannot open {channel}");
        return 2;
    };
    let mut buf = [0u8; 8];
    let mut largest = 0u64;
    let mut last = rdtsc();
    let theirs = loop {
        let now = rdtsc();
        if now < last {
            println!("clock: FAILED: the TSC went back from {last} to {now}");
            return 1;
        }
        largest = largest.max(now - last);
        last = now;
        match time.try_recv(&mut buf) {
            Ok(Some(8)) => break u64::from_le_bytes(buf),
            Ok(_) => {}
            Err(e) => {
                println!("clock: time: {e}");
                return 1;
            }
        }
    };
    let behind = i128::from(theirs) - i128::from(rdtsc());
    println!("clock: largest step {largest} cycles, behind the controller by {behind} cycles");
    0
}

/// `clock-controller`: migrates sandboxes 1 and 2 (two `clock`s) `count` times each,
/// taking turns, then sends each its own TSC on `time-1` and `time-2`.
fn clock_controller(count: u64) -> i32 {
    for target in 1..=2u64 {
        let Ok(mut tx) = Sender::open(if target == 1 { "time-1" } else { "time-2" }) else {
            println!("clock-controller: cannot open time-{target}");
            return 2;
        };
        let mut total = 0u64;
        for _ in 0..count {
            let mut backoff = Backoff::new();
            let code = loop {
                match migrate(target) {
                    (code, _) if retry_later(code) => backoff.wait(),
                    (code, downtime) => break if code == OK { Ok(downtime) } else { Err(code) },
                }
            };
            match code {
                Ok(d) => total += d,
                Err(code) => {
                    println!(
                        "clock-controller: migrating {target}: {} ({code:#x})",
                        refusal(code)
                    );
                    return 1;
                }
            }
            spin(20_000);
        }
        println!("clock-controller: sandbox {target}: {count} migrations, downtime {total} cycles in all");
        if tx.send(&rdtsc().to_le_bytes()).is_err() {
            println!("clock-controller: cannot send the time to {target}");
            return 1;
        }
    }
    0
}

/// `bench-subject` (the migration benchmark, `quest-build bench`): until its `done`
/// channel speaks, it dirties its RAM at the rate `mode` names: `idle` (reads its clock
/// only), `paced` (one 4 KiB page of a `working_set_kib` set per 40 000 TSC cycles, about
/// 1 MiB/s at the 10 MHz Bochs TSC) or `all` (rewrites the whole set without pause).
fn bench_subject(mode: &str, working_set_kib: u64, done: &str) -> i32 {
    let Ok(mut rx) = Receiver::open(done) else {
        println!("bench-subject: cannot open {done}");
        return 2;
    };
    let words = usize::try_from(working_set_kib * 128).unwrap_or(0);
    let mut set: Vec<u64> = Vec::new();
    if mode != "idle" && set.try_reserve_exact(words).is_err() {
        println!("bench-subject: no room for a {working_set_kib} KiB working set");
        return 2;
    }
    set.resize(if mode == "idle" { 0 } else { words }, 0);
    let pace = if mode == "paced" { 40_000 } else { 0 };
    let (mut at, mut next, mut byte) = (0usize, rdtsc(), [0u8; 1]);
    loop {
        if !set.is_empty() && rdtsc() >= next {
            // One word per 4 KiB page dirties the page.
            // SAFETY: a write of our own heap word; volatile so it really reaches RAM.
            unsafe { core::ptr::write_volatile(&mut set[at], rdtsc()) };
            at = (at + 512) % set.len();
            next = rdtsc() + pace;
        }
        match rx.try_recv(&mut byte) {
            Ok(Some(_)) => return 0,
            Ok(None) => {}
            Err(e) => {
                println!("bench-subject: {done}: {e}");
                return 1;
            }
        }
    }
}

/// `bench-controller`: migrates subjects 1..=`subjects` (table indices) `precopy` times
/// each, then `stop_and_copy` times with [`MIGRATE_STOP_AND_COPY`], then tells each on
/// `done-<index>`. The monitor's `migrated` records carry the downtimes.
fn bench_controller(subjects: u64, precopy: u64, stop_and_copy: u64) -> i32 {
    for target in 1..=subjects {
        let name = alloc::format!("done-{target}");
        let Ok(mut done) = Sender::open(&name) else {
            println!("bench-controller: cannot open {name}");
            return 2;
        };
        let requests = (0..precopy)
            .map(|_| target)
            .chain((0..stop_and_copy).map(|_| target | MIGRATE_STOP_AND_COPY));
        for rdi in requests {
            let mut backoff = Backoff::new();
            let code = loop {
                match migrate(rdi) {
                    (code, _) if retry_later(code) => backoff.wait(),
                    (code, _) => break code,
                }
            };
            if code != OK {
                println!(
                    "bench-controller: migrating {target}: {} ({code:#x})",
                    refusal(code)
                );
                return 1;
            }
            spin(20_000);
        }
        if done.send(&[1]).is_err() {
            println!("bench-controller: cannot tell {target}");
            return 1;
        }
    }
    0
}
