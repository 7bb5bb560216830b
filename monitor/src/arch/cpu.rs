//! Per-core descriptor tables and core-local data.
//!
//! Every core gets its own GDT and TSS (VMX host state needs a non-zero TR on each core,
//! and each core needs its own IST stack for double faults and NMIs) and loads the one
//! shared IDT. IA32_GS_BASE points at the core's [`CoreLocal`], so [`core_index`] is one
//! load. The vmx code must put the same value into the VMCS host GS base.

use core::arch::asm;
use core::cell::UnsafeCell;
use quest_abi::MAX_CORES;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, FS, GS, SS};
use x86_64::instructions::tables::{lgdt, load_tss};
use x86_64::registers::model_specific::Msr;
use x86_64::structures::gdt::SegmentSelector;
use x86_64::structures::tss::TaskStateSegment;
use x86_64::structures::DescriptorTablePointer;
use x86_64::{PrivilegeLevel, VirtAddr};

/// Kernel code selector (64-bit).
pub const CODE_SELECTOR: u16 = 0x08;
/// Kernel data selector.
pub const DATA_SELECTOR: u16 = 0x10;
/// TSS selector (a 16-byte system descriptor).
pub const TSS_SELECTOR: u16 = 0x18;
/// IST slot (1-based, as in the IDT) used for double faults, NMIs and machine checks.
pub const EMERGENCY_IST: u8 = 1;

const IA32_GS_BASE: u32 = 0xc000_0101;
const GDT_ENTRIES: usize = 5;

/// What a core knows about itself; IA32_GS_BASE points here.
#[derive(Debug)]
#[repr(C)]
pub struct CoreLocal {
    /// Logical core index (0 = boot core). Must stay the first field (read via `gs:0`).
    pub index: u64,
    gdt: [u64; GDT_ENTRIES],
    tss: TaskStateSegment,
}

struct CoreSlots(UnsafeCell<[CoreLocal; MAX_CORES as usize]>);
// SAFETY: slot `i` is written only by core `i` (in `init_core`, before any other code on
// that core reads it) and afterwards only read; cores never touch each other's slot.
unsafe impl Sync for CoreSlots {}

/// An all-zero TSS (`TaskStateSegment::new` sets `iomap_base`, which would put the 256
/// slots, 38 KiB, into the loaded image instead of `.bss`); `init_core` fills it in.
const ZERO_TSS: TaskStateSegment = {
    let mut tss = TaskStateSegment::new();
    tss.iomap_base = 0;
    tss
};
#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: CoreLocal = CoreLocal {
    index: 0,
    gdt: [0; GDT_ENTRIES],
    tss: ZERO_TSS,
};
static CORES: CoreSlots = CoreSlots(UnsafeCell::new([EMPTY; MAX_CORES as usize]));

/// Loads this core's GDT, TSS, the shared IDT and its GS base.
///
/// # Safety
/// Call once per core, on core `index` (< `MAX_CORES`), with interrupts disabled;
/// `ist_top` must be the top of a stack of at least 16 KiB owned by this core forever.
pub unsafe fn init_core(index: usize, ist_top: u64) {
    // SAFETY: per the contract, only this core writes slot `index`, once.
    let local = unsafe { &mut (*CORES.0.get())[index] };
    local.index = index as u64;
    let mut tss = TaskStateSegment::new();
    let mut ist = tss.interrupt_stack_table;
    ist[(EMERGENCY_IST - 1) as usize] = VirtAddr::new(ist_top);
    tss.interrupt_stack_table = ist;
    // No I/O permission bitmap: the monitor runs at ring 0 only.
    tss.iomap_base = core::mem::size_of::<TaskStateSegment>() as u16;
    local.tss = tss;
    let tss_base = core::ptr::addr_of!(local.tss) as u64;
    let tss_limit = core::mem::size_of::<TaskStateSegment>() as u64 - 1;
    local.gdt = [
        0,
        0x00af_9a00_0000_ffff,
        0x00cf_9200_0000_ffff,
        // Available 64-bit TSS (type 9), present; base split across the descriptor.
        tss_limit | (tss_base & 0xff_ffff) << 16 | 0x89 << 40 | ((tss_base >> 24) & 0xff) << 56,
        tss_base >> 32,
    ];
    let gdtr = DescriptorTablePointer {
        limit: (GDT_ENTRIES * 8 - 1) as u16,
        base: VirtAddr::new(local.gdt.as_ptr() as u64),
    };
    // SAFETY: the GDT lives in a static slot for the life of the system and holds valid
    // code/data/TSS descriptors at the selectors reloaded right after.
    unsafe {
        lgdt(&gdtr);
        CS::set_reg(SegmentSelector::new(1, PrivilegeLevel::Ring0));
        let data = SegmentSelector::new(2, PrivilegeLevel::Ring0);
        DS::set_reg(data);
        ES::set_reg(data);
        SS::set_reg(data);
        FS::set_reg(SegmentSelector(0));
        GS::set_reg(SegmentSelector(0));
        load_tss(SegmentSelector(TSS_SELECTOR));
        crate::arch::idt::load();
        Msr::new(IA32_GS_BASE).write(local as *const CoreLocal as u64);
        // SAFETY: this core, interrupts disabled (per the contract), before it hashes.
        crate::arch::sha256::enable_on_this_core();
    }
}

/// This core's logical index (0 before `init_core` ran on the boot core).
pub fn core_index() -> usize {
    if gs_base() == 0 {
        return 0;
    }
    let index: u64;
    // SAFETY: GS base is non-zero only after `init_core` pointed it at this core's
    // `CoreLocal`, whose first field is the index.
    unsafe { asm!("mov {}, gs:[0]", out(reg) index, options(nostack, readonly, preserves_flags)) };
    index as usize
}

/// The value IA32_GS_BASE holds on this core (the vmx code copies it into host state).
pub fn gs_base() -> u64 {
    // SAFETY: IA32_GS_BASE exists on every x86-64 CPU; reading it has no side effect.
    unsafe { Msr::new(IA32_GS_BASE).read() }
}
