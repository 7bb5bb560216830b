//! `quest-rt`: Quest's small `no_std` runtime for `bare` sandboxes.
//!
//! An application is an ordinary `#![no_std] #![no_main]` binary crate that names its
//! entry with [`entry!`]:
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! quest_rt::entry!(main);
//! fn main(ctx: &quest_rt::Ctx) {
//!     quest_rt::println!("hello from vcpu {}", ctx.vcpu());
//! }
//! ```
//!
//! The monitor starts every vCPU of the sandbox at `_start` in 64-bit mode with RDI = the
//! [`BootInfo`](quest_abi::bootinfo::BootInfo), RSI = the vCPU index and RSP = that vCPU's
//! stack top. vCPU 0 zeroes `.bss` and sets up the heap while the others wait; then `main`
//! runs on every vCPU. The sandbox exits when all of them have returned, with the first
//! non-zero status (in vCPU order), or at once when one calls [`exit`] or panics
//! (status 101).
#![no_std]

extern crate alloc;

pub mod console;
pub mod cpu;
mod ctx;
pub mod doorbell;
mod heap;
pub mod hypercall;
pub mod interrupts;
pub mod paging;
mod panic;
pub mod pci;
mod start;
pub mod time;

pub use ctx::Ctx;
pub use hypercall::exit;
pub use quest_abi;
pub use quest_channel;
pub use start::Termination;

/// Names the application's entry function, `fn(&Ctx) -> T` with `T: Termination`
/// (`()`, `i32` or `Result<(), E: Debug>`). It runs on every vCPU; with
/// `entry!(main, vcpu0_only)` it runs on vCPU 0 only, and every other vCPU ends at once
/// with status 0.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub fn __quest_rt_main(ctx: &$crate::Ctx) -> i32 {
            $crate::Termination::report($main(ctx))
        }
    };
    ($main:path, vcpu0_only) => {
        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub fn __quest_rt_main(ctx: &$crate::Ctx) -> i32 {
            if ctx.vcpu() != 0 {
                return 0;
            }
            $crate::Termination::report($main(ctx))
        }
    };
}
