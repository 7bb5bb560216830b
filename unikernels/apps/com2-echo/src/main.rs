//! Echoes COM2: the sandbox owns the 16550 at ports 0x2f8-0x2ff (`{ port =
//! "0x2f8-0x2ff", irq = 3 }` in its manifest), programs it (115 200 baud, 8N1, FIFOs on),
//! prints `com2-echo: ready` on its console and sends back every byte it receives, until
//! the last five bytes received are `quit\n` (echoed too). Then it waits for the
//! transmitter to drain and prints how many bytes it echoed and how many the UART lost:
//! `com2-echo: echoed N bytes, overruns M`. Without a UART at 0x2f8 it says so and exits 1.
//!
//! Receiving is separated from waiting ([`Wait`]): the loop polls the line status now;
//! once the monitor routes IRQ 3 to this sandbox's first core (vector 35), an
//! interrupt-driven `Wait` (receive interrupt on, `sti; hlt` until a byte is there) can
//! replace [`Poll`] without touching the echo loop.
#![no_std]
#![no_main]

mod uart;

use quest_rt::{println, Ctx};
use uart::Uart;

quest_rt::entry!(main, vcpu0_only);

/// COM2's base port.
const COM2: u16 = 0x2f8;
/// The line speed (the emulators ignore it; real hardware needs both ends to agree).
const BAUD: u32 = 115_200;
/// Received last, it ends the echo.
const TERMINATOR: &[u8] = b"quit\n";

/// How the echo loop waits while no byte has arrived.
pub trait Wait {
    /// Returns when a byte may be waiting (spurious returns are fine).
    fn for_input(&mut self, uart: &Uart);
}

/// Polls the line status: one PAUSE between reads (a QEMU TCG vCPU hands its turn to
/// the next one on PAUSE).
pub struct Poll;

impl Wait for Poll {
    fn for_input(&mut self, _uart: &Uart) {
        core::hint::spin_loop();
    }
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
fn echo(uart: &mut Uart, wait: &mut impl Wait) -> u64 {
    let mut tail = Tail {
        bytes: [0; TERMINATOR.len()],
        seen: 0,
    };
    let mut echoed = 0u64;
    loop {
        let Some(b) = uart.try_receive() else {
            wait.for_input(uart);
            continue;
        };
        uart.send(b);
        echoed += 1;
        if tail.push(b) {
            return echoed;
        }
    }
}

fn main(_ctx: &Ctx) -> i32 {
    let mut uart = Uart::at(COM2);
    if !uart.present() {
        println!("com2-echo: no 16550 at {:#x}", uart.base());
        return 1;
    }
    uart.init(BAUD);
    println!(
        "com2-echo: ready (16550 at {:#x}, {BAUD} baud 8N1, FIFOs on, polled)",
        uart.base()
    );
    let echoed = echo(&mut uart, &mut Poll);
    uart.drain();
    println!(
        "com2-echo: echoed {echoed} bytes, overruns {}",
        uart.overruns()
    );
    0
}
