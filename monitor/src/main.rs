//! The Quest monitor: boots from GRUB (multiboot2), checks and places the partition
//! table embedded in its own image, starts the cores the table needs and hands each to
//! the VT-x code (`vmx`) or, on AMD, the SVM code (`svm`), which runs that core's
//! sandbox vCPU.
//!
//! Platform half (this file's modules except `vmx`): boot, console, memory, cores.
#![no_std]
#![no_main]

#[macro_use]
mod arch;
mod blob;
mod boot;
mod bootinfo;
mod calibrate;
mod console;
mod cores;
mod device_bars;
mod frame_pool;
mod interrupts;
mod iommu;
mod memory;
mod pci;
mod sandbox_memory;
mod sandboxes;
mod shutdown;
mod slot;
mod smp;
mod svm;
mod system;
mod uart;
mod vmx;

/// Called by the 64-bit entry (`arch::boot32`) with GRUB's EAX and EBX.
#[no_mangle]
extern "C" fn quest_main(magic: u32, mbi_addr: u32) -> ! {
    // SAFETY: the entry code calls this once, with the values GRUB passed.
    unsafe { boot::run(magic, mbi_addr as u64) }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    console::emergency_line(format_args!(
        "quest: monitor panic on core {}: {info}",
        arch::cpu::core_index()
    ));
    shutdown::shutdown(false)
}
