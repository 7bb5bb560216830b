//! Launching, stopping, restarting and ending sandboxes, and the final summary.
//!
//! Protocol (all vCPUs of a sandbox run this on their own cores):
//! - Launch generation `g` (= launch count) starts when `generation` becomes `g`: the
//!   boot contents are in RAM and the launch values patched. vCPU 0 does that for g = 1,
//!   the stopping core for restarts.
//! - The first core to decide that the sandbox stops (exit hypercall or fault) wins the
//!   `stop` flag and becomes the leader; every vCPU checks the flag before each VM
//!   entry, and the leader sends NMI IPIs (NMI exiting is on) until every other vCPU
//!   has parked (`parked[i] == g`). Only then does it reload memory (restart) or record
//!   the final status, so no vCPU ever runs on memory being rewritten.
//! - When the last sandbox ends, its leader prints the summary and shuts down.

use super::console_out;
use super::instructions as vmx;
use super::sandbox;
use super::vcpu::{Action, Fault, FaultKind, Vcpu};
use crate::sandboxes::{
    self, state, SandboxState, STATUS_EXITED, STATUS_HALTED, STATUS_NOT_STARTED, STATUS_RUNNING,
    STOP_MIGRATE,
};
use crate::system::System;
use core::sync::atomic::Ordering;
use quest_abi::console::{Reasons, Record, SandboxEnd, SandboxSummary};
use quest_abi::{GuestPhysAddr, OnFault};
use quest_monitor_core::exit::{reason_name, reinjection, REASON_COUNT};
use quest_monitor_core::vmcs_fields::field32;

/// A sandbox is launched at most this often (first boot + restarts).
const MAX_LAUNCHES: u32 = 8;
/// TSC cycles to wait for a vCPU to park before sending the NMI again.
const NMI_RETRY_CYCLES: u64 = 2_000_000;

/// How a vCPU's run ended.
enum Stopped {
    /// This core decided the stop and must finish it.
    Leader(Action),
    /// Another core stopped the sandbox.
    Follower,
    /// The sandbox migrates: the vCPU leaves this core.
    Migrate,
}

/// Runs `v`'s vCPU on this core for as long as its sandbox lives; returns when it moved
/// to another core (`migrate`).
pub fn run(mut v: Vcpu) {
    let st = state(v.sandbox);
    let mut generation = 0u32;
    if v.arrived.is_none() && v.index == 0 && st.generation.load(Ordering::Acquire) == 0 {
        patch_launch_values(&v, 1);
        st.generation.store(1, Ordering::Release);
    }
    loop {
        if let Some(g) = v.arrived.take() {
            // Resumes where it left its old core.
            generation = g;
        } else {
            generation = wait_for_launch(st, generation);
            if let Err(f) = prepare_vcpu(&mut v) {
                crate::println!(
                    "quest: sandbox '{}' core {}: cannot set up its vCPU: {f:?}",
                    v.name,
                    v.core
                );
            }
        }
        let stopped = run_until_stop(&mut v, st);
        if let Stopped::Migrate = stopped {
            super::migrate::hand_off(v, generation);
            return;
        }
        v.line.flush(|l| console_out::print_line(v.name, l));
        st.parked[v.index].store(generation, Ordering::Release);
        if let Stopped::Leader(action) = stopped {
            lead_stop(&v, st, action, generation);
        }
    }
}

fn wait_for_launch(st: &SandboxState, current: u32) -> u32 {
    loop {
        let g = st.generation.load(Ordering::Acquire);
        // A migration may begin as soon as the launch is published: launch anyway, and
        // leave for the standby core before the first entry.
        if g > current && matches!(st.stop.load(Ordering::Acquire), 0 | STOP_MIGRATE) {
            return g;
        }
        if st.status.load(Ordering::Acquire) != STATUS_RUNNING {
            park_forever();
        }
        // The IOMMU's fault NMI may come here (this core is its fault core).
        crate::iommu::idle();
        core::hint::spin_loop();
    }
}

/// Writes the launch state into the VMCS and drops stale translations.
fn prepare_vcpu(v: &mut Vcpu) -> Result<(), vmx::VmFail> {
    v.regs = vmx::GuestRegs::default();
    v.regs.0[vmx::reg::RDI] = v.entry.rdi();
    v.regs.0[vmx::reg::RSI] = v.entry.rsi();
    v.line.clear();
    v.mem = super::guest_mem::GuestMem::of(v.sys, v.sandbox);
    if crate::svm::active() {
        return crate::svm::prepare(v).map_err(|_| vmx::VmFail::Invalid);
    }
    // SAFETY: this vCPU's VMCS is current on this core (made so in `run_core`).
    unsafe { super::vmcs::write_guest_state(&v.caps, &v.sandbox_view, &v.entry)? };
    let res = sandbox::resources(v.sys, v.sandbox).map_err(|_| vmx::VmFail::Invalid)?;
    // SAFETY: VMX is on; the CPU supports single-context INVEPT (checked in caps) and
    // INVVPID when `caps.invvpid`.
    unsafe {
        vmx::invept_single(res.eptp)?;
        if v.caps.invvpid {
            vmx::invvpid_single(super::vpid(v.sandbox))?;
        }
    }
    Ok(())
}

fn run_until_stop(v: &mut Vcpu, st: &SandboxState) -> Stopped {
    loop {
        match st.stop.load(Ordering::Acquire) {
            0 => {}
            STOP_MIGRATE => return Stopped::Migrate,
            _ => return Stopped::Follower,
        }
        if let Some(action) = v.pending.take() {
            // An exit or fault that came while the sandbox migrated: decided here.
            if let Some(stopped) = decide(v, st, action) {
                return stopped;
            }
        }
        if let Some(action) = crate::iommu::before_entry(v) {
            // One of its devices' DMA faulted (the IOMMU refused it).
            st.faults.fetch_add(1, Ordering::Relaxed);
            if let Some(stopped) = decide(v, st, action) {
                return stopped;
            }
        }
        if !v.entered_once {
            // Counted (and the boot cost printed, by the last vCPU) before the entry, so
            // the line appears even if the guest never exits.
            v.entered_once = true;
            super::boot_cost::entered(v, rdtsc());
        }
        let action = if crate::svm::active() {
            crate::svm::enter(v, st)
        } else {
            enter_vmx(v, st)
        };
        if let Action::Fault(_) = action {
            st.faults.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(stopped) = decide(v, st, action) {
            return stopped;
        }
    }
}

/// One VM entry and the handling of the exit that ends it (VT-x).
fn enter_vmx(v: &mut Vcpu, st: &SandboxState) -> Action {
    super::migrate::entering(v);
    // SAFETY: the VMCS is current and complete (controls, host and guest state).
    let entered = unsafe { vmx::enter_guest(&mut v.regs, v.launched) };
    super::migrate::left_guest(v);
    match entered {
        Ok(()) => {
            v.launched = true;
            reinject_interrupted_event();
            // SAFETY: right after a VM exit with this VMCS current.
            let raw = unsafe { vmx::read32(field32::EXIT_REASON) };
            st.count_exit(raw);
            super::handlers::handle(v, raw)
        }
        Err(e) => {
            let error = match e {
                // SAFETY: VMfailValid leaves the error number in the current VMCS.
                vmx::VmFail::Valid => unsafe { vmx::read32(field32::VM_INSTRUCTION_ERROR) },
                vmx::VmFail::Invalid => 0,
            };
            Action::fault(FaultKind::EntryFailed { reason: 0, error })
        }
    }
}

/// Injects again, at the next entry, an event whose delivery this exit interrupted
/// (`exit::reinjection`): a guest interrupt the monitor's NMI cut into is not lost. A
/// handler that injects an event of its own overwrites it (none does on exits that can
/// interrupt a delivery).
fn reinject_interrupted_event() {
    // SAFETY: right after a VM exit with this vCPU's VMCS current; the values written
    // are the processor's own description of the interrupted event.
    unsafe {
        let Some(r) = reinjection(vmx::read32(field32::IDT_VECTORING_INFO)) else {
            return;
        };
        let _ = vmx::write32(field32::ENTRY_INTERRUPTION_INFO, r.info);
        if r.error_code {
            let code = vmx::read32(field32::IDT_VECTORING_ERROR_CODE);
            let _ = vmx::write32(field32::ENTRY_EXCEPTION_ERROR_CODE, code);
        }
        if r.instruction_length {
            let len = vmx::read32(field32::EXIT_INSTRUCTION_LENGTH);
            let _ = vmx::write32(field32::ENTRY_INSTRUCTION_LENGTH, len);
        }
    }
}

/// What an exit or fault does to the run: this core leads the stop, another already
/// does, or (during a migration) the decision moves with the vCPU and is taken on its
/// new core. `None`: go on.
fn decide(v: &mut Vcpu, st: &SandboxState, action: Action) -> Option<Stopped> {
    if let Action::Continue = action {
        return None;
    }
    match st
        .stop
        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
    {
        Ok(_) => Some(Stopped::Leader(action)),
        Err(STOP_MIGRATE) => {
            v.pending = Some(action);
            Some(Stopped::Migrate)
        }
        Err(_) => {
            if let Action::Fault(f) = action {
                report(v, &f, "sandbox already stopping");
            }
            Some(Stopped::Follower)
        }
    }
}

fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Sends NMIs to every other vCPU of the sandbox (on the cores its placement gives
/// them) until each has parked.
fn stop_others(v: &Vcpu, st: &SandboxState, generation: u32) {
    let placement = sandboxes::record(v.sandbox).placement();
    for (i, &core) in placement.cores.as_slice().iter().enumerate() {
        if i == v.index {
            continue;
        }
        let Some(apic_id) = v.sys.apic_id(core) else {
            continue;
        };
        while st.parked[i].load(Ordering::Acquire) < generation {
            // SAFETY: an NMI to a vCPU core of this sandbox; vCPU cores handle NMIs in the
            // guest (VM exit) and in the monitor (`sleep::vmx_host_nmi`).
            unsafe { super::host::send_nmi(apic_id) };
            let start = rdtsc();
            while st.parked[i].load(Ordering::Acquire) < generation
                && rdtsc().wrapping_sub(start) < NMI_RETRY_CYCLES
            {
                core::hint::spin_loop();
            }
        }
    }
}

fn report(v: &Vcpu, f: &Fault, outcome: &str) {
    let rip = v.rip();
    match f.addr {
        Some(addr) => crate::println!(
            "quest: sandbox '{}' core {}: {} at rip={rip:#x} addr={addr:#x} -> {outcome}",
            v.name,
            v.core,
            f.kind
        ),
        None => crate::println!(
            "quest: sandbox '{}' core {}: {} at rip={rip:#x} -> {outcome}",
            v.name,
            v.core,
            f.kind
        ),
    }
}

/// The leader's part of a stop. Returns only when the sandbox relaunches.
fn lead_stop(v: &Vcpu, st: &SandboxState, action: Action, generation: u32) {
    stop_others(v, st, generation);
    if !matches!(action, Action::Continue) {
        // Every vCPU is parked: its devices stop mastering the bus and interrupting.
        let restart = matches!(action, Action::Fault(_))
            && v.sandbox_view.on_fault() == OnFault::Restart
            && generation < MAX_LAUNCHES;
        crate::pci::quiesce(v.sandbox, restart);
        if !restart {
            crate::interrupts::quiesce(v.sandbox);
        }
    }
    let fault = match action {
        Action::Exit(code) => {
            st.exit_code.store(code, Ordering::Relaxed);
            st.status.store(STATUS_EXITED, Ordering::Release);
            crate::println!("quest: sandbox '{}' exited with status {code}", v.name);
            finish(v.sys);
        }
        Action::Fault(f) => f,
        Action::Continue => return,
    };
    match v.sandbox_view.on_fault() {
        OnFault::Restart if generation < MAX_LAUNCHES => {
            report(v, &fault, "restarting");
            v.sys.reload_sandbox(v.sandbox);
            patch_launch_values(v, generation + 1);
            st.stop.store(0, Ordering::Release);
            st.generation.store(generation + 1, Ordering::Release);
        }
        OnFault::Restart => {
            report(v, &fault, "halted (restart limit reached)");
            st.status.store(STATUS_HALTED, Ordering::Release);
            finish(v.sys);
        }
        OnFault::HaltSandbox => {
            report(v, &fault, "halted");
            st.status.store(STATUS_HALTED, Ordering::Release);
            finish(v.sys);
        }
        OnFault::HaltSystem => {
            report(v, &fault, "halting system");
            st.status.store(STATUS_HALTED, Ordering::Release);
            summary(v.sys);
            crate::shutdown::shutdown(false);
        }
    }
}

/// Sandbox `s` is not started (a PCI function it needs is absent; the boot log said
/// so): its vCPU 0's core counts it as ended, never started (the summary says so);
/// every core of it parks.
pub fn not_started(sys: &System, s: quest_abi::SandboxId, vcpu: usize) -> ! {
    if vcpu == 0 {
        state(s).status.store(STATUS_NOT_STARTED, Ordering::Release);
        finish(sys);
    }
    park_forever()
}

/// Records one more finished sandbox; the last one prints the summary and shuts down.
fn finish(sys: &System) -> ! {
    let done = sandboxes::finish_one();
    if done == sys.table.sandbox_count() {
        let ok = summary(sys);
        crate::shutdown::shutdown(ok);
    }
    park_forever()
}

/// Prints the per-sandbox summary; returns whether every sandbox exited with status 0.
pub fn summary(sys: &System) -> bool {
    let mut all_ok = true;
    crate::println!("{}", Record::SummaryStart);
    for sandbox in sys.table.sandboxes() {
        let st = state(sandbox.id());
        let status = st.status.load(Ordering::Acquire);
        let code = st.exit_code.load(Ordering::Relaxed);
        all_ok &= status == STATUS_EXITED && code == 0;
        let mut counts = [("", 0u64); REASON_COUNT];
        for (r, slot) in counts.iter_mut().enumerate() {
            *slot = (reason_name(r), st.exits[r].load(Ordering::Relaxed));
        }
        let summary = SandboxSummary {
            name: sandbox.name(),
            end: match status {
                STATUS_EXITED => SandboxEnd::Exited(code),
                STATUS_HALTED => SandboxEnd::Halted,
                STATUS_NOT_STARTED => SandboxEnd::NotStarted,
                _ => SandboxEnd::Running,
            },
            faults: st.faults.load(Ordering::Relaxed).into(),
            launches: st.generation.load(Ordering::Relaxed).into(),
            exits: st.total_exits(),
            reasons: Reasons::Counts(&counts),
            doorbells: st.doorbells.load(Ordering::Relaxed),
            waits: st.waits.load(Ordering::Relaxed),
            slept: st.sleeps.load(Ordering::Relaxed),
        };
        crate::println!("{}", Record::Summary(summary));
        if sandbox.migration().is_some() {
            let m = &sandboxes::record(sandbox.id()).migration;
            crate::println!(
                "{}",
                Record::Migrations {
                    sandbox: sandbox.name(),
                    count: m.count.load(Ordering::Acquire),
                    worst_downtime: m.worst_downtime.load(Ordering::Acquire),
                }
            );
            if let Some(scrubs) = super::migrate::standby_scrubs(sys, sandbox.id()) {
                crate::println!("{scrubs}");
            }
        }
    }
    channel_latencies(sys);
    crate::println!(
        "{}",
        if all_ok {
            Record::Passed
        } else {
            Record::NotPassed
        }
    );
    all_ok
}

/// Prints what each channel's reader recorded about its messages' latency (the block in
/// its acknowledgement area, `quest_abi::latency`). The reader owns that memory and may
/// have written anything there: each word is read once, and a block that does not check
/// out is reported as nothing recorded.
fn channel_latencies(sys: &System) {
    use quest_abi::latency::{Latency, STATS_OFFSET, STATS_SIZE};
    for (ch, hpa) in sys.table.channels().zip(sys.channels()) {
        let Some(block) = hpa
            .checked_add(ch.data_size())
            .and_then(|ack| ack.checked_add(STATS_OFFSET as u64))
        else {
            continue;
        };
        if ch.ack_size() < (STATS_OFFSET + STATS_SIZE) as u64 {
            continue;
        }
        let word = |i: usize| {
            let at = block.as_u64() + 8 * i as u64;
            // SAFETY: placement gave this channel `data_size + ack_size` bytes at `hpa`,
            // identity mapped; the block lies inside the ack area (checked above) and `i`
            // stays below STATS_SIZE / 8 (Latency::read's indices). A volatile load of an
            // aligned word: the reader may still be writing it, and any value is fine.
            unsafe { core::ptr::read_volatile(at as *const u64) }
        };
        if let Ok(latency) = Latency::read(word) {
            crate::println!(
                "{}",
                Record::ChannelLatency {
                    channel: ch.name(),
                    latency
                }
            );
        }
    }
}

/// Writes the launch values (TSC kHz, launch count, boot time in µs and in ns) at the
/// GPAs the table names; each address is checked against the sandbox's RAM.
fn patch_launch_values(v: &Vcpu, launch: u32) {
    let at = v.sandbox_view.launch_patches();
    let boot_time_ns = v.sys.boot_time_us.saturating_mul(1000);
    let patches: [(Option<GuestPhysAddr>, &[u8]); 4] = [
        (at.tsc_khz, &v.sys.tsc_khz.to_le_bytes()),
        (at.launch_count, &launch.to_le_bytes()),
        (at.boot_time_us, &v.sys.boot_time_us.to_le_bytes()),
        // The low half of Hermit's i128; the host left the high half zero.
        (at.boot_time_ns, &boot_time_ns.to_le_bytes()),
    ];
    for (gpa, bytes) in patches {
        let Some(gpa) = gpa else { continue };
        if !v.mem.write(gpa, bytes) {
            crate::println!(
                "quest: sandbox '{}': launch value address {gpa:#x} is outside its RAM",
                v.name
            );
        }
    }
}

/// Halts this core for good (NMIs return to the halt; the IOMMU's fault NMI is looked
/// at, should this be its fault core).
pub fn park_forever() -> ! {
    loop {
        x86_64::instructions::hlt();
        crate::iommu::idle();
    }
}
