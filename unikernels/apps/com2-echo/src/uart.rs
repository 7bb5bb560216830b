//! A 16550 UART driven through its eight I/O ports (register layout and bits as in the
//! National Semiconductor PC16550D data sheet). The sandbox owns the ports (its I/O
//! bitmap lets them through), so every access goes to the device without the monitor.
//! Every method takes `&self` (the overrun count is atomic), so one `static` UART is
//! shared by the echo loop (which sends) and the interrupt handler (which receives).

use core::sync::atomic::{AtomicU32, Ordering};

/// Receiver buffer (read) / transmitter holding register (write); divisor low with DLAB.
const DATA: u16 = 0;
/// Interrupt enable; divisor high with DLAB.
const IER: u16 = 1;
/// Interrupt identification (read) / FIFO control (write).
const IIR: u16 = 2;
const FCR: u16 = 2;
/// Line control.
const LCR: u16 = 3;
/// Modem control.
const MCR: u16 = 4;
/// Line status.
const LSR: u16 = 5;
/// Scratch: a plain read-write byte, used to see whether a UART is there at all.
const SCRATCH: u16 = 7;

/// IER: interrupt when received data is available (FIFO at its trigger level, or the
/// character timeout: bytes waiting and none arrived for four character times).
const IER_RX_AVAILABLE: u8 = 0x01;
/// IER: interrupt on a receiver line status change (overrun, parity, framing, break).
const IER_LINE_STATUS: u8 = 0x04;

/// IIR: set while no interrupt is pending.
const IIR_NONE_PENDING: u8 = 0x01;

/// LCR: divisor latch access (DATA and IER become the divisor).
const LCR_DLAB: u8 = 0x80;
/// LCR: 8 data bits, no parity, 1 stop bit.
const LCR_8N1: u8 = 0x03;
/// FCR: enable both FIFOs, clear them, receive trigger at 14 bytes.
const FCR_ENABLE_CLEAR_14: u8 = 0xc7;
/// MCR: DTR and RTS asserted.
const MCR_DTR_RTS: u8 = 0x03;
/// MCR: OUT2, which on a PC connects the UART's interrupt output to its IRQ line (off:
/// the line stays quiet whatever IER says). QEMU's 16550 interrupts without it (tried:
/// the echo worked with OUT2 off); real hardware needs it.
const MCR_OUT2: u8 = 0x08;

/// LSR: a received byte is waiting.
const LSR_DATA_READY: u8 = 0x01;
/// LSR: a received byte was lost (overrun).
const LSR_OVERRUN: u8 = 0x02;
/// LSR: the transmitter holding register (or FIFO) is empty.
const LSR_THR_EMPTY: u8 = 0x20;
/// LSR: the transmitter is idle (holding register and shift register both empty).
const LSR_IDLE: u8 = 0x40;

/// The 16550's input clock divided by 16: the divisor for `baud` is this / `baud`.
const BAUD_BASE: u32 = 115_200;

fn outb(port: u16, value: u8) {
    // SAFETY: a port write to the sandbox's own UART (its ports are assigned to it in the
    // manifest); it has no effect on this program's memory.
    unsafe { core::arch::asm!("out dx, al", in("dx") port, in("al") value, options(nostack)) };
}

fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: as in `outb`: a read of the sandbox's own UART.
    unsafe { core::arch::asm!("in al, dx", in("dx") port, out("al") value, options(nostack)) };
    value
}

/// One 16550 at a base port.
pub struct Uart {
    base: u16,
    overruns: AtomicU32,
}

impl Uart {
    /// The UART at `base` (COM2: 0x2f8), not yet touched.
    pub const fn at(base: u16) -> Self {
        Self {
            base,
            overruns: AtomicU32::new(0),
        }
    }

    /// The base port.
    pub fn base(&self) -> u16 {
        self.base
    }

    fn read(&self, reg: u16) -> u8 {
        inb(self.base + reg)
    }

    fn write(&self, reg: u16, value: u8) {
        outb(self.base + reg, value);
    }

    /// Whether a UART answers at the base: the scratch register keeps two patterns.
    /// (Without a device, port reads give all ones and the LSR would say "data ready"
    /// for ever.)
    pub fn present(&self) -> bool {
        [0x5a, 0xa5].iter().all(|&p| {
            self.write(SCRATCH, p);
            self.read(SCRATCH) == p
        })
    }

    /// Programs `baud` (a divisor of 115 200), 8N1, both FIFOs on and cleared, DTR/RTS
    /// on, interrupts off ([`Uart::enable_receive_interrupts`] turns them on).
    pub fn init(&self, baud: u32) {
        let divisor = (BAUD_BASE / baud.clamp(1, BAUD_BASE)) as u16;
        self.write(IER, 0);
        self.write(LCR, LCR_DLAB);
        self.write(DATA, divisor as u8);
        self.write(IER, (divisor >> 8) as u8);
        self.write(LCR, LCR_8N1);
        self.write(FCR, FCR_ENABLE_CLEAR_14);
        self.write(MCR, MCR_DTR_RTS);
        // Whatever was pending before (a stale status, a byte from before the FIFO
        // reset) is read away, so the first byte counted is the first one sent after.
        let _ = self.read(LSR);
        while self.read(LSR) & LSR_DATA_READY != 0 {
            let _ = self.read(DATA);
        }
    }

    /// Raises the UART's interrupt when received data is available and on line status
    /// changes, and connects it to the IRQ line (OUT2).
    pub fn enable_receive_interrupts(&self) {
        self.write(MCR, MCR_DTR_RTS | MCR_OUT2);
        self.write(IER, IER_RX_AVAILABLE | IER_LINE_STATUS);
    }

    /// Keeps the receive interrupt off (line status stays on): received bytes wait in
    /// the FIFO until [`Uart::enable_receive_interrupts`].
    pub fn pause_receive_interrupt(&self) {
        self.write(IER, IER_LINE_STATUS);
    }

    /// Stops the UART interrupting and disconnects it from the IRQ line.
    pub fn disable_interrupts(&self) {
        self.write(IER, 0);
        self.write(MCR, MCR_DTR_RTS);
    }

    /// Whether the UART asserts an interrupt (IIR). Reading the line status and the
    /// received bytes clears the receive causes.
    pub fn interrupt_pending(&self) -> bool {
        self.read(IIR) & IIR_NONE_PENDING == 0
    }

    /// The line status; an overrun it reports is counted (reading LSR clears it, so
    /// every read goes through here).
    fn status(&self) -> u8 {
        let lsr = self.read(LSR);
        if lsr & LSR_OVERRUN != 0 {
            self.overruns.fetch_add(1, Ordering::Relaxed);
        }
        lsr
    }

    /// Reads the line status away (clearing a line status interrupt).
    pub fn clear_line_status(&self) {
        let _ = self.status();
    }

    /// The next received byte, if one is waiting.
    pub fn try_receive(&self) -> Option<u8> {
        (self.status() & LSR_DATA_READY != 0).then(|| self.read(DATA))
    }

    /// Sends `byte` once the transmitter has room.
    pub fn send(&self, byte: u8) {
        while self.status() & LSR_THR_EMPTY == 0 {
            core::hint::spin_loop();
        }
        self.write(DATA, byte);
    }

    /// Waits until every byte sent has left the transmitter.
    pub fn drain(&self) {
        while self.status() & LSR_IDLE == 0 {
            core::hint::spin_loop();
        }
    }

    /// Received bytes lost so far (overruns the line status reported).
    pub fn overruns(&self) -> u32 {
        self.overruns.load(Ordering::Relaxed)
    }
}
