//! Boot-time calibration: platform constants measured on the real cores after they are
//! started and before any sandbox vCPU runs, printed in the boot log and published to
//! every sandbox on the read-only calibration page (`quest_abi::calibration`).
//!
//! Every started core calls [`run`] once the payloads are verified (`smp::enter`). The
//! boot core coordinates: it measures what needs one core (copy cost, VM exit + entry),
//! then hands out one task at a time to the other cores (`TASK`), which wait in
//! [`worker`]:
//! - IPI delivery: an NMI from the boot core to another core (idle in its task loop)
//!   until the target's NMI gate has counted it, seen on the boot core's clock;
//! - WAIT wake-up: the target sleeps exactly as a vCPU in `WAIT` (`sleep_until_nmi`),
//!   the boot core sets the flag and sends the doorbell NMI and times until the target's
//!   first store after waking arrives back (IPI + wake-up + one line transfer);
//! - per channel, every distinct (writer core, reader core) pair once: a cache-line
//!   ping-pong (round trip median and max), then round-trip TSC exchanges (the offset
//!   from the shortest, `quest_monitor_core::calibration`).
//!
//! Every wait for another core's store spins with `PAUSE` (`core::hint::spin_loop`), as
//! the channel library's waits do: the round trips measured are the ones a spinning
//! endpoint sees, and an emulator that runs its cores in turn (QEMU's single-threaded
//! software emulation) passes the turn on at a `PAUSE`; without it each handover waited
//! for the end of the spinning core's time slice (line round trips of 170 M cycles there).
//!
//! Then the boot core fills the page, prints the `quest: calibration:` records and ends
//! the phase; every core goes on to its vCPU. The arithmetic is in
//! `quest_monitor_core::calibration`, host-tested.

use crate::arch::tsc;
use crate::system::System;
use crate::vmx::calibrate as vmx;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use quest_abi::calibration::{
    ChannelConstants, Constants, Cost, PairCalibration, CALIBRATION_SIZE,
};
use quest_abi::console::{Constant, Record};
use quest_abi::{CoreId, HostPhysAddr, MAX_CHANNELS};
use quest_monitor_core::calibration::{
    self as math, ChannelAccumulator, Exchange, PairCache, PairResult,
};

/// Trials behind every median and maximum.
pub const TRIALS: usize = 32;
/// Bytes copied per copy trial (one page: the largest common message).
const COPY_BYTES: usize = 4096;
/// How long the waker waits after the sleeper announced itself, so that it is halted.
const SLEEP_SETTLE_CYCLES: u64 = 10_000;
/// Distinct core pairs remembered (more are measured again, not remembered).
const PAIR_CACHE: usize = 64;

const TASK_PAIR: u32 = 1;
const TASK_WAKE: u32 = 2;
const TASK_END: u32 = 3;

/// One cache line (and its neighbour, against adjacent-line prefetch) per shared flag.
#[repr(C, align(128))]
struct Line {
    seq: AtomicU64,
    tsc: AtomicU64,
}

impl Line {
    const fn new() -> Self {
        Self {
            seq: AtomicU64::new(0),
            tsc: AtomicU64::new(0),
        }
    }
}

static PING: Line = Line::new();
static PONG: Line = Line::new();
static SLEEPING: Line = Line::new();
static AWAKE: Line = Line::new();
#[repr(C, align(128))]
struct Flag(AtomicU32);
static WAKE_FLAG: Flag = Flag(AtomicU32::new(0));

/// The current task: sequence number (published last), kind, the two cores.
static TASK_SEQ: AtomicU32 = AtomicU32::new(0);
static TASK: [AtomicU32; 3] = [const { AtomicU32::new(0) }; 3];
/// Cores other than the boot core that finished the current task.
static DONE: AtomicU32 = AtomicU32::new(0);
/// Cores other than the boot core waiting in [`worker`].
static READY: AtomicU32 = AtomicU32::new(0);
/// A pair's result when its initiator is not the boot core.
static PAIR_RESULT: spin::Mutex<PairResult> = spin::Mutex::new(PairResult {
    line: Cost { median: 0, max: 0 },
    offset: math::Offset {
        offset: 0,
        uncertainty: 0,
    },
});
/// Host-physical base of the calibration page once it is filled (0 before).
static PAGE_HPA: AtomicU64 = AtomicU64::new(0);

/// The filled calibration page, for the sandboxes' EPT (`None` before calibration).
pub fn page_hpa() -> Option<HostPhysAddr> {
    match PAGE_HPA.load(Ordering::Acquire) {
        0 => None,
        hpa => Some(HostPhysAddr::new(hpa)),
    }
}

fn rdtsc() -> u64 {
    // SAFETY: LFENCE and RDTSC have no side effects; LFENCE keeps the read in order.
    unsafe {
        core::arch::x86_64::_mm_lfence();
        core::arch::x86_64::_rdtsc()
    }
}

/// This core's part of calibration; returns when the phase is over (page filled).
pub fn run(core: CoreId, sys: &'static System) {
    // SAFETY: interrupts are off in the monitor and the platform IDT is loaded (nothing
    // else changed it before the vCPU code runs).
    unsafe { vmx::prepare_core() };
    if core.index() == 0 {
        coordinate(sys);
    } else {
        worker(core);
    }
    // Back to the platform IDT (a core without a vCPU parks with it; `run_core` loads
    // the vCPU IDT again).
    // SAFETY: the platform IDT is complete and shared by every core.
    unsafe { crate::arch::idt::load() };
}

fn worker(core: CoreId) {
    let me = core.as_u32();
    READY.fetch_add(1, Ordering::AcqRel);
    let mut seen = 0;
    loop {
        let seq = TASK_SEQ.load(Ordering::Acquire);
        if seq == seen {
            core::hint::spin_loop();
            continue;
        }
        seen = seq;
        let [kind, a, b] = [0, 1, 2].map(|i| TASK[i].load(Ordering::Relaxed));
        match kind {
            TASK_END => return,
            TASK_PAIR if me == a => *PAIR_RESULT.lock() = initiate_pair(),
            TASK_PAIR if me == b => answer_pair(),
            TASK_WAKE if me == b => sleep_trials(),
            _ => continue,
        }
        DONE.fetch_add(1, Ordering::AcqRel);
    }
}

/// Publishes a task; the boot core then does its own part and waits for `others`.
fn publish(kind: u32, a: u32, b: u32) {
    DONE.store(0, Ordering::Relaxed);
    for (slot, v) in TASK.iter().zip([kind, a, b]) {
        slot.store(v, Ordering::Relaxed);
    }
    TASK_SEQ.fetch_add(1, Ordering::AcqRel);
}

fn wait_done(others: u32) {
    while DONE.load(Ordering::Acquire) < others {
        core::hint::spin_loop();
    }
}

/// The writer side of a pair: TRIALS line round trips, then TRIALS TSC exchanges.
fn initiate_pair() -> PairResult {
    let mut rt = [0u64; TRIALS];
    let mut ex = [Exchange::default(); TRIALS];
    for k in 1..=2 * TRIALS as u64 {
        let t0 = rdtsc();
        PING.seq.store(k, Ordering::Release);
        while PONG.seq.load(Ordering::Acquire) != k {
            core::hint::spin_loop();
        }
        let t1 = rdtsc();
        let i = (k - 1) as usize;
        if i < TRIALS {
            rt[i] = t1.wrapping_sub(t0);
        } else {
            let tb = PONG.tsc.load(Ordering::Relaxed);
            ex[i - TRIALS] = Exchange { t0, tb, t1 };
        }
    }
    PairResult {
        line: math::cost(&mut rt),
        offset: math::offset_from(&ex).unwrap_or_default(),
    }
}

/// The reader side of a pair.
fn answer_pair() {
    for k in 1..=2 * TRIALS as u64 {
        while PING.seq.load(Ordering::Acquire) != k {
            core::hint::spin_loop();
        }
        if k > TRIALS as u64 {
            PONG.tsc.store(rdtsc(), Ordering::Relaxed);
        }
        PONG.seq.store(k, Ordering::Release);
    }
}

/// The sleeper of the wake-up measurement: sleeps as in `WAIT`, TRIALS times.
fn sleep_trials() {
    for k in 1..=TRIALS as u64 {
        SLEEPING.seq.store(k, Ordering::Release);
        while WAKE_FLAG.0.swap(0, Ordering::AcqRel) == 0 {
            vmx::sleep_as_in_wait(&WAKE_FLAG.0);
        }
        AWAKE.seq.store(k, Ordering::Release);
    }
}

/// The boot core's side of the wake-up measurement.
fn wake_trials(apic_id: u32) -> Cost {
    let mut s = [0u64; TRIALS];
    for (k, slot) in (1..).zip(s.iter_mut()) {
        while SLEEPING.seq.load(Ordering::Acquire) != k {
            core::hint::spin_loop();
        }
        let settle = rdtsc();
        while rdtsc().wrapping_sub(settle) < SLEEP_SETTLE_CYCLES {
            core::hint::spin_loop();
        }
        let t0 = rdtsc();
        WAKE_FLAG.0.store(1, Ordering::Release);
        // SAFETY: the target waits in `worker` with the vCPU NMI gate (`prepare_core`).
        unsafe { vmx::send_nmi(apic_id) };
        while AWAKE.seq.load(Ordering::Acquire) != k {
            core::hint::spin_loop();
        }
        *slot = rdtsc().wrapping_sub(t0);
    }
    math::cost(&mut s)
}

/// NMI IPIs to `apic_id` until its gate counted each.
fn ipi_trials(apic_id: u32) -> Cost {
    let mut s = [0u64; TRIALS];
    for slot in s.iter_mut() {
        let before = vmx::nmis_handled();
        let t0 = rdtsc();
        // SAFETY: the target waits in `worker` (or is this core) with the vCPU NMI gate.
        unsafe { vmx::send_nmi(apic_id) };
        while vmx::nmis_handled() == before {
            core::hint::spin_loop();
        }
        *slot = rdtsc().wrapping_sub(t0);
    }
    math::cost(&mut s)
}

/// Copy cost per KiB, cold (both buffers flushed from every cache) and warm.
fn copy_trials() -> (Cost, Cost) {
    let Some(buf) = crate::frame_pool::alloc_zeroed(2 * COPY_BYTES / 4096) else {
        return (Cost::default(), Cost::default());
    };
    let (src, dst) = (buf as *mut u8, (buf as usize + COPY_BYTES) as *mut u8);
    let (mut cold, mut warm) = ([0u64; TRIALS], [0u64; TRIALS]);
    for i in 0..TRIALS {
        for line in (0..2 * COPY_BYTES).step_by(64) {
            // SAFETY: the line lies inside the two frames just allocated.
            unsafe { core::arch::x86_64::_mm_clflush((buf as usize + line) as *const u8) };
        }
        // SAFETY: MFENCE has no side effects; it orders the flushes before the copy.
        unsafe { core::arch::x86_64::_mm_mfence() };
        for slot in [&mut cold[i], &mut warm[i]] {
            let t0 = rdtsc();
            // SAFETY: two disjoint COPY_BYTES buffers in frames this function owns.
            unsafe { core::ptr::copy_nonoverlapping(src, dst, COPY_BYTES) };
            *slot = math::per_kib(rdtsc().wrapping_sub(t0), COPY_BYTES as u64);
        }
    }
    for frame in 0..2 * COPY_BYTES / 4096 {
        crate::frame_pool::free(buf + frame as u64 * 4096);
    }
    (math::cost(&mut cold), math::cost(&mut warm))
}

/// The channel library's own `send` and `recv` (the code every sandbox runs) on a
/// private channel in fresh frames, on this core, cold (every line of the channel and both
/// buffers flushed before each trial): an empty message gives the fixed cost, a 4 KiB one
/// the cost per KiB of record beyond it. `(send fixed, send per KiB, recv fixed, recv
/// per KiB)`.
fn channel_trials() -> [Cost; 4] {
    use quest_channel::{wire, ChannelMemory, Receiver, Sender};
    const DATA: usize = 2 * 4096;
    const FRAMES: usize = DATA / 4096 + 3; // data, ack, message, receive buffer
    let Some(base) = crate::frame_pool::alloc_zeroed(FRAMES) else {
        return [Cost::default(); 4];
    };
    let at = |offset: usize| (base as usize + offset) as *mut u8;
    let memory = ChannelMemory {
        data: at(0),
        data_len: DATA,
        ack: at(DATA),
        ack_len: 4096,
    };
    // SAFETY: FRAMES fresh, identity-mapped, zeroed frames only this function uses: the
    // channel's data and ack areas (accessed only through the endpoints' atomics), then a
    // message and a receive buffer of one page each; one sender, one receiver.
    let ends = unsafe { (Sender::from_memory(memory), Receiver::from_memory(memory)) };
    let (Ok(mut tx), Ok(mut rx)) = ends else {
        return [Cost::default(); 4];
    };
    // SAFETY: the last two frames, disjoint from the channel and from each other.
    let (msg, buf) = unsafe {
        (
            core::slice::from_raw_parts(at(DATA + 4096), 4096),
            core::slice::from_raw_parts_mut(at(DATA + 2 * 4096), 4096),
        )
    };
    let flush = || {
        for line in (0..FRAMES * 4096).step_by(64) {
            // SAFETY: the line lies inside the frames allocated above.
            unsafe { core::arch::x86_64::_mm_clflush(at(line)) };
        }
        // SAFETY: MFENCE has no side effects; it orders the flushes before the trial.
        unsafe { core::arch::x86_64::_mm_mfence() };
    };
    let mut samples = [[0u64; TRIALS]; 4];
    let big = msg.len().min(tx.max_message_len());
    let record = (wire::record_size(big).unwrap_or(0) as u64).max(1);
    for trial in 0..TRIALS {
        let mut one = |len: usize| {
            flush();
            let t0 = rdtsc();
            let sent = tx.try_send(&msg[..len]);
            let t1 = rdtsc();
            let got = rx.try_recv(buf);
            let t2 = rdtsc();
            match (sent, got) {
                (Ok(()), Ok(Some(_))) => (t1.wrapping_sub(t0), t2.wrapping_sub(t1)),
                _ => (0, 0),
            }
        };
        let (send0, recv0) = one(0);
        let (send4, recv4) = one(big);
        let measured = [
            send0,
            math::per_kib(send4.saturating_sub(send0), record),
            recv0,
            math::per_kib(recv4.saturating_sub(recv0), record),
        ];
        for (s, m) in samples.iter_mut().zip(measured) {
            s[trial] = m;
        }
    }
    drop((tx, rx));
    for frame in 0..FRAMES {
        crate::frame_pool::free(base + frame as u64 * 4096);
    }
    samples.map(|mut s| math::cost(&mut s))
}

/// The cores of sandbox `s`.
fn cores_of(sys: &System, s: quest_abi::SandboxId) -> impl Iterator<Item = u32> + '_ {
    sys.table
        .sandbox(s)
        .into_iter()
        .flat_map(|sb| sb.vcpus().map(|v| v.core().as_u32()))
}

/// Measures pair (a, b) (a initiates), with the boot core's part if it is one of them.
fn measure_pair(a: u32, b: u32) -> PairResult {
    PING.seq.store(0, Ordering::Relaxed);
    PONG.seq.store(0, Ordering::Relaxed);
    publish(TASK_PAIR, a, b);
    let others = u32::from(a != 0) + u32::from(b != 0);
    let mine = match (a, b) {
        (0, _) => Some(initiate_pair()),
        (_, 0) => {
            answer_pair();
            None
        }
        _ => None,
    };
    wait_done(others);
    mine.unwrap_or_else(|| *PAIR_RESULT.lock())
}

fn coordinate(sys: &'static System) {
    let start = tsc::now();
    let workers = (sys.started_cores as u32).saturating_sub(1);
    while READY.load(Ordering::Acquire) < workers {
        core::hint::spin_loop();
    }
    let (copy_cold, copy_warm) = copy_trials();
    let [send_fixed, send_per_kib, recv_fixed, recv_per_kib] = channel_trials();
    let mut exits = [0u64; TRIALS];
    let measured = if crate::svm::active() {
        // SAFETY: no vCPU has run on the boot core yet (its vCPU, if any, starts after
        // this phase), interrupts are off, and nobody sends it NMIs during this step.
        unsafe { crate::svm::vm_exit_entry(&mut exits) }
    } else {
        // SAFETY: the boot core has not entered VMX operation (its vCPU, if any, starts
        // after this phase), interrupts are off, and nobody sends it NMIs during this step.
        unsafe { vmx::vm_exit_entry(sys, &mut exits) }
    };
    let vm_exit_entry = match measured {
        Ok(n) => math::cost(&mut exits[..n]),
        Err(e) => crate::boot::refuse(format_args!("calibration: vm exit+entry: {e}")),
    };
    // The IPI and wake-up target: another started core if there is one.
    let other = sys.table.vcpus().map(|v| v.core()).find(|c| c.index() != 0);
    let self_apic = sys.apic_id(CoreId::new(0)).unwrap_or(0);
    let target_apic = other.and_then(|c| sys.apic_id(c)).unwrap_or(self_apic);
    let ipi = ipi_trials(target_apic);
    let wake = match other {
        Some(c) => {
            publish(TASK_WAKE, 0, c.as_u32());
            let cost = wake_trials(target_apic);
            wait_done(1);
            cost
        }
        // One core: nothing can wake it (reported as 0, not measured).
        None => Cost::default(),
    };

    let mut cache = PairCache::<PAIR_CACHE>::new();
    let mut channels = [ChannelConstants::default(); MAX_CHANNELS];
    let mut worst = [(0u32, 0u32); MAX_CHANNELS];
    let mut measured = 0u64;
    for ch in sys.table.channels() {
        let mut acc = ChannelAccumulator::default();
        for w in cores_of(sys, ch.writer()) {
            for r in cores_of(sys, ch.reader()).filter(|&r| r != w) {
                let result = cache.get(w, r).unwrap_or_else(|| {
                    measured += 1;
                    let m = measure_pair(w, r);
                    cache.insert(w, r, m);
                    m
                });
                acc.add(w, r, result);
            }
        }
        if let (Some((c, pair)), Some(slot), Some(at)) = (
            acc.finish(),
            channels.get_mut(ch.index()),
            worst.get_mut(ch.index()),
        ) {
            (*slot, *at) = (c, pair);
        }
    }

    let constants = Constants {
        tsc_khz: sys.tsc_khz,
        trials: TRIALS as u32,
        copy_cold_per_kib: copy_cold,
        copy_warm_per_kib: copy_warm,
        vm_exit_entry,
        ipi,
        wake,
        calibration_cycles: tsc::now().wrapping_sub(start),
    };
    let n = sys.table.channel_count().min(MAX_CHANNELS);
    fill_page(&constants, &channels[..n]);
    crate::println!(
        "{}",
        Record::CalibrationCopy {
            cold: copy_cold,
            warm: copy_warm
        }
    );
    crate::println!(
        "{}",
        Record::CalibrationChannelOps {
            send_fixed,
            send_per_kib,
            recv_fixed,
            recv_per_kib,
        }
    );
    for (what, cost) in Constant::ALL.into_iter().zip([vm_exit_entry, ipi, wake]) {
        crate::println!("{}", Record::CalibrationCost { what, cost });
    }
    for ch in sys.table.channels().take(n) {
        let (c, (w, r)) = (channels[ch.index()], worst[ch.index()]);
        crate::println!(
            "{}",
            Record::CalibrationChannel {
                channel: ch.name(),
                pair: PairCalibration {
                    writer_core: w,
                    reader_core: r,
                    line: c.line_round_trip,
                    tsc_offset: c.tsc_offset,
                    uncertainty: c.offset_uncertainty,
                },
            }
        );
    }
    crate::println!(
        "{}",
        Record::CalibrationDone {
            cycles: constants.calibration_cycles,
            trials: TRIALS as u64,
            pairs: measured,
        }
    );
    publish(TASK_END, 0, 0);
}

/// Writes the calibration page into two fresh frames and publishes it.
fn fill_page(constants: &Constants, channels: &[ChannelConstants]) {
    let Some(page) = crate::frame_pool::alloc_zeroed(CALIBRATION_SIZE / 4096) else {
        crate::boot::refuse("calibration: out of monitor frames for the calibration page");
    };
    // SAFETY: CALIBRATION_SIZE bytes of fresh, identity-mapped frames that only this
    // core refers to until PAGE_HPA publishes them (read-only from then on).
    let bytes = unsafe { core::slice::from_raw_parts_mut(page as *mut u8, CALIBRATION_SIZE) };
    if let Err(e) = quest_abi::calibration::encode(constants, channels, bytes) {
        crate::boot::refuse(format_args!("calibration: {e}"));
    }
    PAGE_HPA.store(page, Ordering::Release);
}
