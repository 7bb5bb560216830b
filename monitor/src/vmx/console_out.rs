//! Sandbox console output: whole lines, prefixed with the sandbox name, printed under the
//! console lock so lines of different cores never interleave (assembly per vCPU in
//! `quest_monitor_core::console_line`).

use core::fmt::Write;

/// Prints one sandbox line as `[name] text` (invalid UTF-8 shows as U+FFFD).
pub fn print_line(name: &str, line: &[u8]) {
    let mut console = crate::console::lock();
    // Console writes never fail.
    let _ = write!(console, "[{name}] ");
    for chunk in line.utf8_chunks() {
        let _ = console.write_str(chunk.valid());
        if !chunk.invalid().is_empty() {
            let _ = console.write_char(char::REPLACEMENT_CHARACTER);
        }
    }
    let _ = console.write_str("\n");
}
