//! A 16550 UART driven by polling (the monitor never takes interrupts).

use x86_64::instructions::port::Port;

const DATA: u16 = 0;
const INTERRUPT_ENABLE: u16 = 1;
const FIFO_CONTROL: u16 = 2;
const LINE_CONTROL: u16 = 3;
const MODEM_CONTROL: u16 = 4;
const LINE_STATUS: u16 = 5;
/// LSR bit 5: the transmit holding register can take a byte.
const THR_EMPTY: u8 = 1 << 5;
/// LSR bit 6: holding and shift registers are empty (everything is on the wire).
const TRANSMITTER_IDLE: u8 = 1 << 6;
/// Bounded waits: a missing UART reads 0xff (idle) or never drains; don't hang on it.
const MAX_SPINS: u32 = 1_000_000;

/// One UART at an I/O base.
#[derive(Debug, Clone, Copy)]
pub struct Uart {
    base: u16,
}

impl Uart {
    /// A UART at `base` (not yet initialised).
    pub const fn new(base: u16) -> Self {
        Self { base }
    }

    fn port(&self, reg: u16) -> Port<u8> {
        Port::new(self.base + reg)
    }

    /// 115200 baud, 8N1, FIFOs on, interrupts off.
    pub fn init(&self) {
        // SAFETY: the partition table gives the monitor this UART's 8 ports (validate
        // refuses devices overlapping them); these writes only configure the UART.
        unsafe {
            self.port(INTERRUPT_ENABLE).write(0x00);
            self.port(LINE_CONTROL).write(0x80); // divisor latch access
            self.port(DATA).write(0x01); // divisor 1 = 115200 baud
            self.port(INTERRUPT_ENABLE).write(0x00);
            self.port(LINE_CONTROL).write(0x03); // 8N1
            self.port(FIFO_CONTROL).write(0xc7); // enable and clear FIFOs
            self.port(MODEM_CONTROL).write(0x03); // DTR, RTS
        }
    }

    fn line_status(&self) -> u8 {
        // SAFETY: reading LSR has no side effect beyond clearing error bits.
        unsafe { self.port(LINE_STATUS).read() }
    }

    /// Sends one byte.
    pub fn write_byte(&self, byte: u8) {
        let mut spins = 0;
        while self.line_status() & THR_EMPTY == 0 && spins < MAX_SPINS {
            spins += 1;
            core::hint::spin_loop();
        }
        // SAFETY: writing THR sends the byte; see `init` for port ownership.
        unsafe { self.port(DATA).write(byte) };
    }

    /// Waits until every byte written has left the UART.
    pub fn drain(&self) {
        let mut spins = 0;
        while self.line_status() & TRANSMITTER_IDLE == 0 && spins < MAX_SPINS {
            spins += 1;
            core::hint::spin_loop();
        }
    }
}
