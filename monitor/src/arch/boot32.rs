//! The multiboot2 header and the 32-bit entry GRUB jumps to: builds identity page tables
//! for the first 4 GiB (2 MiB pages), enables long mode and calls `quest_main`.
//!
//! GRUB enters in 32-bit protected mode with paging off, EAX = the multiboot2 magic and
//! EBX = the physical address of the boot information (multiboot2 spec, section 3.3).
//! The first thing it does after saving those is record the TSC (`tsc::ENTRY_TSC`).

use core::arch::global_asm;

/// Entries of the boot page-directory area: 4 page directories x 512 = 4 GiB of 2 MiB pages.
pub const BOOT_PD_ENTRIES: usize = 4 * 512;

global_asm!(
    r#"
    .section .multiboot2_header, "a"
    .balign 8
mb2_header_start:
    .long 0xe85250d6
    .long 0
    .long mb2_header_end - mb2_header_start
    .long 0x100000000 - (0xe85250d6 + (mb2_header_end - mb2_header_start))
    /* end tag */
    .short 0
    .short 0
    .long 8
mb2_header_end:

    .section .text.boot32, "ax"
    .code32
    .global quest_entry32
quest_entry32:
    mov %eax, %edi              /* multiboot2 magic -> first argument */
    mov %ebx, %esi              /* boot information -> second argument */
    rdtsc                       /* the boot cost counts from here (tsc::ENTRY_TSC) */
    mov %eax, {entry_tsc}
    mov %edx, {entry_tsc}+4
    cli
    cld
    mov $boot_stack_top, %esp

    /* Long mode needs CPUID leaf 0x80000001 EDX bit 29. */
    mov $0x80000000, %eax
    cpuid
    cmp $0x80000001, %eax
    jb no_long_mode
    mov $0x80000001, %eax
    cpuid
    bt $29, %edx
    jnc no_long_mode

    /* PML4[0] -> PDPT; PDPT[0..4] -> the four page directories. */
    mov $boot_pdpt, %eax
    or $3, %eax
    mov %eax, boot_pml4
    xor %ecx, %ecx
1:  mov %ecx, %eax
    shl $12, %eax
    add $boot_pd, %eax
    or $3, %eax
    mov %eax, boot_pdpt(,%ecx,8)
    inc %ecx
    cmp $4, %ecx
    jb 1b

    /* PD entries: identity, present | writable | 2 MiB page. */
    xor %ecx, %ecx
2:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax
    mov %eax, boot_pd(,%ecx,8)
    mov %ecx, %eax
    shr $11, %eax
    mov %eax, boot_pd+4(,%ecx,8)
    inc %ecx
    cmp ${pd_entries}, %ecx
    jb 2b

    mov %cr4, %eax
    or $0x20, %eax              /* PAE */
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx       /* IA32_EFER */
    rdmsr
    or $0x100, %eax             /* LME */
    wrmsr
    mov %cr0, %eax
    or $0x80010001, %eax        /* PG | WP | PE */
    mov %eax, %cr0

    lgdt boot_gdtr
    ljmp $0x08, $quest_entry64

no_long_mode:
    /* No console yet worth initialising: say it on COM1 raw and stop. */
    mov $no_long_mode_msg, %esi
    mov $0x3f8, %dx
3:  lodsb
    test %al, %al
    jz 4f
    out %al, %dx
    jmp 3b
4:  cli
    hlt
    jmp 4b

    .code64
quest_entry64:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs
    mov $boot_stack_top, %rsp
    mov %edi, %edi
    mov %esi, %esi
    call quest_main
5:  cli
    hlt
    jmp 5b

    .section .rodata.boot32, "a"
    .balign 8
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff    /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff    /* 0x10: data */
boot_gdtr:
    .short boot_gdtr - boot_gdt - 1
    .quad boot_gdt
no_long_mode_msg:
    .asciz "quest: this CPU has no 64-bit long mode\r\n"

    .section .bss.boot32, "aw", @nobits
    .balign 4096
    .global boot_pml4
boot_pml4:
    .skip 4096
    .global boot_pdpt
boot_pdpt:
    .skip 4096
    .global boot_pd
boot_pd:
    .skip 4096 * 4
boot_stack:
    .skip 131072
boot_stack_top:
    "#,
    pd_entries = const BOOT_PD_ENTRIES,
    entry_tsc = sym crate::arch::tsc::ENTRY_TSC,
    options(att_syntax)
);
