//! The application-processor trampoline: 16-bit real mode -> 32-bit protected mode ->
//! 64-bit long mode, then a call into Rust.
//!
//! An AP woken by a SIPI starts in real mode at `CS = page >> 4, IP = 0`, so the code is
//! copied to a page below 1 MiB and uses only offsets from its own start (EBX holds the
//! page's linear address once computed). The boot core fills the parameter block (CR3,
//! stack, entry, core index) in the copy before each SIPI; one AP starts at a time.

use core::arch::global_asm;

global_asm!(
    r#"
    .section .rodata.ap_trampoline, "a"
    .balign 16
    .global ap_trampoline_start
ap_trampoline_start:
    .code16
    cli
    cld
    mov %cs, %ax
    mov %ax, %ds
    xor %ebx, %ebx
    mov %cs, %bx
    shl $4, %ebx                                    /* EBX = linear base of this page */
    lea (ap_gdt - ap_trampoline_start)(%ebx), %eax
    mov %eax, (ap_gdtr - ap_trampoline_start + 2)
    lea (ap_pm - ap_trampoline_start)(%ebx), %eax
    mov %eax, (ap_farptr32 - ap_trampoline_start)
    lea (ap_lm - ap_trampoline_start)(%ebx), %eax
    mov %eax, (ap_farptr64 - ap_trampoline_start)
    lgdtl (ap_gdtr - ap_trampoline_start)
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl *(ap_farptr32 - ap_trampoline_start)

    .code32
ap_pm:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %cr4, %eax
    or $0x20, %eax                                  /* PAE */
    mov %eax, %cr4
    mov (ap_cr3 - ap_trampoline_start)(%ebx), %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx                           /* IA32_EFER.LME */
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80010000, %eax                            /* PG | WP */
    mov %eax, %cr0
    ljmpl *(ap_farptr64 - ap_trampoline_start)(%ebx)

    .code64
ap_lm:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov (ap_stack - ap_trampoline_start)(%rbx), %rsp
    mov (ap_core - ap_trampoline_start)(%rbx), %rdi
    mov (ap_entry - ap_trampoline_start)(%rbx), %rax
    call *%rax
6:  cli
    hlt
    jmp 6b

    .balign 8
ap_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff                        /* 0x08: 32-bit code */
    .quad 0x00cf92000000ffff                        /* 0x10: data */
    .quad 0x00af9a000000ffff                        /* 0x18: 64-bit code */
ap_gdtr:
    .short ap_gdtr - ap_gdt - 1
    .long 0
    .balign 8
ap_farptr32:
    .long 0
    .short 0x08
    .balign 8
ap_farptr64:
    .long 0
    .short 0x18
    .balign 8
    .global ap_cr3, ap_stack, ap_entry, ap_core
ap_cr3:
    .quad 0
ap_stack:
    .quad 0
ap_entry:
    .quad 0
ap_core:
    .quad 0
    .global ap_trampoline_end
ap_trampoline_end:
    .code64
    "#,
    options(att_syntax)
);

extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
    static ap_cr3: u8;
    static ap_stack: u8;
    static ap_entry: u8;
    static ap_core: u8;
}

/// Where the trampoline's parameters lie, as offsets from its start.
#[derive(Clone, Copy, Debug)]
pub struct TrampolineLayout {
    /// The trampoline's bytes (to copy below 1 MiB).
    pub code: &'static [u8],
    /// Offset of the CR3 value (u64).
    pub cr3: usize,
    /// Offset of the initial stack pointer (u64).
    pub stack: usize,
    /// Offset of the 64-bit entry address (u64), called as `extern "C" fn(core: u64) -> !`.
    pub entry: usize,
    /// Offset of the core index (u64).
    pub core: usize,
}

/// The trampoline as linked into the monitor.
pub fn layout() -> TrampolineLayout {
    let start = core::ptr::addr_of!(ap_trampoline_start) as usize;
    let end = core::ptr::addr_of!(ap_trampoline_end) as usize;
    let off = |p: *const u8| p as usize - start;
    // SAFETY: both symbols are defined by the asm above in one section, start before
    // end, and that section is part of the loaded, never-written monitor image.
    let code = unsafe { core::slice::from_raw_parts(start as *const u8, end - start) };
    TrampolineLayout {
        code,
        cr3: off(core::ptr::addr_of!(ap_cr3)),
        stack: off(core::ptr::addr_of!(ap_stack)),
        entry: off(core::ptr::addr_of!(ap_entry)),
        core: off(core::ptr::addr_of!(ap_core)),
    }
}
