//! Ending the system: QEMU's isa-debug-exit device and Bochs' shutdown port, then a
//! halt loop on real hardware.

use x86_64::instructions::port::Port;

/// I/O port of QEMU's `-device isa-debug-exit,iobase=0xf4,iosize=4`.
pub const QEMU_EXIT_PORT: u16 = 0xf4;
/// Value written on success: QEMU exits with status `(value << 1) | 1` = 33.
pub const QEMU_EXIT_SUCCESS: u32 = 0x10;
/// Value written on failure: QEMU exits with status 35.
pub const QEMU_EXIT_FAILURE: u32 = 0x11;
/// Bochs ends when the bytes of "Shutdown" are written to this port (status always 1).
pub const BOCHS_SHUTDOWN_PORT: u16 = 0x8900;

/// Stops the machine: drains the console, ends QEMU with a status that says `success`,
/// ends Bochs, and otherwise halts this core forever.
pub fn shutdown(success: bool) -> ! {
    crate::console::drain();
    let value = if success {
        QEMU_EXIT_SUCCESS
    } else {
        QEMU_EXIT_FAILURE
    };
    // SAFETY: on QEMU the port is the debug-exit device and ends the process; elsewhere
    // nothing decodes it. Port 0x8900 is Bochs' shutdown port; elsewhere unused.
    unsafe {
        Port::<u32>::new(QEMU_EXIT_PORT).write(value);
        let mut bochs = Port::<u8>::new(BOCHS_SHUTDOWN_PORT);
        for byte in b"Shutdown" {
            bochs.write(*byte);
        }
    }
    halt_forever()
}

/// Disables interrupts and halts this core for good.
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
