//! Echoes COM2: the sandbox owns the 16550 at ports 0x2f8-0x2ff (`{ port =
//! "0x2f8-0x2ff", irq = 3 }` in its manifest), programs it (115 200 baud, 8N1, FIFOs on),
//! prints `com2-echo: ready` on its console and sends back every byte it receives, until
//! the last five bytes received are `quit\n` (echoed too). Then it waits for the
//! transmitter to drain and prints how many bytes it echoed and how many the UART lost:
//! `com2-echo: echoed N bytes, overruns M`. Without a UART at 0x2f8 it says so and exits
//! 1.
//!
//! Receiving is interrupt-driven by default: the UART raises IRQ 3 when received data is
//! available (FIFO trigger level or character timeout) or on a line status change; the
//! monitor routes line 3 to this sandbox's first core as vector 35, whose handler drains
//! the receive FIFO into a ring and acknowledges (EOI). The echo loop takes bytes from the
//! ring and, when it is empty, halts until the next interrupt: it checks the ring with
//! interrupts off and halts with `sti; hlt`, whose one-instruction interrupt shadow
//! means an interrupt that came after the check wakes the `hlt` instead of being taken
//! before it. Sending polls the transmitter (`send` waits for THR empty; QEMU sends a
//! byte written to THR at once, so the wait is short). A THR-empty interrupt would not
//! let the loop sleep more (under load it is busy sending while the ring fills) and
//! would add interrupts, each an exit where the EOI is emulated.
//! It then prints `com2-echo: interrupt-driven: I interrupts (vector 35), S stray, H
//! halts, P pauses (ring full or drain limit), E exits (x.yy per interrupt)`: the exits
//! are the sandbox's VM exits during the echo (`exit_count` hypercall). The UART's ports
//! are its own (no exit); what is left is the local APIC's EOI where the monitor
//! emulates the x2APIC (SVM without AVIC: one per interrupt). A stray interrupt makes it
//! exit 1.
//!
//! `args = ["poll"]` keeps the UART's interrupt off and polls the line status instead
//! (`com2-echo: polled: E exits`).
#![no_std]
#![no_main]

mod ring;
mod uart;

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use quest_rt::hypercall::exit_count;
use quest_rt::interrupts;
use quest_rt::{println, Ctx};
use ring::Ring;
use uart::Uart;

quest_rt::entry!(main, vcpu0_only);

/// COM2's base port.
const COM2: u16 = 0x2f8;
/// COM2's ISA IRQ line; the monitor delivers it as vector 32 + line.
const LINE: u8 = 3;
/// The line speed (the emulators ignore it; real hardware needs both ends to agree).
const BAUD: u32 = 115_200;
/// Received last, it ends the echo.
const TERMINATOR: &[u8] = b"quit\n";
/// Most bytes one interrupt drains (the FIFO holds 16, but QEMU refills it while the
/// handler runs; a UART that never runs dry must not keep the handler for ever).
const DRAIN_LIMIT: usize = 256;

/// The UART, shared by the echo loop and the interrupt handler.
static UART: Uart = Uart::at(COM2);
/// Bytes received by the handler, not yet echoed.
static RX: Ring = Ring::new();
/// Interrupts taken at vector 32 + `LINE`.
static INTERRUPTS: AtomicU64 = AtomicU64::new(0);
/// Interrupts at any other vector.
static STRAY: AtomicU64 = AtomicU64::new(0);
/// The handler found the ring full (or drained its limit) and paused the receive
/// interrupt; the echo loop turns it back on once the ring is empty.
static PAUSED: AtomicBool = AtomicBool::new(false);
/// Times the receive interrupt was paused.
static PAUSES: AtomicU64 = AtomicU64::new(0);

/// Where the echo loop's bytes come from.
pub trait Receive {
    /// The next received byte (waits for it).
    fn next(&mut self) -> u8;
}

/// Polls the line status: one PAUSE between reads (a QEMU TCG vCPU hands its turn to
/// the next one on PAUSE).
pub struct Poll;

impl Receive for Poll {
    fn next(&mut self) -> u8 {
        loop {
            if let Some(b) = UART.try_receive() {
                return b;
            }
            core::hint::spin_loop();
        }
    }
}

/// Takes bytes from the ring the interrupt handler fills; sleeps while it is empty.
pub struct Interrupt {
    /// Times the loop halted.
    halts: u64,
}

impl Receive for Interrupt {
    fn next(&mut self) -> u8 {
        loop {
            if let Some(b) = RX.pop() {
                return b;
            }
            interrupts::disable();
            if RX.is_empty() {
                if PAUSED.swap(false, Ordering::Relaxed) {
                    // Bytes left in the FIFO raise the interrupt again at once.
                    UART.enable_receive_interrupts();
                }
                self.halts += 1;
                // SAFETY: STI then HLT: interrupts are taken from the HLT on (STI's
                // shadow covers the next instruction), so one that became pending after
                // the check above wakes the HLT rather than being taken before it; the
                // handler (an IDT this vCPU loaded) returns past the HLT with interrupts
                // on. No memory or stack of this function is touched; the handler's
                // writes to the ring are seen because the asm is not `nomem`.
                unsafe { core::arch::asm!("sti", "hlt", options(nostack)) };
            } else {
                interrupts::enable();
            }
        }
    }
}

/// The handler of vector 32 + `LINE`: drains the receive FIFO while the UART asserts an
/// interrupt, so its line goes low again (the ISA line is edge-triggered: one left high
/// would never interrupt again), then EOI. A full ring, or [`DRAIN_LIMIT`] bytes in one
/// go, pauses the receive interrupt (which lowers the line; the bytes stay in the UART,
/// whose peer then waits: QEMU stops reading the socket) until the echo loop has emptied
/// the ring and turns it back on (a new edge if bytes wait).
fn on_com2(_vector: u8) {
    INTERRUPTS.fetch_add(1, Ordering::Relaxed);
    let mut drained = 0;
    'pending: while UART.interrupt_pending() {
        if !RX.has_room() || drained >= DRAIN_LIMIT {
            UART.pause_receive_interrupt();
            // A line status cause would keep the line high: reading LSR clears it.
            UART.clear_line_status();
            PAUSED.store(true, Ordering::Relaxed);
            PAUSES.fetch_add(1, Ordering::Relaxed);
            break;
        }
        // The status read in `try_receive` clears a line status interrupt; taking the
        // bytes clears the receive ones.
        while let Some(b) = UART.try_receive() {
            // Room was checked, and only this handler pushes: the byte is stored.
            let _ = RX.push(b);
            drained += 1;
            if !RX.has_room() || drained >= DRAIN_LIMIT {
                continue 'pending;
            }
        }
    }
    interrupts::eoi();
}

/// Every other vector: counted.
fn on_stray(_vector: u8) {
    STRAY.fetch_add(1, Ordering::Relaxed);
    interrupts::eoi();
}

/// The last bytes received, to spot [`TERMINATOR`].
struct Tail {
    bytes: [u8; TERMINATOR.len()],
    seen: usize,
}

impl Tail {
    /// Records `b`; whether the tail is now the terminator.
    fn push(&mut self, b: u8) -> bool {
        self.bytes.copy_within(1.., 0);
        self.bytes[TERMINATOR.len() - 1] = b;
        self.seen = self.seen.saturating_add(1);
        self.seen >= TERMINATOR.len() && self.bytes == *TERMINATOR
    }
}

/// Echoes every received byte until the terminator; returns how many bytes it echoed
/// (the terminator included).
fn echo(source: &mut impl Receive) -> u64 {
    let mut tail = Tail {
        bytes: [0; TERMINATOR.len()],
        seen: 0,
    };
    let mut echoed = 0u64;
    loop {
        let b = source.next();
        UART.send(b);
        echoed += 1;
        if tail.push(b) {
            return echoed;
        }
    }
}

/// `n / d` with two decimals.
struct Ratio(u64, u64);

impl core::fmt::Display for Ratio {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let hundredths = self.0 * 100 / self.1.max(1);
        write!(f, "{}.{:02}", hundredths / 100, hundredths % 100)
    }
}

fn main(ctx: &Ctx) -> i32 {
    if !UART.present() {
        println!("com2-echo: no 16550 at {:#x}", UART.base());
        return 1;
    }
    let polled = ctx.args().args().any(|a| a == "poll");
    UART.init(BAUD);
    let vector = interrupts::FIRST_VECTOR + LINE;
    if !polled {
        for v in interrupts::FIRST_VECTOR..=255 {
            interrupts::set_handler(v, on_stray);
        }
        interrupts::set_handler(vector, on_com2);
        interrupts::load();
        UART.enable_receive_interrupts();
    }
    println!(
        "com2-echo: ready (16550 at {:#x}, {BAUD} baud 8N1, FIFOs on, {})",
        UART.base(),
        if polled {
            "polled"
        } else {
            "receive interrupt on"
        }
    );
    let start = exit_count();
    let (echoed, halts) = if polled {
        (echo(&mut Poll), None)
    } else {
        interrupts::enable();
        let mut source = Interrupt { halts: 0 };
        let echoed = echo(&mut source);
        interrupts::disable();
        UART.disable_interrupts();
        (echoed, Some(source.halts))
    };
    // The second call counts itself.
    let exits = exit_count().saturating_sub(start + 1);
    UART.drain();
    println!(
        "com2-echo: echoed {echoed} bytes, overruns {}",
        UART.overruns()
    );
    let Some(halts) = halts else {
        println!("com2-echo: polled: {exits} exits");
        return 0;
    };
    let taken = INTERRUPTS.load(Ordering::Relaxed);
    let stray = STRAY.load(Ordering::Relaxed);
    println!(
        "com2-echo: interrupt-driven: {taken} interrupts (vector {vector}), {stray} stray, {halts} halts, {} pauses (ring full or drain limit), {exits} exits ({} per interrupt)",
        PAUSES.load(Ordering::Relaxed),
        Ratio(exits, taken)
    );
    if stray == 0 {
        0
    } else {
        1
    }
}
