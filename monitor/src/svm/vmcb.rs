//! One vCPU's VMCB: its controls (intercepts, permission maps, nested paging, ASID), its
//! launch state, and the guest entry, whose #VMEXIT is decoded for the shared exit
//! handlers (`quest_monitor_core::svm_exit::decode`) (AMD APM Vol. 2, Appendix B "Layout of VMCB", 15.7 "Intercept Operation").
//!
//! The VMCB's page is identity mapped and owned by its vCPU; `v.vmcs` holds its address
//! (the field the VT-x backend keeps its VMCS in).

use super::host;
use crate::sandboxes::{SandboxState, SandboxVmx, SetupError};
use crate::system::System;
use crate::vmx::calibrate::ExitCostError;
use crate::vmx::vcpu::{Action, Vcpu};
use quest_abi::{gdt, layout, CoreId, SandboxId};
use quest_monitor_core::backend::SvmCaps;
use quest_monitor_core::io_bitmap::{open_windows, PortAccess, IO_BITMAPS_SIZE};
use quest_monitor_core::msr_policy::{build_msr_bitmap, trap_tsc_deadline, MSR_BITMAP_SIZE};
use quest_monitor_core::npt::{build_sandbox_npt, NptBuilder};
use quest_monitor_core::sandbox_ept::HostPlacement;
use quest_monitor_core::svm_exit::decode;
use quest_monitor_core::svm_maps::{build_iopm, build_msrpm, intercept_msr, IOPM_SIZE, MSRPM_SIZE};
use quest_monitor_core::vmcb::{
    control, event_inject, exit_code, intercept3, intercept4, save, segment_attributes,
    tlb_control as tlb,
};
use quest_monitor_core::x2apic_emulation::{self, X2APIC_LAST};

/// Guest CR0 (PE, ET, NE, PG), CR4 (PAE) and EFER (LME, LMA, NXE, and SVME, which VMRUN
/// requires of every guest): the launch state the VT-x backend writes too.
const GUEST_CR0: u64 = 0x8000_0031;
const GUEST_CR4: u64 = 0x20;
const GUEST_EFER: u64 = (1 << 8) | (1 << 10) | (1 << 11) | quest_monitor_core::backend::EFER_SVME;
const DEFAULT_PAT: u64 = 0x0007_0406_0007_0406;
/// NP_ENABLE in the nested-paging control word.
const NP_ENABLE: u64 = 1;
const EVENT_VALID: u64 = 1 << 31;
/// MWAIT in the second intercept word (APM Vol. 2, Appendix B, Table B-1: bit 11,
/// unconditional), and its #VMEXIT code (Appendix C).
const INTERCEPT_MWAIT: u32 = 1 << 11;
const EXIT_MWAIT: u64 = 0x8B;

/// What the CPU offers (the same on every core).
static CAPS: spin::Once<SvmCaps> = spin::Once::new();

/// A VMCB: an identity-mapped page owned by one vCPU (or the calibration guest), written
/// only while that guest is not running.
#[derive(Clone, Copy)]
pub struct Vmcb(pub u64);

impl Vmcb {
    fn of(v: &Vcpu) -> Self {
        Self(v.vmcs)
    }

    fn at<T>(self, offset: usize) -> *mut T {
        (self.0 as usize + offset) as *mut T
    }

    fn read64(self, offset: usize) -> u64 {
        // SAFETY: the page is this guest's VMCB (see `Vmcb`) and every offset used is a
        // field inside it (`quest_monitor_core::vmcb`).
        unsafe { self.at::<u64>(offset).read_volatile() }
    }

    fn write64(self, offset: usize, value: u64) {
        // SAFETY: as in `read64`; its guest is not running (its core is in the monitor).
        unsafe { self.at::<u64>(offset).write_volatile(value) }
    }

    fn write32(self, offset: usize, value: u32) {
        // SAFETY: as in `write64`.
        unsafe { self.at::<u32>(offset).write_volatile(value) }
    }

    fn write8(self, offset: usize, value: u8) {
        // SAFETY: as in `write64`.
        unsafe { self.at::<u8>(offset).write_volatile(value) }
    }

    fn segment(self, offset: usize, selector: u16, attrib: u16, limit: u32, base: u64) {
        // SAFETY: as in `write64`; a segment is 16 bytes at `offset`.
        unsafe {
            self.at::<u16>(offset + save::SEG_SELECTOR)
                .write_volatile(selector);
            self.at::<u16>(offset + save::SEG_ATTRIB)
                .write_volatile(attrib);
            self.at::<u32>(offset + save::SEG_LIMIT)
                .write_volatile(limit);
            self.at::<u64>(offset + save::SEG_BASE).write_volatile(base);
        }
    }

    /// Zeroes the VMCB and writes the controls: the intercepts (everything the VT-x
    /// backend traps), the permission maps, nested paging with `ncr3`, `asid`, and a full
    /// TLB flush at the next VMRUN.
    fn write_controls(self, asid: u32, ncr3: u64, iopm: u64, msrpm: u64) {
        // SAFETY: the page is this guest's (see `Vmcb`); zero is every field's reset value.
        unsafe { core::ptr::write_bytes(self.0 as *mut u8, 0, 4096) };
        self.write32(
            control::INTERCEPT_MISC3,
            intercept3::NMI
                | intercept3::INIT
                | intercept3::CPUID
                | intercept3::INVD
                | intercept3::IOIO_PROT
                | intercept3::MSR_PROT
                | intercept3::TASK_SWITCH
                | intercept3::SHUTDOWN,
        );
        self.write32(
            control::INTERCEPT_MISC4,
            intercept4::SVM_INSTRUCTIONS | intercept4::XSETBV | INTERCEPT_MWAIT,
        );
        self.write64(control::IOPM_BASE_PA, iopm);
        self.write64(control::MSRPM_BASE_PA, msrpm);
        self.write64(control::TSC_OFFSET, 0);
        self.write32(control::GUEST_ASID, asid);
        self.write8(control::TLB_CONTROL, tlb::ALL);
        self.write64(control::NP_CONTROL, NP_ENABLE);
        self.write64(control::N_CR3, ncr3);
    }

    /// The 64-bit launch state every vCPU starts in (the VT-x backend's): flat segments
    /// from the launch GDT, paging with `cr3`, at `rip` with `rsp`.
    fn write_launch_state(self, cr3: u64, rip: u64, rsp: u64) {
        let code = segment_attributes(gdt::CODE_ACCESS_RIGHTS);
        let data = segment_attributes(gdt::DATA_ACCESS_RIGHTS);
        self.segment(save::CS, gdt::CODE_SELECTOR, code, gdt::FLAT_LIMIT, 0);
        for seg in [save::DS, save::ES, save::SS, save::FS, save::GS] {
            self.segment(seg, gdt::DATA_SELECTOR, data, gdt::FLAT_LIMIT, 0);
        }
        self.segment(save::LDTR, 0, 0, 0, 0);
        self.segment(save::TR, 0, 0x8b, 0x67, 0);
        self.segment(save::GDTR, 0, 0, gdt::LAUNCH_GDT_LIMIT, layout::GDT_GPA);
        self.segment(save::IDTR, 0, 0, 0, 0);
        self.write64(save::EFER, GUEST_EFER);
        self.write64(save::CR0, GUEST_CR0);
        self.write64(save::CR3, cr3);
        self.write64(save::CR4, GUEST_CR4);
        self.write64(save::DR6, 0xffff_0ff0);
        self.write64(save::DR7, 0x400);
        self.write64(save::RFLAGS, 0x2);
        self.write64(save::RIP, rip);
        self.write64(save::RSP, rsp);
        self.write64(save::G_PAT, DEFAULT_PAT);
    }
}

/// Guest RIP.
pub fn rip(v: &Vcpu) -> u64 {
    Vmcb::of(v).read64(save::RIP)
}

/// Guest CR3.
pub fn guest_cr3(v: &Vcpu) -> u64 {
    Vmcb::of(v).read64(save::CR3)
}

/// Moves RIP past the intercepted instruction: to the next RIP the CPU saved, or, on a
/// CPU without next-RIP saving, the one [`enter`] computed into the same field.
pub fn skip_instruction(v: &Vcpu) {
    let vmcb = Vmcb::of(v);
    vmcb.write64(save::RIP, vmcb.read64(control::NEXT_RIP));
}

/// The guest's TSC offset.
pub fn tsc_offset(v: &Vcpu) -> u64 {
    Vmcb::of(v).read64(control::TSC_OFFSET)
}

/// Sets the guest's TSC offset (read at the next VMRUN).
pub fn set_tsc_offset(v: &Vcpu, offset: u64) {
    Vmcb::of(v).write64(control::TSC_OFFSET, offset);
}

/// Has the next VMRUN drop every cached translation (TLB_CONTROL 1: the one value every
/// SVM CPU has, QEMU's included), among them the nested ones of `v`'s ASID.
pub fn flush_translations(v: &Vcpu) {
    Vmcb::of(v).write8(control::TLB_CONTROL, tlb::ALL);
}

/// Points `v`'s VMCB at its sandbox's current nested page tables and permission maps
/// (`res`, after a migration), marks every VMCB field changed (clean bits 0: the VMCB
/// ran on another core) and flushes the TLB at the next VMRUN (this core may hold
/// translations of the sandbox's ASID from an earlier visit).
pub fn use_structures(v: &Vcpu, res: &SandboxVmx) {
    let vmcb = Vmcb::of(v);
    vmcb.write64(control::N_CR3, res.eptp);
    vmcb.write64(control::IOPM_BASE_PA, res.io_bitmaps);
    vmcb.write64(control::MSRPM_BASE_PA, res.msr_bitmap);
    vmcb.write32(control::CLEAN_BITS, 0);
    vmcb.write8(control::TLB_CONTROL, tlb::ALL);
}

/// Injects exception `vector` (error code 0 when `error_code`) at the next VMRUN.
pub fn inject_exception(v: &Vcpu, vector: u8, error_code: bool) {
    Vmcb::of(v).write64(
        control::EVENT_INJ,
        event_inject(vector, error_code.then_some(0)),
    );
}

/// Frames of the IOPM and of the MSRPM.
pub const IOPM_FRAMES: usize = IOPM_SIZE / 4096;
/// Frames of the MSRPM.
pub const MSRPM_FRAMES: usize = MSRPM_SIZE / 4096;

/// Builds sandbox `s`'s nested page tables and permission maps (for `vmx::resources`,
/// which keeps them in the sandbox's record like the VT-x structures: `eptp` holds nCR3,
/// `io_bitmaps` the IOPM, `msr_bitmap` the MSRPM). `hide_downtime` intercepts the TSC
/// deadline (`trap_tsc_deadline`), as on VT-x.
pub fn build_sandbox(
    table: &quest_abi::Table<'_>,
    s: SandboxId,
    host: &HostPlacement<'_>,
    ports: &PortAccess<'_>,
    hide_downtime: bool,
) -> Result<SandboxVmx, SetupError> {
    let npt = build_sandbox_npt(table, s.index(), host, crate::vmx::PoolFrames)
        .map_err(SetupError::Ept)?;
    let alloc =
        |frames: usize| crate::frame_pool::alloc_zeroed(frames).ok_or(SetupError::OutOfFrames);
    let iopm = alloc(IOPM_FRAMES)?;
    let msrpm = alloc(MSRPM_FRAMES)?;
    let scratch = alloc(MSR_BITMAP_SIZE / 4096)?;
    // SAFETY: three fresh, zeroed, identity-mapped frame runs of exactly these sizes,
    // owned by this sandbox from now on (the scratch VT-x bitmap only for this build).
    let (iopm_bytes, msrpm_bytes, vmx_bytes) = unsafe {
        (
            &mut *(iopm as *mut [u8; IOPM_SIZE]),
            &mut *(msrpm as *mut [u8; MSRPM_SIZE]),
            &mut *(scratch as *mut [u8; MSR_BITMAP_SIZE]),
        )
    };
    const _: () = assert!(IO_BITMAPS_SIZE <= IOPM_SIZE);
    build_iopm(ports.devices, iopm_bytes);
    // The IOPM's first 8 KiB are laid out as the VT-x bitmaps (its third page only
    // covers accesses that run past port 0xffff, and stays set).
    if let Some((bitmaps, _)) = iopm_bytes.split_first_chunk_mut::<IO_BITMAPS_SIZE>() {
        open_windows(ports.bars, ports.console, bitmaps);
    }
    build_msr_bitmap(vmx_bytes);
    if hide_downtime {
        trap_tsc_deadline(vmx_bytes);
    }
    build_msrpm(vmx_bytes, msrpm_bytes);
    // The scratch bitmap was only the MSRPM's source.
    let _ = crate::frame_pool::free(scratch);
    if crate::arch::apic::emulates_x2apic() {
        for msr in (0..=X2APIC_LAST).filter(|&m| x2apic_emulation::intercepted(m)) {
            intercept_msr(msrpm_bytes, msr);
        }
    }
    Ok(SandboxVmx {
        eptp: npt.ncr3(),
        io_bitmaps: iopm,
        msr_bitmap: msrpm,
    })
}

/// The vCPU the table puts on `core`, with a fresh VMCB (`None`: no vCPU there).
pub fn first_vcpu(core: CoreId, sys: &'static System, caps: SvmCaps) -> Option<Vcpu> {
    CAPS.call_once(|| caps);
    let (entry, sandbox_view) = sys
        .table
        .vcpu_on_core(core)
        .and_then(|v| Some((v, sys.table.sandbox(v.sandbox())?)))?;
    crate::vmx::count_launch(sandbox_view.id());
    let Some(vmcb) = crate::frame_pool::alloc_zeroed(1) else {
        super::fatal(format_args!("core {core}: cannot allocate a VMCB"))
    };
    // The VT-x capabilities stay unused on SVM.
    let no_vmx = crate::vmx::VmxCaps {
        revision: 0,
        pin: 0,
        primary: 0,
        secondary: 0,
        exit: 0,
        entry: 0,
        cr0_fixed: (0, 0),
        cr4_fixed: (0, 0),
        invvpid: false,
    };
    Some(crate::vmx::new_vcpu(
        sys,
        core,
        entry,
        sandbox_view,
        no_vmx,
        vmcb,
    ))
}

/// Writes the controls and the launch state into `v`'s VMCB; the first VMRUN flushes the
/// sandbox's ASID.
pub fn prepare(v: &mut Vcpu) -> Result<(), SetupError> {
    let res = crate::vmx::resources(v.sys, v.sandbox)?;
    let vmcb = Vmcb::of(v);
    let asid = v.sandbox.index() as u32 + 1;
    vmcb.write_controls(asid, res.eptp, res.io_bitmaps, res.msr_bitmap);
    let cr3 = v.sandbox_view.page_table_gpa().as_u64();
    vmcb.write_launch_state(cr3, v.entry.rip(), v.entry.rsp());
    Ok(())
}

/// Runs `v` until its next #VMEXIT, counts the exit under its VT-x name and hands it to
/// the shared handlers, decoded.
pub fn enter(v: &mut Vcpu, st: &SandboxState) -> Action {
    let vmcb = Vmcb::of(v);
    crate::vmx::entering(v);
    let (code, info1, info2) = run(vmcb, &mut v.regs.0, v.core);
    crate::vmx::left_guest(v);
    let (counted, exit) = decode(code, info1, info2);
    if let Some(reason) = counted {
        st.count_exit(u32::from(reason));
    }
    if !CAPS.get().is_some_and(|c| c.next_rip) {
        // No next-RIP saving: the length of each instruction the handlers skip.
        let rip = rip(v);
        let next = match code {
            exit_code::IOIO => info2,
            exit_code::VMMCALL | exit_code::XSETBV => rip + 3,
            exit_code::CPUID | exit_code::MSR => rip + 2,
            EXIT_MWAIT => rip + 3,
            exit_code::HLT | exit_code::INVD => rip + 1,
            _ => rip,
        };
        vmcb.write64(control::NEXT_RIP, next);
    }
    if code == EXIT_MWAIT {
        return mwait_returns(vmcb);
    }
    crate::vmx::handle_exit(v, exit)
}

/// A guest MWAIT returns at once, as one ended by an event would (a wake-up MWAIT may
/// always have: SDM Vol. 2B, MWAIT; APM Vol. 3, MWAIT); the guest re-checks whatever it
/// waits for. Sleeping in it is not safe on SVM: the store that is to end the wait need
/// not come. Hermit 0.11 idles in MONITOR/MWAIT on its own run-queue bitmap whenever
/// CPUID offers them and then wakes a remote core with no IPI (`apic::wakeup_core`),
/// only by queueing a task in that core's scheduler input, a different cache line; in
/// Bochs' `ryzen` model a vCPU that had nothing to run but that task slept in MWAIT until
/// an NMI from the monitor (a migration's stop or pre-copy flush) ended the wait: the
/// lost wake-ups of issue 11 (no ICR write targeted the waiting vCPU in the whole run,
/// its IRR and ISR were empty, RFLAGS.IF set, at every probe). The STI shadow before the
/// MWAIT (`sti; mwait`) ended with it.
fn mwait_returns(vmcb: Vmcb) -> Action {
    vmcb.write64(save::RIP, vmcb.read64(control::NEXT_RIP));
    vmcb.write64(control::INTERRUPT_SHADOW, 0);
    Action::Continue
}

/// One VMRUN of `vmcb` on `core` with general-purpose registers `regs` (RAX included:
/// it travels through the VMCB); returns EXITCODE, EXITINFO1 and EXITINFO2. An event
/// whose delivery the exit interrupted is set up to be delivered again at the next VMRUN
/// (a handler's own injection replaces it).
fn run(vmcb: Vmcb, regs: &mut [u64; 16], core: CoreId) -> (u64, u64, u64) {
    let host_save = host::host_save(core);
    vmcb.write64(save::RAX, regs[0]);
    // SAFETY: the VMCB is complete (`write_controls`, `write_launch_state`); `host_save`
    // is this core's VMSAVE page (`host::enable_svm`).
    unsafe { host::run(regs, vmcb.0, host_save) };
    regs[0] = vmcb.read64(save::RAX);
    vmcb.write8(control::TLB_CONTROL, tlb::NOTHING);
    let pending = vmcb.read64(control::EXIT_INT_INFO);
    let inject = if pending & EVENT_VALID != 0 {
        pending
    } else {
        0
    };
    vmcb.write64(control::EVENT_INJ, inject);
    (
        vmcb.read64(control::EXIT_CODE),
        vmcb.read64(control::EXIT_INFO1),
        vmcb.read64(control::EXIT_INFO2),
    )
}

/// Measures `out.len()` #VMEXIT + VMRUN round trips on this core with the calibration
/// guest (`vmx::calibrate::write_guest`: a CPUID at 0, re-run without advancing RIP) in
/// its own nested page tables; returns how many were measured.
///
/// # Safety
/// Interrupts disabled; no vCPU has run on this core yet; nothing sends it NMIs meanwhile.
pub unsafe fn vm_exit_entry(out: &mut [u64]) -> Result<usize, ExitCostError> {
    use crate::vmx::calibrate::{map_guest, rdtsc, step, write_guest, GUEST_FRAMES};
    let core = CoreId::new(crate::arch::cpu::core_index() as u32);
    // SAFETY: per the contract.
    step(unsafe { host::enable_svm(core) }, "enabling SVM")?;
    let frames = crate::frame_pool::alloc_zeroed(GUEST_FRAMES + 1 + 5)
        .ok_or(ExitCostError::Vmx("frame allocation"))?;
    let (guest, vmcb, iopm, msrpm) = (
        frames,
        Vmcb(frames + GUEST_FRAMES as u64 * 4096),
        frames + (GUEST_FRAMES as u64 + 1) * 4096,
        frames + (GUEST_FRAMES as u64 + 4) * 4096,
    );
    write_guest(guest);
    let mut npt = step(NptBuilder::new(crate::vmx::PoolFrames), "NPT allocation")?;
    map_guest(guest, "NPT mapping", |gpa, hpa, size, access, large| {
        npt.map_range(gpa, hpa, size, access, large)
    })?;
    // Zeroed maps intercept nothing; the guest only runs CPUID.
    vmcb.write_controls(1, npt.ncr3(), iopm, msrpm);
    vmcb.write_launch_state(0x1000, 0, 0x1000);
    let mut regs = [0u64; 16];
    let mut count = 0;
    for slot in out.iter_mut() {
        let t0 = rdtsc();
        let (code, ..) = run(vmcb, &mut regs, core);
        let t1 = rdtsc();
        if code != exit_code::CPUID {
            return Err(ExitCostError::UnexpectedExit((code & 0xffff) as u32));
        }
        *slot = t1.wrapping_sub(t0);
        count += 1;
    }
    Ok(count)
}
