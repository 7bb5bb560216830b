//! Entry: `_start` on every vCPU, one-time setup by vCPU 0, `main`, and the sandbox exit.

use crate::ctx::Ctx;
use core::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use quest_abi::bootinfo::{BootInfo, BOOT_INFO_MAGIC, BOOT_INFO_VERSION};
use quest_abi::table::MAX_VCPUS_PER_SANDBOX;

// Every vCPU enters here in 64-bit mode: RDI = boot info, RSI = vCPU index, RSP = its
// stack top. The image is already relocated by the host, so Rust code can run at once.
core::arch::global_asm!(
    ".globl _start",
    "_start:",
    "xor ebp, ebp",
    "and rsp, -16",
    "call {start}",
    "2:",
    "pause",
    "jmp 2b",
    start = sym rust_start,
);

/// Exit status when the boot info or the vCPU index is unusable.
const BAD_BOOT_STATUS: i32 = 102;

// Set-up state. Non-zero initial values keep it in `.data`, so zeroing `.bss` cannot race
// with the vCPUs that poll it.
const SETUP_PENDING: u32 = 0x5e70_0001;
const SETUP_DONE: u32 = 0x5e70_0002;
static SETUP: AtomicU32 = AtomicU32::new(SETUP_PENDING);

/// Exit status of each vCPU's `main`; valid once [`FINISHED`] counts it.
static STATUS: [AtomicI32; MAX_VCPUS_PER_SANDBOX] =
    [const { AtomicI32::new(0) }; MAX_VCPUS_PER_SANDBOX];
/// vCPUs whose `main` returned.
static FINISHED: AtomicU32 = AtomicU32::new(0);

unsafe extern "Rust" {
    /// The application's entry, defined by [`crate::entry!`].
    fn __quest_rt_main(ctx: &Ctx) -> i32;
}

unsafe extern "C" {
    // Defined by the linker: the start of `.bss` and the end of the loaded image.
    static __bss_start: u8;
    static _end: u8;
}

/// Checks the boot info the monitor passed; `None` if it is not one.
fn boot_info(addr: u64) -> Option<&'static BootInfo> {
    if addr != quest_abi::layout::BOOT_INFO_GPA {
        return None;
    }
    // SAFETY: the address is the fixed boot-info address inside our RAM, identity-mapped;
    // `BootInfo` is plain bytes with alignment 1, and nothing writes it after launch.
    let info = unsafe { &*(addr as *const BootInfo) };
    let ok = info.magic == BOOT_INFO_MAGIC
        && info.version.get() == BOOT_INFO_VERSION
        && (1..=MAX_VCPUS_PER_SANDBOX as u32).contains(&info.num_vcpus.get());
    ok.then_some(info)
}

/// Zeroes `.bss`.
///
/// # Safety
/// Call once, on one vCPU, before anything uses a static in `.bss`.
unsafe fn zero_bss() {
    let start = &raw const __bss_start as usize;
    let end = &raw const _end as usize;
    if end > start {
        // SAFETY: `[__bss_start, _end)` is this image's `.bss`, mapped writable; no
        // reference to any static in it exists yet (the caller's contract).
        unsafe { core::ptr::write_bytes(start as *mut u8, 0, end - start) };
    }
}

/// Gives the boot info's heap range to the allocator if it is sound.
fn init_heap(info: &BootInfo) {
    let (start, end) = (info.heap_start.get(), info.heap_end.get());
    let stacks = (info.num_vcpus.get() as u64).saturating_mul(info.stack_size.get());
    let sound = start >= info.image_end.get()
        && start < end
        && end <= info.ram_size.get().saturating_sub(stacks);
    if sound {
        // SAFETY: the range lies between the image and the stacks in our RAM (checked
        // above), is identity-mapped writable, and this runs once, on vCPU 0, before any
        // allocation.
        unsafe { crate::heap::init(start, end) };
    }
}

extern "sysv64" fn rust_start(boot_info_addr: u64, vcpu: u64) -> ! {
    let Some(info) = boot_info(boot_info_addr) else {
        crate::println!("quest-rt: invalid boot info at {boot_info_addr:#x}");
        crate::exit(BAD_BOOT_STATUS);
    };
    let n = info.num_vcpus.get();
    let Some(vcpu) = u32::try_from(vcpu).ok().filter(|&v| v < n) else {
        crate::println!("quest-rt: vcpu index {vcpu} out of range (sandbox has {n})");
        crate::exit(BAD_BOOT_STATUS);
    };
    if vcpu == 0 {
        // SAFETY: only vCPU 0 gets here, once, and the others wait for SETUP_DONE before
        // touching anything in `.bss`.
        unsafe { zero_bss() };
        init_heap(info);
        crate::time::set_tsc_khz(info.tsc_khz.get());
        // The hypercall instruction, chosen once here (one CPUID exit per sandbox) so no
        // vCPU issues a CPUID of its own later.
        crate::hypercall::Instruction::current();
        SETUP.store(SETUP_DONE, Ordering::Release);
    } else {
        while SETUP.load(Ordering::Acquire) != SETUP_DONE {
            core::hint::spin_loop();
        }
    }

    let ctx = Ctx::new(vcpu, info);
    // SAFETY: `__quest_rt_main` is the safe Rust function `entry!` defines with exactly
    // this signature.
    let status = unsafe { __quest_rt_main(&ctx) };
    STATUS[vcpu as usize].store(status, Ordering::Relaxed);
    FINISHED.fetch_add(1, Ordering::Release);
    if vcpu != 0 {
        // vCPU 0 ends the sandbox once everyone is done; wait for that.
        loop {
            core::hint::spin_loop();
        }
    }
    while FINISHED.load(Ordering::Acquire) < n {
        core::hint::spin_loop();
    }
    let status = STATUS[..n as usize]
        .iter()
        .map(|s| s.load(Ordering::Relaxed))
        .find(|&s| s != 0)
        .unwrap_or(0);
    crate::exit(status)
}

/// What `main` may return: its value becomes the vCPU's exit status.
pub trait Termination {
    /// The exit status.
    fn report(self) -> i32;
}

impl Termination for () {
    fn report(self) -> i32 {
        0
    }
}

impl Termination for i32 {
    fn report(self) -> i32 {
        self
    }
}

impl<E: core::fmt::Debug> Termination for Result<(), E> {
    fn report(self) -> i32 {
        match self {
            Ok(()) => 0,
            Err(e) => {
                crate::println!("error: {e:?}");
                1
            }
        }
    }
}
