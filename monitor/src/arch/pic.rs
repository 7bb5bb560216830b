//! The legacy 8259 interrupt controllers. Firmware leaves them unmasked with the timer
//! (IRQ 0) routed to vector 8 through the boot core's LINT0 (virtual-wire mode). With
//! external-interrupt exiting off, such an interrupt would land in whichever sandbox
//! runs on that core, at a vector its kernel uses for #DF. No sandbox owns the legacy
//! PICs (Hermit's writes to them are ignored by the monitor), so they are masked for
//! good at boot.

use x86_64::instructions::port::Port;

/// Data (interrupt mask) port of the primary controller.
const PRIMARY_DATA: u16 = 0x21;
/// Data (interrupt mask) port of the secondary controller.
const SECONDARY_DATA: u16 = 0xA1;

/// Masks every interrupt line of both 8259 controllers.
///
/// # Safety
/// Boot core only, before any sandbox runs; nothing in the monitor relies on PIC
/// interrupts (it runs with interrupts off and measures the TSC by polling the PIT).
pub unsafe fn mask_all() {
    // SAFETY: writing the interrupt mask register (OCW1) of a controller only masks
    // its lines; the ports exist on every PC-compatible machine and are never handed
    // to a sandbox.
    unsafe {
        Port::<u8>::new(PRIMARY_DATA).write(0xff);
        Port::<u8>::new(SECONDARY_DATA).write(0xff);
    }
}
