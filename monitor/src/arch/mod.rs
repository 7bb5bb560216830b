//! x86-64 specifics: boot entry, AP trampoline, descriptor tables, APIC, legacy PIC, TSC,
//! paging.

pub mod apic;
pub mod boot32;
pub mod cpu;
#[macro_use]
mod guest_regs;
pub mod idt;
pub mod paging;
pub mod pic;
pub mod rtc;
pub mod sha256;
pub mod trampoline;
pub mod tsc;
pub mod x2apic;
