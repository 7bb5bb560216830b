//! Wall-clock time from the CMOS real-time clock: decoding the raw register values (BCD
//! or binary, 12- or 24-hour, per status register B) and turning the date into
//! microseconds since the Unix epoch. The port I/O lives in the monitor
//! (`arch::rtc`); everything here is pure.
//!
//! Register meanings follow the MC146818 data sheet as PC firmware uses it: seconds 0x00,
//! minutes 0x02, hours 0x04 (bit 7 = PM in 12-hour mode), day of month 0x07, month 0x08,
//! year 0x09 (two digits), status B 0x0B (bit 1: 24-hour, bit 2: binary), and the
//! century at 0x32 (the IBM PC convention; ACPI's FADT may name another register).

/// Status register B bit 1: hours count 0-23 (else 1-12 with a PM flag).
pub const STATUS_B_24_HOUR: u8 = 1 << 1;
/// Status register B bit 2: values are binary (else BCD).
pub const STATUS_B_BINARY: u8 = 1 << 2;
/// Hours register bit 7 in 12-hour mode: PM.
const HOUR_PM: u8 = 0x80;

/// The RTC registers as read, before any decoding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RtcRegisters {
    /// Register 0x00.
    pub seconds: u8,
    /// Register 0x02.
    pub minutes: u8,
    /// Register 0x04 (with the PM flag in 12-hour mode).
    pub hours: u8,
    /// Register 0x07.
    pub day: u8,
    /// Register 0x08.
    pub month: u8,
    /// Register 0x09 (two digits).
    pub year: u8,
    /// Register 0x32, or `None` when the machine has no century register.
    pub century: Option<u8>,
    /// Status register B (format flags).
    pub status_b: u8,
}

/// A calendar date and time of day (UTC or local, whatever the RTC keeps).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    /// Full year, e.g. 2026.
    pub year: u32,
    /// 1-12.
    pub month: u32,
    /// 1-31 (checked against the month).
    pub day: u32,
    /// 0-23.
    pub hour: u32,
    /// 0-59.
    pub minute: u32,
    /// 0-59 (a leap second 60 is accepted).
    pub second: u32,
}

/// Why the RTC's values cannot be a date. Display gives the reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtcError {
    /// A BCD register holds a nibble above 9 (e.g. 0xff from a missing RTC).
    NotBcd(u8),
    /// A field is out of its range after decoding.
    OutOfRange(&'static str),
    /// The date lies before the Unix epoch.
    BeforeEpoch,
}

impl core::fmt::Display for RtcError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotBcd(v) => write!(f, "register value {v:#04x} is not BCD"),
            Self::OutOfRange(what) => write!(f, "{what} is out of range"),
            Self::BeforeEpoch => f.write_str("the date is before 1970"),
        }
    }
}

/// Decodes one BCD byte (`0x59` -> 59).
pub fn from_bcd(v: u8) -> Result<u8, RtcError> {
    let (hi, lo) = (v >> 4, v & 0x0f);
    if hi > 9 || lo > 9 {
        return Err(RtcError::NotBcd(v));
    }
    Ok(hi * 10 + lo)
}

/// The year assumed for two-digit years without a century register: 2000-2099.
const DEFAULT_CENTURY: u32 = 20;

/// Decodes raw registers into a date, honouring the BCD/binary and 12/24-hour flags.
pub fn decode(r: &RtcRegisters) -> Result<DateTime, RtcError> {
    let binary = r.status_b & STATUS_B_BINARY != 0;
    let value = |v: u8| if binary { Ok(v) } else { from_bcd(v) };
    let pm = r.status_b & STATUS_B_24_HOUR == 0 && r.hours & HOUR_PM != 0;
    let mut hour = u32::from(value(r.hours & !HOUR_PM)?);
    if r.status_b & STATUS_B_24_HOUR == 0 {
        // 12-hour clock: 12 AM is 0, 12 PM is 12.
        if !(1..=12).contains(&hour) {
            return Err(RtcError::OutOfRange("hour"));
        }
        hour = match (hour, pm) {
            (12, false) => 0,
            (12, true) => 12,
            (h, true) => h + 12,
            (h, false) => h,
        };
    }
    let century = match r.century {
        Some(c) => u32::from(value(c)?),
        None => DEFAULT_CENTURY,
    };
    // A century register that reads nonsense (0, or a machine that does not keep it)
    // must not move the date by centuries: accept only 19..=21.
    let century = if (19..=21).contains(&century) {
        century
    } else {
        DEFAULT_CENTURY
    };
    let dt = DateTime {
        year: century * 100 + u32::from(value(r.year)?),
        month: u32::from(value(r.month)?),
        day: u32::from(value(r.day)?),
        hour,
        minute: u32::from(value(r.minutes)?),
        second: u32::from(value(r.seconds)?),
    };
    check(&dt)?;
    Ok(dt)
}

fn is_leap(year: u32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn check(dt: &DateTime) -> Result<(), RtcError> {
    if !(1..=12).contains(&dt.month) {
        return Err(RtcError::OutOfRange("month"));
    }
    if dt.day == 0 || dt.day > days_in_month(dt.year, dt.month) {
        return Err(RtcError::OutOfRange("day"));
    }
    if dt.hour > 23 {
        return Err(RtcError::OutOfRange("hour"));
    }
    if dt.minute > 59 {
        return Err(RtcError::OutOfRange("minute"));
    }
    if dt.second > 60 {
        return Err(RtcError::OutOfRange("second"));
    }
    Ok(())
}

/// Days from 1970-01-01 to `year-month-day` (proleptic Gregorian; the date is checked).
pub fn days_since_epoch(year: u32, month: u32, day: u32) -> Result<u64, RtcError> {
    if year < 1970 {
        return Err(RtcError::BeforeEpoch);
    }
    let whole_years: u64 = (1970..year)
        .map(|y| if is_leap(y) { 366 } else { 365 })
        .sum();
    let whole_months: u64 = (1..month).map(|m| u64::from(days_in_month(year, m))).sum();
    Ok(whole_years + whole_months + u64::from(day) - 1)
}

/// Microseconds from the Unix epoch to `dt` (taken as UTC).
pub fn unix_micros(dt: &DateTime) -> Result<u64, RtcError> {
    check(dt)?;
    let days = days_since_epoch(dt.year, dt.month, dt.day)?;
    let seconds = days * 86_400
        + u64::from(dt.hour) * 3_600
        + u64::from(dt.minute) * 60
        + u64::from(dt.second);
    Ok(seconds * 1_000_000)
}

/// The wall-clock time at which the TSC read 0, given the time `now_us` read at TSC value
/// `tsc` with the TSC running at `tsc_khz`: what a guest adds `rdtsc / frequency` to.
/// Saturates at 0 (a TSC that ran longer than the epoch is old is not a real machine).
pub fn time_at_tsc_zero(now_us: u64, tsc: u64, tsc_khz: u32) -> u64 {
    if tsc_khz == 0 {
        return now_us;
    }
    let elapsed_us = u128::from(tsc) * 1000 / u128::from(tsc_khz);
    now_us.saturating_sub(u64::try_from(elapsed_us).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bcd24(y: u8, mo: u8, d: u8, h: u8, mi: u8, s: u8, century: Option<u8>) -> RtcRegisters {
        RtcRegisters {
            seconds: s,
            minutes: mi,
            hours: h,
            day: d,
            month: mo,
            year: y,
            century,
            status_b: STATUS_B_24_HOUR,
        }
    }

    #[test]
    fn bcd_decodes_and_rejects_bad_nibbles() {
        assert_eq!(from_bcd(0x59), Ok(59));
        assert_eq!(from_bcd(0x00), Ok(0));
        assert_eq!(from_bcd(0x0a), Err(RtcError::NotBcd(0x0a)));
        assert_eq!(from_bcd(0xff), Err(RtcError::NotBcd(0xff)));
    }

    #[test]
    fn known_dates_give_known_unix_times() {
        // Values from `date -u -d ... +%s`.
        let cases = [
            ((1970, 1, 1, 0, 0, 0), 0u64),
            ((2000, 3, 1, 0, 0, 0), 951_868_800),
            ((2024, 2, 29, 12, 34, 56), 1_709_210_096),
            ((2026, 11, 1, 23, 59, 59), 1_793_577_599),
            ((2100, 3, 1, 0, 0, 0), 4_107_542_400),
        ];
        for ((year, month, day, hour, minute, second), secs) in cases {
            let dt = DateTime {
                year,
                month,
                day,
                hour,
                minute,
                second,
            };
            assert_eq!(unix_micros(&dt), Ok(secs * 1_000_000), "{dt:?}");
        }
    }

    #[test]
    fn days_count_leap_years_correctly() {
        assert_eq!(days_since_epoch(1970, 1, 1), Ok(0));
        assert_eq!(days_since_epoch(1971, 1, 1), Ok(365));
        assert_eq!(days_since_epoch(1973, 1, 1), Ok(365 + 365 + 366));
        // 2000 is a leap year (divisible by 400), 2100 is not.
        assert_eq!(
            days_since_epoch(2000, 3, 1).unwrap() - days_since_epoch(2000, 2, 28).unwrap(),
            2
        );
        assert_eq!(
            days_since_epoch(2100, 3, 1).unwrap() - days_since_epoch(2100, 2, 28).unwrap(),
            1
        );
        assert_eq!(days_since_epoch(1969, 12, 31), Err(RtcError::BeforeEpoch));
    }

    #[test]
    fn bcd_24_hour_registers_decode() {
        let r = bcd24(0x26, 0x11, 0x01, 0x23, 0x59, 0x58, Some(0x20));
        let dt = decode(&r).unwrap();
        assert_eq!(
            (dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second),
            (2026, 11, 1, 23, 59, 58)
        );
    }

    #[test]
    fn binary_mode_takes_values_as_they_are() {
        let r = RtcRegisters {
            seconds: 7,
            minutes: 8,
            hours: 9,
            day: 10,
            month: 11,
            year: 26,
            century: Some(20),
            status_b: STATUS_B_24_HOUR | STATUS_B_BINARY,
        };
        let dt = decode(&r).unwrap();
        assert_eq!((dt.year, dt.hour, dt.second), (2026, 9, 7));
        // 0x26 as BCD would be 26 too, but 0x1a is only valid in binary mode.
        let r = RtcRegisters { minutes: 0x1a, ..r };
        assert_eq!(decode(&r).unwrap().minute, 26);
    }

    #[test]
    fn twelve_hour_clock_maps_am_pm() {
        let mut r = bcd24(0x26, 0x01, 0x02, 0x12, 0x00, 0x00, None);
        r.status_b = 0; // 12-hour, BCD
        assert_eq!(decode(&r).unwrap().hour, 0, "12 AM is midnight");
        r.hours = 0x12 | HOUR_PM;
        assert_eq!(decode(&r).unwrap().hour, 12, "12 PM is noon");
        r.hours = 0x11 | HOUR_PM;
        assert_eq!(decode(&r).unwrap().hour, 23);
        r.hours = 0x01;
        assert_eq!(decode(&r).unwrap().hour, 1);
        r.status_b = STATUS_B_BINARY;
        r.hours = 7 | HOUR_PM;
        assert_eq!(decode(&r).unwrap().hour, 19);
        r.hours = 0;
        assert_eq!(decode(&r), Err(RtcError::OutOfRange("hour")));
    }

    #[test]
    fn century_register_is_used_only_when_plausible() {
        let r = bcd24(0x99, 0x12, 0x31, 0x00, 0x00, 0x00, Some(0x19));
        assert_eq!(decode(&r).unwrap().year, 1999);
        let r = bcd24(0x26, 0x01, 0x01, 0x00, 0x00, 0x00, Some(0x00));
        assert_eq!(decode(&r).unwrap().year, 2026, "nonsense century ignored");
        let r = bcd24(0x26, 0x01, 0x01, 0x00, 0x00, 0x00, None);
        assert_eq!(decode(&r).unwrap().year, 2026);
    }

    #[test]
    fn impossible_values_are_errors_not_panics() {
        // A machine without an RTC reads 0xff everywhere.
        let r = RtcRegisters {
            seconds: 0xff,
            minutes: 0xff,
            hours: 0xff,
            day: 0xff,
            month: 0xff,
            year: 0xff,
            century: Some(0xff),
            status_b: 0xff,
        };
        assert!(decode(&r).is_err());
        let r = bcd24(0x26, 0x02, 0x30, 0x00, 0x00, 0x00, None);
        assert_eq!(decode(&r), Err(RtcError::OutOfRange("day")));
        let r = bcd24(0x26, 0x13, 0x01, 0x00, 0x00, 0x00, None);
        assert_eq!(decode(&r), Err(RtcError::OutOfRange("month")));
        let r = bcd24(0x26, 0x01, 0x01, 0x24, 0x00, 0x00, None);
        assert_eq!(decode(&r), Err(RtcError::OutOfRange("hour")));
        let r = bcd24(0x26, 0x01, 0x01, 0x00, 0x60, 0x00, None);
        assert_eq!(decode(&r), Err(RtcError::OutOfRange("minute")));
        // Every binary register combination decodes or errs; never panics.
        for v in 0..=255u8 {
            let r = RtcRegisters {
                seconds: v,
                minutes: v,
                hours: v,
                day: v,
                month: v,
                year: v,
                century: Some(v),
                status_b: v,
            };
            let _ = decode(&r);
        }
    }

    #[test]
    fn time_at_tsc_zero_subtracts_the_elapsed_time() {
        // 3 s at 2 GHz.
        assert_eq!(
            time_at_tsc_zero(10_000_000, 6_000_000_000, 2_000_000),
            7_000_000
        );
        assert_eq!(time_at_tsc_zero(5, 0, 1000), 5);
        assert_eq!(time_at_tsc_zero(5, u64::MAX, 1), 0, "saturates");
        assert_eq!(time_at_tsc_zero(5, 123, 0), 5, "unknown frequency");
    }
}
