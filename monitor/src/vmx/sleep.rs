//! Sleeping in VMX root mode until an NMI, without lost wake-ups, and the NMI gate of
//! vCPU cores.
//!
//! The monitor runs with interrupts off, so the only thing that ends a `hlt` is an NMI
//! (the wake-up a ringing peer or a stopping leader sends). The classic race: the sleeper
//! checks its flags, the waker sets a flag and sends the NMI, the NMI arrives *before*
//! the `hlt`, and the sleeper then halts for good. Here the check and the `hlt` form a
//! window (`quest_wait_window_start` ..= `quest_wait_window_hlt`); an NMI that interrupts
//! the window returns past the `hlt` (`quest_wait_window_end`) instead of into it. An NMI
//! during the `hlt` returns there anyway. Either way the caller re-checks its flags.
//!
//! Everywhere else on a vCPU core (handling an exit, parked) the NMI gate only returns:
//! whoever sent it re-checks and resends until the target acknowledged (see `lifecycle`).

use core::arch::global_asm;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// NMIs the gate below handled, all cores together (boot-time calibration times an IPI
/// by watching it move).
static NMIS_HANDLED: AtomicU64 = AtomicU64::new(0);

/// NMIs handled in VMX root mode (by [`vmx_host_nmi`]) since boot.
pub fn nmis_handled() -> u64 {
    NMIS_HANDLED.load(Ordering::Acquire)
}

global_asm!(
    r#"
    .section .text.vmx, "ax"

    /* quest_wait_sleep(wake_a: *const u32, wake_b: *const u32): halts unless either is
       non-zero; returns after the next NMI. */
    .global quest_wait_sleep
quest_wait_sleep:
quest_wait_window_start:
    cmp dword ptr [rdi], 0
    jne quest_wait_window_end
    cmp dword ptr [rsi], 0
    jne quest_wait_window_end
quest_wait_window_hlt:
    hlt
quest_wait_window_end:
    ret

    /* The NMI gate of vCPU cores: move an interrupted sleep window past its hlt, then
       return. Frame at entry (no error code): RIP, CS, RFLAGS, RSP, SS. */
    .global vmx_host_nmi
vmx_host_nmi:
    lock inc qword ptr [rip + {handled}]
    push rax
    push rcx
    mov rax, [rsp + 16]
    lea rcx, [rip + quest_wait_window_start]
    cmp rax, rcx
    jb 2f
    lea rcx, [rip + quest_wait_window_hlt]
    cmp rax, rcx
    ja 2f
    lea rcx, [rip + quest_wait_window_end]
    mov [rsp + 16], rcx
2:
    pop rcx
    pop rax
    iretq
    "#,
    handled = sym NMIS_HANDLED,
);

extern "C" {
    fn quest_wait_sleep(wake_a: *const AtomicU32, wake_b: *const AtomicU32);
    /// The NMI gate of vCPU cores (installed by `host::load_vcpu_idt`).
    pub fn vmx_host_nmi();
}

/// Halts this core until an NMI arrives, unless `wake_a` or `wake_b` is already
/// non-zero. May return early; callers re-check their condition in a loop. A waker
/// stores to one of the flags, then sends an NMI: then this returns.
pub fn sleep_until_nmi(wake_a: &AtomicU32, wake_b: &AtomicU32) {
    // SAFETY: the routine only reads the two u32 flags (valid references; AtomicU32 has
    // u32's layout, and aligned 32-bit loads are atomic on x86) and halts; interrupts are
    // off in the monitor, so only an NMI resumes it, through `vmx_host_nmi`, which is
    // this core's NMI gate (vCPU cores load the vCPU IDT before running any vCPU).
    unsafe { quest_wait_sleep(wake_a, wake_b) }
}
