//! irq-probe: device interrupts in a sandbox that owns QEMU's `edu` device (1234:11e8),
//! `partition-manifests/irq.toml`.
//!
//! Probe (default; vCPU 0 drives, vCPU 1 takes interrupts too so a misrouted one shows):
//! 1. finds edu by scanning the bus, reads its ID register (0x010000ed) through BAR0,
//!    which the monitor maps where firmware put it, and its Interrupt Line;
//! 2. INTx: `ROUNDS` times writes edu's "raise interrupt" register (0x60) and waits for
//!    the handler at vector 32 + line, which acknowledges (0x64) and EOIs;
//! 3. MSI: programs edu's MSI capability (virtual APIC ID 0, vector 0x60), the same
//!    rounds, then 4 to virtual APIC ID 1 (they must arrive on vCPU 1);
//! 4. hostile messages: an MSI to APIC ID 2 (the bystander's core, outside this sandbox)
//!    and one with NMI delivery: the monitor refuses both (MSI stays off in the device),
//!    nothing arrives; a valid message works again afterwards;
//! 5. asks to migrate itself: refused, it owns a device.
//!
//! Each interrupt phase prints the latency from the raise (TSC before the MMIO write) to
//! the handler's first instruction, median / p99 / max over the rounds, and the
//! sandbox's VM exits during the phase (`exit_count` hypercall before and after).
//!
//! RTC (`args = ["rtc"]`, `partition-manifests/irq-rtc.toml`): the sandbox owns the CMOS
//! clock's ports and line 8 (`{ port = "0x70-0x71", irq = 8 }`): an ISA device every PC
//! emulator has (Bochs too, where VT-x runs): `ROUNDS` periodic interrupts (1024 Hz) at
//! vector 40, each acknowledged (register C) and EOI'd, and the exits they cost.
//!
//! Bystander (`args = ["bystander"]`): no device; takes every vector 32-255 and counts
//! them while the probe runs (until the probe's message on channel `done`); it must get
//! none.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use quest_rt::interrupts;
use quest_rt::pci::{self, PciId};
use quest_rt::quest_abi::hypercall::{Hypercall, MigrateRefusal, MIGRATE_SELF};
use quest_rt::quest_abi::layout::BARE_STACK_SIZE;
use quest_rt::time::rdtsc;
use quest_rt::{println, Ctx};

quest_rt::entry!(main);

/// edu's vendor and device ID.
const EDU_ID: PciId = PciId {
    vendor: 0x1234,
    device: 0x11e8,
};
/// What edu's register 0x00 reads.
const EDU_IDENT: u32 = 0x0100_00ed;
/// The vector the probe's MSI messages carry.
const MSI_VECTOR: u8 = 0x60;
/// Most rounds whose latency is kept.
const MAX_ROUNDS: usize = 1024;
/// Rounds to virtual APIC ID 1.
const TO_VCPU1: u64 = 4;

/// Each vCPU's stack top (roughly), to tell which vCPU a handler runs on.
static STACK_TOP: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
/// edu's BAR0.
static EDU: AtomicU64 = AtomicU64::new(0);
/// The TSC just before the last raise.
static RAISED_AT: AtomicU64 = AtomicU64::new(0);
/// Interrupts handled per vCPU (index 2: on neither, by stack).
static HANDLED: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
/// The vector the current phase expects; others count as stray.
static EXPECTED: AtomicU64 = AtomicU64::new(0);
/// Interrupts with another vector.
static STRAY: AtomicU64 = AtomicU64::new(0);
/// Latencies of the current phase, and how many.
static LATENCY: [AtomicU64; MAX_ROUNDS] = [const { AtomicU64::new(0) }; MAX_ROUNDS];
static LATENCIES: AtomicUsize = AtomicUsize::new(0);
/// The probe is done (vCPU 1 returns).
static DONE: AtomicBool = AtomicBool::new(false);

fn main(ctx: &Ctx) -> i32 {
    let marker = 0u8;
    if let Some(top) = STACK_TOP.get(ctx.vcpu() as usize) {
        top.store(&raw const marker as u64, Ordering::Release);
    }
    let mode = ctx.args().args().next();
    if mode == Some("bystander") {
        return if ctx.vcpu() == 0 { bystander() } else { 0 };
    }
    interrupts::load();
    if ctx.vcpu() != 0 {
        interrupts::enable();
        while !DONE.load(Ordering::Acquire) {
            core::hint::spin_loop();
        }
        interrupts::disable();
        return 0;
    }
    let rounds = ctx
        .args()
        .var("ROUNDS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(64u64)
        .min(MAX_ROUNDS as u64);
    let ok = if mode == Some("rtc") {
        rtc(rounds)
    } else {
        probe(rounds)
    };
    DONE.store(true, Ordering::Release);
    match quest_rt::quest_channel::Sender::open("done") {
        Ok(mut tx) => {
            let _ = tx.send(b"done");
        }
        Err(e) => println!("irq-probe: cannot open channel done: {e}"),
    }
    if ok {
        0
    } else {
        1
    }
}

/// Which vCPU the caller runs on, from where its stack is (2: neither).
fn which_vcpu() -> usize {
    let marker = 0u8;
    let sp = &raw const marker as u64;
    STACK_TOP
        .iter()
        .position(|top| {
            let top = top.load(Ordering::Acquire);
            sp <= top && sp > top.saturating_sub(BARE_STACK_SIZE)
        })
        .unwrap_or(2)
}

/// An edu register.
fn edu(offset: u64) -> *mut u32 {
    (EDU.load(Ordering::Relaxed) + offset) as *mut u32
}

fn edu_read(offset: u64) -> u32 {
    // SAFETY: edu's BAR0 (1 MiB), mapped by the monitor and by `map_device`; a 4-byte
    // aligned register below 0x80, which edu reads in 4 bytes.
    unsafe { edu(offset).read_volatile() }
}

fn edu_write(offset: u64, value: u32) {
    // SAFETY: as in `edu_read`.
    unsafe { edu(offset).write_volatile(value) }
}

/// The device's handler: acknowledge at edu, count, time, EOI.
fn on_interrupt(vector: u8) {
    let now = rdtsc();
    let vcpu = which_vcpu();
    let status = edu_read(0x24);
    edu_write(0x64, status);
    if u64::from(vector) != EXPECTED.load(Ordering::Relaxed) {
        STRAY.fetch_add(1, Ordering::Relaxed);
    }
    let slot = LATENCIES.fetch_add(1, Ordering::Relaxed);
    if let Some(l) = LATENCY.get(slot) {
        l.store(
            now.wrapping_sub(RAISED_AT.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
    }
    HANDLED[vcpu].fetch_add(1, Ordering::Release);
    interrupts::eoi();
}

/// Every other vector: counted as stray.
fn on_stray(_vector: u8) {
    STRAY.fetch_add(1, Ordering::Relaxed);
    interrupts::eoi();
}

fn handled() -> u64 {
    HANDLED.iter().map(|h| h.load(Ordering::Acquire)).sum()
}

/// Spins until `done` or `cycles` TSC cycles pass; whether `done`.
fn wait_for(cycles: u64, done: impl Fn() -> bool) -> bool {
    let start = rdtsc();
    while !done() {
        if rdtsc().wrapping_sub(start) > cycles {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

/// TSC cycles of 1 s (a generous bound on one interrupt's arrival).
fn second() -> u64 {
    u64::from(quest_rt::time::tsc_khz().max(1)) * 1000
}

/// Raises one interrupt at edu and waits for its handler; whether it came.
fn raise_and_wait() -> bool {
    let before = handled();
    RAISED_AT.store(rdtsc(), Ordering::Relaxed);
    edu_write(0x60, 1);
    wait_for(second(), || handled() > before)
}

/// One phase's numbers.
struct Phase {
    arrived: u64,
    on: [u64; 3],
    median: u64,
    p99: u64,
    max: u64,
    exits: u64,
}

/// Runs `rounds` raises and measures them.
fn phase(rounds: u64, vector: u8) -> Phase {
    EXPECTED.store(u64::from(vector), Ordering::Relaxed);
    LATENCIES.store(0, Ordering::Relaxed);
    let on_before: [u64; 3] = core::array::from_fn(|i| HANDLED[i].load(Ordering::Acquire));
    let mut arrived = 0;
    let start = quest_rt::hypercall::exit_count();
    for _ in 0..rounds {
        if raise_and_wait() {
            arrived += 1;
        } else {
            edu_write(0x64, 1); // never came: clear it so the next raise is a new one
        }
    }
    // The second call counts itself.
    let exits = quest_rt::hypercall::exit_count().saturating_sub(start + 1);
    let n = LATENCIES.load(Ordering::Relaxed).min(MAX_ROUNDS);
    let mut sorted = [0u64; MAX_ROUNDS];
    for (s, l) in sorted.iter_mut().zip(&LATENCY[..n]) {
        *s = l.load(Ordering::Relaxed);
    }
    let sorted = &mut sorted[..n];
    sorted.sort_unstable();
    let at = |q: usize| {
        sorted
            .get((n * q / 100).min(n.saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    Phase {
        arrived,
        on: core::array::from_fn(|i| HANDLED[i].load(Ordering::Acquire) - on_before[i]),
        median: at(50),
        p99: at(99),
        max: sorted.last().copied().unwrap_or(0),
        exits,
    }
}

fn report(name: &str, vector: u8, rounds: u64, p: &Phase) {
    println!(
        "irq-probe: {name}: {} of {rounds} arrived (vector {vector}; on vCPU 0: {}, vCPU 1: {}, elsewhere: {}); latency median {} p99 {} max {} cycles; {} exits ({}.{:02} per interrupt)",
        p.arrived,
        p.on[0],
        p.on[1],
        p.on[2],
        p.median,
        p.p99,
        p.max,
        p.exits,
        p.exits / rounds.max(1),
        p.exits * 100 / rounds.max(1) % 100
    );
}

/// The probe proper (vCPU 0); whether every check passed.
fn probe(rounds: u64) -> bool {
    let Some(f) = pci::find(EDU_ID, 0) else {
        println!("irq-probe: no edu device (1234:11e8) in this sandbox");
        return false;
    };
    let bar0 = u64::from(pci::read32(f, pci::BAR0) & !0xf);
    let p = match quest_rt::paging::map_device(bar0) {
        Ok(p) => p,
        Err(e) => {
            println!("irq-probe: cannot map BAR0 {bar0:#x}: {e}");
            return false;
        }
    };
    EDU.store(p as u64, Ordering::Relaxed);
    let command = pci::command(f);
    pci::write16(
        f,
        pci::COMMAND,
        command | pci::COMMAND_MEMORY | pci::COMMAND_BUS_MASTER,
    );
    let ident = edu_read(0);
    let interrupt = pci::read32(f, pci::INTERRUPT);
    let (line, pin) = (interrupt as u8, (interrupt >> 8) as u8);
    let bus_master = pci::command(f) & pci::COMMAND_BUS_MASTER != 0;
    println!(
        "irq-probe: edu at {f}, BAR0 {bar0:#x} reads {ident:#010x}, INT{} line {line}, bus master {}",
        (b'A' + pin.saturating_sub(1)) as char,
        if bus_master { "on" } else { "refused" }
    );
    let mut ok = ident == EDU_IDENT;
    for v in interrupts::FIRST_VECTOR..=255 {
        interrupts::set_handler(v, on_stray);
    }
    interrupts::enable();

    // INTx: vector 32 + the line the monitor routed.
    if line > 15 {
        println!("irq-probe: INTx: no line routed");
        ok = false;
    } else {
        let vector = 32 + line;
        interrupts::set_handler(vector, on_interrupt);
        let p = phase(rounds, vector);
        report("INTx", vector, rounds, &p);
        ok &= p.arrived == rounds && p.on[0] == rounds;
        interrupts::set_handler(vector, on_stray);
    }

    // MSI to virtual APIC ID 0, then 1.
    let Some(cap) = pci::capability(f, pci::CAP_MSI) else {
        println!("irq-probe: MSI: no capability");
        return false;
    };
    let control = (pci::read32(f, cap) >> 16) as u16;
    let data_at = if control & (1 << 7) != 0 {
        cap + 12
    } else {
        cap + 8
    };
    pci::write16(f, pci::COMMAND, pci::command(f) | pci::COMMAND_INTX_DISABLE);
    let program = |apic_id: u32, data: u32| {
        pci::write32(f, cap + 4, 0xfee0_0000 | apic_id << 12);
        if data_at == cap + 12 {
            pci::write32(f, cap + 8, 0);
        }
        pci::write16(f, data_at, data as u16);
    };
    program(0, u32::from(MSI_VECTOR));
    pci::write16(f, cap + 2, control | 1);
    interrupts::set_handler(MSI_VECTOR, on_interrupt);
    let p = phase(rounds, MSI_VECTOR);
    report("MSI", MSI_VECTOR, rounds, &p);
    ok &= p.arrived == rounds && p.on[0] == rounds;
    program(1, u32::from(MSI_VECTOR));
    let p = phase(TO_VCPU1, MSI_VECTOR);
    println!(
        "irq-probe: MSI to APIC ID 1: {} of {TO_VCPU1} arrived on vCPU 1 ({} elsewhere)",
        p.on[1],
        p.on[0] + p.on[2]
    );
    ok &= p.on[1] == TO_VCPU1;

    // Hostile messages: refused by the monitor, nothing arrives anywhere.
    for (what, apic_id, data) in [
        (
            "MSI to APIC ID 2 (outside the sandbox)",
            2,
            u32::from(MSI_VECTOR),
        ),
        ("MSI with NMI delivery", 0, 0x0400 | u32::from(MSI_VECTOR)),
    ] {
        program(apic_id, data);
        let before = handled();
        let stray = STRAY.load(Ordering::Relaxed);
        edu_write(0x60, 1);
        let came = wait_for(second() / 10, || handled() > before);
        edu_write(0x64, 1);
        let strays = STRAY.load(Ordering::Relaxed) - stray;
        println!(
            "irq-probe: {what}: {} (interrupts {}, stray {strays})",
            if came { "DELIVERED" } else { "nothing arrived" },
            handled() - before
        );
        ok &= !came && strays == 0;
    }
    program(0, u32::from(MSI_VECTOR));
    let again = raise_and_wait();
    println!(
        "irq-probe: MSI valid again: {}",
        if again { "arrived" } else { "LOST" }
    );
    ok &= again;
    interrupts::disable();

    let answer = quest_rt::hypercall::hypercall(Hypercall::Migrate, MIGRATE_SELF, 0);
    let refusal = MigrateRefusal::from_code(answer);
    println!(
        "irq-probe: migration refused: {}",
        refusal.map_or("NOT REFUSED", MigrateRefusal::as_str)
    );
    ok &= refusal == Some(MigrateRefusal::OwnsDevices);
    let stray = STRAY.load(Ordering::Relaxed);
    println!(
        "irq-probe: {} stray interrupts; {}",
        stray,
        if ok && stray == 0 {
            "all checks passed"
        } else {
            "FAILED"
        }
    );
    ok && stray == 0
}

/// CMOS register `reg` (NMI stays enabled: bit 7 of the index clear).
fn cmos_read(reg: u8) -> u8 {
    let value: u8;
    // SAFETY: the CMOS index and data ports, which this sandbox owns in rtc mode.
    unsafe {
        core::arch::asm!("out 0x70, al", in("al") reg, options(nostack));
        core::arch::asm!("in al, 0x71", out("al") value, options(nostack));
    }
    value
}

fn cmos_write(reg: u8, value: u8) {
    // SAFETY: as in `cmos_read`.
    unsafe {
        core::arch::asm!("out 0x70, al", in("al") reg, options(nostack));
        core::arch::asm!("out 0x71, al", in("al") value, options(nostack));
    }
}

/// RTC periodic interrupts seen.
static TICKS: AtomicU64 = AtomicU64::new(0);

/// The RTC's handler: read register C (acknowledges the interrupt), count, EOI.
fn on_rtc(vector: u8) {
    let flags = cmos_read(0x0c);
    if which_vcpu() != 0
        || u64::from(vector) != EXPECTED.load(Ordering::Relaxed)
        || flags & 0x40 == 0
    {
        STRAY.fetch_add(1, Ordering::Relaxed);
    } else {
        TICKS.fetch_add(1, Ordering::Release);
    }
    interrupts::eoi();
}

/// `rounds` periodic RTC interrupts (line 8, vector 40) and the exits they cost.
fn rtc(rounds: u64) -> bool {
    const LINE: u8 = 8;
    let vector = 32 + LINE;
    EXPECTED.store(u64::from(vector), Ordering::Relaxed);
    for v in interrupts::FIRST_VECTOR..=255 {
        interrupts::set_handler(v, on_stray);
    }
    interrupts::set_handler(vector, on_rtc);
    let b = cmos_read(0x0b);
    // Register A: the 32.768 kHz time base, rate 6 (1024 Hz); B: periodic interrupts on.
    cmos_write(0x0a, 0x26);
    cmos_read(0x0c);
    let start = quest_rt::hypercall::exit_count();
    // The CMOS index/data pair is shared with the handler (it selects register C): the
    // main flow touches it only with interrupts off, or a tick between its index and
    // data accesses would make it write B's value into C and leave PIE on.
    cmos_write(0x0b, b | 0x40);
    interrupts::enable();
    let came = wait_for(10 * second(), || TICKS.load(Ordering::Acquire) >= rounds);
    interrupts::disable();
    cmos_write(0x0b, b & !0x40);
    let exits = quest_rt::hypercall::exit_count().saturating_sub(start + 1);
    cmos_read(0x0c);
    let ticks = TICKS.load(Ordering::Acquire);
    let stray = STRAY.load(Ordering::Relaxed);
    println!(
        "irq-probe: RTC: {ticks} of {rounds} periodic interrupts on vCPU 0 (vector {vector}), {stray} stray; {exits} exits ({}.{:02} per interrupt)",
        exits / ticks.max(1),
        exits * 100 / ticks.max(1) % 100
    );
    came && stray == 0
}

/// The bystander: counts every interrupt it gets until the probe says it is done.
fn bystander() -> i32 {
    let functions = pci::functions().count();
    println!("irq-probe: bystander sees {functions} PCI functions");
    let Ok(mut rx) = quest_rt::quest_channel::Receiver::open("done") else {
        println!("irq-probe: bystander: no channel done");
        return 2;
    };
    for v in interrupts::FIRST_VECTOR..=255 {
        interrupts::set_handler(v, on_stray);
    }
    interrupts::load();
    interrupts::enable();
    let mut buf = [0u8; 16];
    loop {
        match rx.try_recv(&mut buf) {
            Ok(Some(_)) => break,
            Ok(None) => core::hint::spin_loop(),
            Err(e) => {
                println!("irq-probe: bystander: {e}");
                return 2;
            }
        }
    }
    interrupts::disable();
    let stray = STRAY.load(Ordering::Relaxed);
    println!("irq-probe: bystander got {stray} interrupts while the probe ran");
    if stray == 0 && functions == 0 {
        0
    } else {
        1
    }
}
