//! The interrupt descriptor table, shared by every core: the 32 CPU exceptions print a
//! one-line report (vector, name, RIP, error code, CR2, core) and stop the system.
//!
//! The monitor runs with interrupts disabled; an exception in the monitor is a bug, and
//! the report is the most useful thing it can leave behind.

use crate::arch::cpu::{CODE_SELECTOR, EMERGENCY_IST};
use core::arch::global_asm;
use core::cell::UnsafeCell;
use x86_64::instructions::tables::lidt;
use x86_64::structures::DescriptorTablePointer;
use x86_64::VirtAddr;

// Each stub pushes a dummy error code when the CPU does not (every vector but 8, 10-14,
// 17, 21, 29, 30; SDM Vol. 3A, table 6-1), then the vector, so the common path sees one
// frame layout.
macro_rules! exception_stubs {
    ($($n:literal),*) => {
        global_asm!(
            $(
                concat!(".section .text.exceptions, \"ax\"\n",
                        "exception_stub_", $n, ":\n",
                        ".if ", $n, " != 8 && ", $n, " != 10 && ", $n, " != 11 && ", $n,
                        " != 12 && ", $n, " != 13 && ", $n, " != 14 && ", $n, " != 17 && ",
                        $n, " != 21 && ", $n, " != 29 && ", $n, " != 30\n",
                        "push 0\n",
                        ".endif\n",
                        "push ", $n, "\n",
                        "jmp exception_common\n"),
            )*
            ".section .rodata.exceptions, \"a\"",
            ".balign 8",
            ".global exception_stub_table",
            "exception_stub_table:",
            $( concat!(".quad exception_stub_", $n), )*
        );
    };
}

exception_stubs!(
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
    26, 27, 28, 29, 30, 31
);

global_asm!(
    r#"
    .section .text.exceptions, "ax"
exception_common:
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    mov rdi, rsp
    call exception_report
2:  cli
    hlt
    jmp 2b
    "#
);

extern "C" {
    static exception_stub_table: [u64; 32];
}

/// The stack as `exception_common` leaves it.
#[derive(Debug)]
#[repr(C)]
pub struct ExceptionFrame {
    /// General-purpose registers, r15 first.
    pub gprs: [u64; 15],
    /// Vector number.
    pub vector: u64,
    /// Error code (0 where the CPU pushes none).
    pub error_code: u64,
    /// Faulting RIP.
    pub rip: u64,
    /// CS.
    pub cs: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// RSP.
    pub rsp: u64,
    /// SS.
    pub ss: u64,
}

const NAMES: [&str; 32] = [
    "divide error",
    "debug",
    "NMI",
    "breakpoint",
    "overflow",
    "bound range",
    "invalid opcode",
    "device not available",
    "double fault",
    "coprocessor overrun",
    "invalid TSS",
    "segment not present",
    "stack fault",
    "general protection",
    "page fault",
    "reserved",
    "x87 error",
    "alignment check",
    "machine check",
    "SIMD error",
    "virtualization exception",
    "control protection",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "hypervisor injection",
    "VMM communication",
    "security exception",
    "reserved",
];

#[no_mangle]
extern "C" fn exception_report(frame: &ExceptionFrame) -> ! {
    let vector = frame.vector as usize;
    let name = NAMES.get(vector).copied().unwrap_or("unknown");
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    crate::console::emergency_line(format_args!(
        "quest: monitor exception {vector} ({name}) on core {}: rip={:#x} error={:#x} cr2={cr2:#x} rsp={:#x}",
        crate::arch::cpu::core_index(),
        frame.rip,
        frame.error_code,
        frame.rsp,
    ));
    crate::shutdown::shutdown(false)
}

#[derive(Clone, Copy)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

impl Gate {
    const MISSING: Gate = Gate {
        offset_low: 0,
        selector: 0,
        ist: 0,
        type_attr: 0,
        offset_mid: 0,
        offset_high: 0,
        reserved: 0,
    };

    fn interrupt(handler: u64, ist: u8) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector: CODE_SELECTOR,
            ist,
            // Present, DPL 0, 64-bit interrupt gate (interrupts stay off in handlers).
            type_attr: 0x8e,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

#[repr(C, align(16))]
struct Idt(UnsafeCell<[Gate; 256]>);
// SAFETY: written once by the boot core in `init` before any other core starts, read
// only (by `lidt`) afterwards.
unsafe impl Sync for Idt {}
static IDT: Idt = Idt(UnsafeCell::new([Gate::MISSING; 256]));

/// Fills the IDT. Call once, on the boot core, before any core loads it.
pub fn init() {
    // SAFETY: the stub table is 32 addresses emitted by the asm above; the IDT is not
    // loaded by any core yet (see `Idt`'s Sync argument).
    let (stubs, idt) = unsafe { (&exception_stub_table, &mut *IDT.0.get()) };
    for (vector, &stub) in stubs.iter().enumerate() {
        // Faults that may come with a broken stack get a known-good one.
        let ist = if matches!(vector, 2 | 8 | 18) {
            EMERGENCY_IST
        } else {
            0
        };
        idt[vector] = Gate::interrupt(stub, ist);
    }
}

/// Loads the IDT on this core.
///
/// # Safety
/// `init` must have run; the core's TSS must provide the emergency IST stack.
pub unsafe fn load() {
    let idtr = DescriptorTablePointer {
        limit: (core::mem::size_of::<[Gate; 256]>() - 1) as u16,
        base: VirtAddr::new(IDT.0.get() as u64),
    };
    // SAFETY: the IDT is a static table of valid gates pointing at the stubs above.
    unsafe { lidt(&idtr) };
}

/// The IDT's base address (for VMCS host state).
#[allow(dead_code)] // API for the vmx half (HOST_IDTR_BASE).
pub fn base() -> u64 {
    IDT.0.get() as u64
}
