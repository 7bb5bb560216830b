//! The host side of SVM on one core: EFER.SVME, the host save area VMRUN uses
//! (VM_HSAVE_PA), a second page for the state VMRUN does not save (VMSAVE/VMLOAD: FS,
//! GS, TR, LDTR, KernelGSBase, STAR, LSTAR, CSTAR, SFMASK, SYSENTER), and the guest entry
//! itself (AMD APM Vol. 2, 15.4, 15.5 and 15.30.4).

use core::arch::global_asm;
use core::arch::x86_64::__cpuid;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use quest_abi::{CoreId, MAX_CORES};
use x86_64::registers::control::Cr4;
use x86_64::registers::model_specific::Msr;

const IA32_EFER: u32 = 0xC000_0080;
const VM_HSAVE_PA: u32 = 0xC001_0117;
const EFER_NXE: u64 = 1 << 11;
const CR4_OSXSAVE: u64 = 1 << 18;

/// Why a core cannot run SVM guests.
#[derive(Clone, Copy, Debug)]
pub struct OutOfFrames;

impl fmt::Display for OutOfFrames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the monitor's frame pool is exhausted")
    }
}

/// Every core's VMSAVE page for its host state (0: SVM not enabled there yet).
static HOST_SAVE: [AtomicU64; MAX_CORES as usize] =
    [const { AtomicU64::new(0) }; MAX_CORES as usize];

/// The page VMSAVE keeps `core`'s host state in ([`enable_svm`] set it).
pub fn host_save(core: CoreId) -> u64 {
    HOST_SAVE[core.index()].load(Ordering::Relaxed)
}

/// Enables SVM on this core (`core`), once, and loads the vCPU IDT (every time: the
/// platform IDT may have replaced it).
/// EFER.NXE stays set: the nested walk uses the host's EFER, and the NPT's NX bits are
/// reserved without it (APM 15.25.1). CR4.OSXSAVE is set where XSAVE exists, for the
/// guest's XSETBV (executed by the monitor on its behalf).
///
/// # Safety
/// On core `core`, interrupts off, its guest (if any) not running.
pub unsafe fn enable_svm(core: CoreId) -> Result<(), OutOfFrames> {
    if host_save(core) != 0 {
        // SAFETY: per the contract; the vCPU IDT's NMI gate only returns.
        unsafe { crate::vmx::load_vcpu_idt() };
        return Ok(());
    }
    let hsave = crate::frame_pool::alloc_zeroed(1).ok_or(OutOfFrames)?;
    let host_save = crate::frame_pool::alloc_zeroed(1).ok_or(OutOfFrames)?;
    // SAFETY: `choose` found SVM usable (VM_CR.SVMDIS clear), so EFER.SVME may be set;
    // VM_HSAVE_PA gets a page-aligned frame owned by this core from now on; OSXSAVE
    // only where CPUID reports XSAVE. The vCPU IDT's NMI gate only returns.
    unsafe {
        let mut efer = Msr::new(IA32_EFER);
        let value = efer.read();
        efer.write(value | quest_monitor_core::backend::EFER_SVME | EFER_NXE);
        Msr::new(VM_HSAVE_PA).write(hsave);
        if __cpuid(1).ecx & (1 << 26) != 0 {
            Cr4::write_raw(Cr4::read_raw() | CR4_OSXSAVE);
        }
        crate::vmx::load_vcpu_idt();
    }
    HOST_SAVE[core.index()].store(host_save, Ordering::Relaxed);
    Ok(())
}

// quest_svm_run(regs: *mut [u64; 16] (rdi), vmcb: u64 (rsi), host_save: u64 (rdx)):
// VMSAVE the host's extra state, VMLOAD the guest's, load the guest's registers but RAX
// and RSP (those are in the VMCB), CLGI, VMRUN; after the #VMEXIT save the guest's
// registers, VMSAVE the guest's extra state, VMLOAD the host's, STGI (a pending NMI is
// then taken by the vCPU IDT's gate, which only returns).
global_asm!(
    r#"
    .section .text.svm, "ax"
    .global quest_svm_run
quest_svm_run:
"#,
    push_callee_saved!(),
    r#"
    push rdx
    push rdi
    mov rax, rdx
    vmsave rax
    mov rax, rsi
    vmload rax
"#,
    load_guest_gprs!("rdi"),
    r#"
    mov rdi, [rdi + 56]
    clgi
    vmrun rax
    push rax
    mov rax, [rsp + 8]
    mov [rax + 56], rdi
"#,
    store_guest_gprs!("rax"),
    r#"
    pop rax
    vmsave rax
    mov rax, [rsp + 8]
    vmload rax
    stgi
    add rsp, 16
"#,
    pop_callee_saved!(),
    r#"
    ret
    "#
);

extern "C" {
    fn quest_svm_run(regs: *mut [u64; 16], vmcb: u64, host_save: u64);
}

/// Runs the guest of `vmcb` until its next #VMEXIT; `regs` holds its general-purpose
/// registers but RAX and RSP (which live in the VMCB) before and after.
///
/// # Safety
/// `vmcb` is a complete, valid VMCB (frame owned by this vCPU) and `host_save` this
/// core's page from [`enable_svm`].
pub unsafe fn run(regs: &mut [u64; 16], vmcb: u64, host_save: u64) {
    // SAFETY: per the contract; the routine preserves the System V callee-saved
    // registers, and the host's RSP, RIP, RAX, segment and control state come back from
    // VM_HSAVE_PA and `host_save`.
    unsafe { quest_svm_run(regs, vmcb, host_save) }
}
