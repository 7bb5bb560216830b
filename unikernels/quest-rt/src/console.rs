//! Console output: [`print!`](crate::print) and [`println!`](crate::println).
//!
//! Each call formats into a buffer on the stack and hands it to the monitor in as few
//! [`console_write`](crate::hypercall::console_write) calls as possible (one for lines up
//! to [`LINE_BUFFER`] bytes), so lines from different vCPUs do not interleave.

use core::fmt::{self, Write};

/// Bytes buffered before a console hypercall.
pub const LINE_BUFFER: usize = 512;

/// A [`fmt::Write`] that batches output into console hypercalls.
#[derive(Debug)]
pub struct Console {
    buf: [u8; LINE_BUFFER],
    len: usize,
}

impl Console {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self {
            buf: [0; LINE_BUFFER],
            len: 0,
        }
    }

    /// Sends what is buffered.
    pub fn flush(&mut self) {
        // A refused write has nowhere to be reported; dropping it is all we can do.
        let _ = crate::hypercall::console_write(&self.buf[..self.len]);
        self.len = 0;
    }
}

impl Default for Console {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == LINE_BUFFER {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    let mut console = Console::new();
    // Console::write_str never fails.
    let _ = console.write_fmt(args);
    console.flush();
}

/// Prints to the sandbox console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::_print(format_args!($($arg)*)) };
}

/// Prints a line to the sandbox console.
#[macro_export]
macro_rules! println {
    () => { $crate::console::_print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::_print(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Exit status of a hostile test application whose attack the monitor did not stop.
pub const NOT_CONTAINED: i32 = 3;

/// Reports that the monitor did not stop `what` (the line the boot tests look for:
/// `WHO: NOT CONTAINED: WHAT`) and returns [`NOT_CONTAINED`], the status to exit with.
pub fn not_contained(who: &str, what: impl fmt::Display) -> i32 {
    crate::println!("{who}: NOT CONTAINED: {what}");
    NOT_CONTAINED
}
