//! Panics print their message and end the sandbox with status 101 (like Rust's std).

/// Exit status of a sandbox whose application panicked.
pub const PANIC_STATUS: i32 = 101;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    match info.location() {
        Some(loc) => crate::println!("panicked at {loc}: {}", info.message()),
        None => crate::println!("panicked: {}", info.message()),
    }
    crate::hypercall::exit(PANIC_STATUS)
}
