//! The monitor console: one UART, one lock, whole lines.
//!
//! Every line is written under one global spinlock, so lines from different cores never
//! interleave. Use [`crate::println!`] (or [`write_line`]) for a line, [`lock`] to build
//! one line from several pieces. Exception and panic paths use [`emergency_line`], which
//! takes the lock from a core that died holding it.

use crate::uart::Uart;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU16, Ordering};
use spin::{Mutex, MutexGuard};

/// The first UART, used until the partition table names the console port.
pub const DEFAULT_PORT: u16 = 0x3f8;

/// The console's port, readable without the lock (for draining from a dying core).
static PORT: AtomicU16 = AtomicU16::new(DEFAULT_PORT);
static CONSOLE: Mutex<Console> = Mutex::new(Console {
    uart: Uart::new(DEFAULT_PORT),
});

/// The console state behind the lock; writes `\n` as CR LF.
#[derive(Debug)]
pub struct Console {
    uart: Uart,
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                self.uart.write_byte(b'\r');
            }
            self.uart.write_byte(byte);
        }
        Ok(())
    }
}

/// Switches the console to the UART at `port` and initialises it.
pub fn init(port: u16) {
    let mut console = CONSOLE.lock();
    console.uart.drain();
    console.uart = Uart::new(port);
    console.uart.init();
    PORT.store(port, Ordering::Relaxed);
}

/// Holds the console for one line built from several writes; end it with `\n`.
pub fn lock() -> MutexGuard<'static, Console> {
    CONSOLE.lock()
}

/// Writes `args` and a newline as one line.
pub fn write_line(args: fmt::Arguments<'_>) {
    let mut console = CONSOLE.lock();
    // Console writes never fail (see `write_str`).
    let _ = console.write_fmt(args);
    let _ = console.write_str("\n");
}

/// Writes a line even if a core died holding the console lock (after a bounded wait).
pub fn emergency_line(args: fmt::Arguments<'_>) {
    for _ in 0..10_000_000u32 {
        if let Some(mut console) = CONSOLE.try_lock() {
            let _ = console.write_fmt(args);
            let _ = console.write_str("\n");
            return;
        }
        core::hint::spin_loop();
    }
    // SAFETY: the holder has not released the lock for a very long time; the system is
    // stopping, and a garbled line is better than none.
    unsafe { CONSOLE.force_unlock() };
    write_line(args);
}

/// Waits until every byte written has left the UART (call before stopping the machine).
pub fn drain() {
    match CONSOLE.try_lock() {
        Some(console) => console.uart.drain(),
        None => Uart::new(PORT.load(Ordering::Relaxed)).drain(),
    }
}

/// Prints one line on the monitor console (format syntax as `std::println!`).
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::console::write_line(format_args!($($arg)*))
    };
}
