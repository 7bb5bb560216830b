//! Reading the CMOS real-time clock (index port 0x70, data port 0x71) for the wall-clock
//! time at boot. Decoding and date arithmetic are pure (`quest_monitor_core::rtc_time`).
//!
//! The RTC updates its registers once a second; while status A bit 7 (update in
//! progress) is set they may be inconsistent. The reader waits for it to clear, reads
//! every register, and repeats until two reads agree (an update between them changes at
//! least the seconds).

use super::tsc;
use quest_monitor_core::rtc_time::RtcRegisters;
use x86_64::instructions::port::Port;

const INDEX_PORT: u16 = 0x70;
const DATA_PORT: u16 = 0x71;
const REG_SECONDS: u8 = 0x00;
const REG_MINUTES: u8 = 0x02;
const REG_HOURS: u8 = 0x04;
const REG_DAY: u8 = 0x07;
const REG_MONTH: u8 = 0x08;
const REG_YEAR: u8 = 0x09;
const REG_STATUS_A: u8 = 0x0A;
const REG_STATUS_B: u8 = 0x0B;
const REG_CENTURY: u8 = 0x32;
const STATUS_A_UPDATING: u8 = 0x80;
/// An update takes under 2 ms; wait at most this long for one to end.
const UPDATE_WAIT_US: u64 = 10_000;
/// Pairs of reads to try before giving up on two that agree.
const ATTEMPTS: usize = 5;

fn read_register(index: u8) -> u8 {
    // SAFETY: ports 0x70/0x71 are the CMOS index/data pair on every PC-compatible
    // machine; the monitor owns them (no sandbox gets them) and only reads. Bit 7 of the
    // index stays clear, which keeps NMIs enabled (the monitor needs them).
    unsafe {
        Port::<u8>::new(INDEX_PORT).write(index & 0x7f);
        Port::<u8>::new(DATA_PORT).read()
    }
}

/// Waits (bounded) until no update is in progress; false if one never ended.
fn wait_for_update_end() -> bool {
    let deadline = tsc::now() + UPDATE_WAIT_US * u64::from(tsc::khz().max(1)) / 1000;
    while read_register(REG_STATUS_A) & STATUS_A_UPDATING != 0 {
        if tsc::now() > deadline {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

fn read_all() -> RtcRegisters {
    RtcRegisters {
        seconds: read_register(REG_SECONDS),
        minutes: read_register(REG_MINUTES),
        hours: read_register(REG_HOURS),
        day: read_register(REG_DAY),
        month: read_register(REG_MONTH),
        year: read_register(REG_YEAR),
        century: Some(read_register(REG_CENTURY)),
        status_b: read_register(REG_STATUS_B),
    }
}

/// The RTC registers and the TSC when they were read; `None` when no consistent set
/// could be read (an RTC that is always updating, or none at all).
pub fn read() -> Option<(RtcRegisters, u64)> {
    for _ in 0..ATTEMPTS {
        if !wait_for_update_end() {
            return None;
        }
        let first = read_all();
        let at = tsc::now();
        if !wait_for_update_end() {
            return None;
        }
        if read_all() == first {
            return Some((first, at));
        }
    }
    None
}
