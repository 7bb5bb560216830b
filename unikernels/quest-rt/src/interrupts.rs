//! Interrupts for bare sandboxes: one IDT shared by every vCPU, with an entry for each
//! vector 32-255 that calls the handler the application installed ([`set_handler`]) on
//! the interrupted stack, and the local APIC's end of interrupt through the x2APIC
//! ([`eoi`]). Exceptions (0-31) have no entry: an exception still ends the sandbox (the
//! monitor sees the triple fault), as without an IDT.
//!
//! ```ignore
//! quest_rt::interrupts::set_handler(43, on_device);
//! quest_rt::interrupts::load(); // on each vCPU that takes interrupts
//! quest_rt::interrupts::enable();
//! fn on_device(vector: u8) { /* ... */ quest_rt::interrupts::eoi(); }
//! ```
//!
//! Handlers run with interrupts off, on the interrupted code's stack (the runtime's
//! targets have no red zone); they must be short and must not take locks the interrupted
//! code may hold. A vector without a handler is acknowledged (EOI) and dropped.
//! Gate format: Intel SDM Vol. 3A, 6.14.1 "64-Bit Mode IDT".

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use x86_64::registers::model_specific::Msr;
use x86_64::structures::DescriptorTablePointer;
use x86_64::VirtAddr;

/// The first vector an application may handle (0-31 are exceptions).
pub const FIRST_VECTOR: u8 = 32;
/// The x2APIC EOI register.
const X2APIC_EOI: u32 = 0x80b;
/// Bytes of one entry stub (see the assembly below).
const STUB_SIZE: u64 = 16;

/// The installed handlers by vector (0: none), as `fn(u8)` addresses.
static HANDLERS: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];
/// The IDT: 256 gates of two quadwords (filled once by [`load`]).
static IDT: [AtomicU64; 512] = [const { AtomicU64::new(0) }; 512];

// One 16-byte stub per vector 32-255, each `call common`: the return address it pushes
// tells the vector ((address - stubs) / 16 + 32). `common` saves the registers the
// System V ABI lets a callee clobber, calls `dispatch(vector)` with the stack aligned
// (the CPU pushed 5 quadwords, the stub 1, `common` 9: 120 bytes, plus 8 of padding),
// restores them and returns from the interrupt.
core::arch::global_asm!(
    ".pushsection .text.quest_rt_interrupts, \"ax\"",
    ".balign 16",
    ".globl quest_rt_interrupt_stubs",
    "quest_rt_interrupt_stubs:",
    ".rept 224",
    ".balign 16",
    "call 3f",
    ".endr",
    "3:",
    "push rax",
    "push rcx",
    "push rdx",
    "push rsi",
    "push rdi",
    "push r8",
    "push r9",
    "push r10",
    "push r11",
    "mov rdi, [rsp + 72]",
    "lea rax, [rip + quest_rt_interrupt_stubs]",
    "sub rdi, rax",
    "shr rdi, 4",
    "add rdi, 32",
    "sub rsp, 8",
    "cld",
    "call {dispatch}",
    "add rsp, 8",
    "pop r11",
    "pop r10",
    "pop r9",
    "pop r8",
    "pop rdi",
    "pop rsi",
    "pop rdx",
    "pop rcx",
    "pop rax",
    "add rsp, 8",
    "iretq",
    ".popsection",
    dispatch = sym dispatch,
);

unsafe extern "C" {
    /// The first stub (vector 32); stub `v` is at `+ (v - 32) * 16`.
    static quest_rt_interrupt_stubs: u8;
}

/// Called by the stubs with the vector.
extern "C" fn dispatch(vector: u64) {
    let h = HANDLERS
        .get(vector as usize)
        .map_or(0, |h| h.load(Ordering::Acquire));
    if h == 0 {
        eoi();
        return;
    }
    // SAFETY: only `set_handler` stores non-zero values, each a `fn(u8)`.
    let handler: fn(u8) = unsafe { core::mem::transmute::<usize, fn(u8)>(h) };
    handler(vector as u8);
}

/// Installs `handler` for `vector` (at least [`FIRST_VECTOR`]; false otherwise). It
/// replaces an earlier one; every vCPU that loaded the IDT calls it.
pub fn set_handler(vector: u8, handler: fn(u8)) -> bool {
    if vector < FIRST_VECTOR {
        return false;
    }
    HANDLERS[usize::from(vector)].store(handler as usize, Ordering::Release);
    true
}

/// Removes the handler of `vector`.
pub fn clear_handler(vector: u8) {
    HANDLERS[usize::from(vector)].store(0, Ordering::Release);
}

/// The gate of the stub at `offset`: present, DPL 0, 64-bit interrupt gate (interrupts
/// off in the handler), code segment `cs`, no IST.
const fn gate(offset: u64, cs: u16) -> [u64; 2] {
    let low = (offset & 0xffff) | (cs as u64) << 16 | 0x8e << 40 | ((offset >> 16) & 0xffff) << 48;
    [low, offset >> 32]
}

const _: () = {
    let [low, high] = gate(0x1234_5678_9abc_def0, 0x8);
    assert!(low == 0x9abc_8e00_0008_def0 && high == 0x1234_5678);
};

/// Fills the IDT and loads it on this vCPU. Interrupts stay as they are.
pub fn load() {
    use x86_64::instructions::segmentation::{Segment, CS};
    let cs = CS::get_reg().0;
    let stubs = &raw const quest_rt_interrupt_stubs as u64;
    for v in u64::from(FIRST_VECTOR)..256 {
        let [low, high] = gate(stubs + (v - u64::from(FIRST_VECTOR)) * STUB_SIZE, cs);
        IDT[2 * v as usize].store(low, Ordering::Relaxed);
        IDT[2 * v as usize + 1].store(high, Ordering::Relaxed);
    }
    let pointer = DescriptorTablePointer {
        limit: (core::mem::size_of_val(&IDT) - 1) as u16,
        base: VirtAddr::new(IDT.as_ptr() as u64),
    };
    // SAFETY: IDT is a static (it lives as long as the program) of 256 valid gates or
    // empty (not present) entries; every present gate points at a stub above.
    unsafe { x86_64::instructions::tables::lidt(&pointer) };
}

/// Lets this vCPU take interrupts (STI).
pub fn enable() {
    x86_64::instructions::interrupts::enable();
}

/// Stops this vCPU taking interrupts (CLI).
pub fn disable() {
    x86_64::instructions::interrupts::disable();
}

/// Signals the end of the interrupt being handled to this core's local APIC (the
/// x2APIC EOI register; for a level-triggered vector the APIC tells the I/O APIC).
pub fn eoi() {
    // SAFETY: writing 0 to the x2APIC EOI register ends the highest-priority interrupt
    // in service and nothing else; the monitor passes it through or emulates it.
    unsafe { Msr::new(X2APIC_EOI).write(0) };
}
