//! The manifest's number formats: sizes (`"64MiB"`, `4096`, `"0x1000"`), integers and
//! I/O port ranges (`"0x2f8-0x2ff"`, `"0x60"`, `96`). Pure, checked, never panicking.

use thiserror::Error;

/// Why a size, number or port range was rejected. The doc line of each variant is its
/// message.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum NumberError {
    /// The text is empty.
    #[error("empty value")]
    Empty,
    /// The number part is not a decimal or `0x` hexadecimal number.
    #[error("`{0}` is not a number")]
    NotANumber(String),
    /// The unit is not one we know.
    #[error("unknown unit `{unit}`")]
    UnknownUnit {
        /// The unit as written.
        unit: String,
        /// The unit probably meant.
        suggestion: Option<&'static str>,
    },
    /// A hexadecimal number followed by a unit (`0x1B` reads as hex, so we refuse both).
    #[error("a hexadecimal size cannot have a unit")]
    HexWithUnit,
    /// The value does not fit in 64 bits.
    #[error("`{0}` is too large (more than 2^64 - 1 bytes)")]
    Overflow(String),
    /// A negative number.
    #[error("negative value {0}")]
    Negative(i64),
    /// A port above 0xffff.
    #[error("port {0:#x} is above 0xffff")]
    PortTooLarge(u64),
    /// A duration written without a unit.
    #[error("a duration needs a unit")]
    NoTimeUnit,
    /// A duration with a unit we do not know.
    #[error("unknown time unit `{0}`")]
    UnknownTimeUnit(String),
    /// A duration finer than a nanosecond.
    #[error("`{0}` is finer than a nanosecond")]
    TooPrecise(String),
    /// A port range whose end is before its start.
    #[error("port range {first:#x}-{last:#x} is reversed")]
    Reversed {
        /// First port as written.
        first: u16,
        /// Last port as written.
        last: u16,
    },
}

impl NumberError {
    /// A few words for the caret.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::NotANumber(_) => "not a number",
            Self::UnknownUnit { .. } => "unknown unit",
            Self::HexWithUnit => "hexadecimal with a unit",
            Self::Overflow(_) => "too large",
            Self::Negative(_) => "negative",
            Self::PortTooLarge(_) => "above 0xffff",
            Self::NoTimeUnit => "no unit",
            Self::UnknownTimeUnit(_) => "unknown unit",
            Self::TooPrecise(_) => "below 1 ns",
            Self::Reversed { .. } => "reversed range",
        }
    }

    /// How to fix it.
    pub fn hint(&self) -> String {
        match self {
            Self::UnknownUnit {
                suggestion: Some(s),
                ..
            } => format!("did you mean `{s}`? sizes use binary units: KiB, MiB, GiB, TiB"),
            Self::Empty | Self::NotANumber(_) | Self::UnknownUnit { .. } => {
                "write a byte count (`4096`, `\"0x1000\"`) or a number with a unit: \
                 `\"4KiB\"`, `\"64MiB\"`, `\"1GiB\"`"
                    .into()
            }
            Self::HexWithUnit => "write `\"0x1000\"` (bytes) or `\"4KiB\"`".into(),
            Self::Overflow(_) => "use a size that fits in 64 bits".into(),
            Self::Negative(_) => "sizes, cores and ports are never negative".into(),
            Self::PortTooLarge(_) => "x86 I/O ports are 0x0..=0xffff".into(),
            Self::NoTimeUnit | Self::UnknownTimeUnit(_) | Self::TooPrecise(_) => {
                "write a duration with a unit: `\"500ns\"`, `\"100us\"`, `\"2.5ms\"`, `\"1s\"`"
                    .into()
            }
            Self::Reversed { first, last } => {
                format!("write the lower port first: `\"{last:#x}-{first:#x}\"`")
            }
        }
    }
}

/// Binary units and their multipliers; `B` is plain bytes.
const UNITS: [(&str, u64); 5] = [
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
];

/// Units people write by habit, and the binary unit we accept instead.
const LOOKALIKES: [(&str, &str); 12] = [
    ("K", "KiB"),
    ("KB", "KiB"),
    ("k", "KiB"),
    ("kB", "KiB"),
    ("kb", "KiB"),
    ("M", "MiB"),
    ("MB", "MiB"),
    ("mb", "MiB"),
    ("G", "GiB"),
    ("GB", "GiB"),
    ("gb", "GiB"),
    ("T", "TiB"),
];

/// Parses an unsigned integer written in decimal or as `0x` hexadecimal (`_` separators
/// allowed, as in TOML).
pub fn parse_uint(text: &str) -> Result<u64, NumberError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(NumberError::Empty);
    }
    let (digits, radix) = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (text, 10),
    };
    let digits: String = digits.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(NumberError::NotANumber(text.into()));
    }
    u64::from_str_radix(&digits, radix).map_err(|_| NumberError::Overflow(text.into()))
}

/// Parses a size in bytes: `"64MiB"`, `"4 KiB"`, `"4096"`, `"0x1000"`.
pub fn parse_size(text: &str) -> Result<u64, NumberError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(NumberError::Empty);
    }
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        // `0x10MiB`: hex digits, then letters that are not hex digits.
        let digits_end = hex
            .find(|c: char| !(c.is_ascii_hexdigit() || c == '_'))
            .unwrap_or(hex.len());
        let rest = hex[digits_end..].trim_start();
        if digits_end > 0 && !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(NumberError::HexWithUnit);
        }
        return parse_uint(text);
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '_'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit = unit.trim_start();
    if number.is_empty() {
        return Err(NumberError::NotANumber(text.into()));
    }
    let n = parse_uint(number).map_err(|e| match e {
        NumberError::Overflow(_) => NumberError::Overflow(text.into()),
        other => other,
    })?;
    let multiplier = if unit.is_empty() {
        1
    } else {
        UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|&(_, m)| m)
            .ok_or_else(|| NumberError::UnknownUnit {
                unit: unit.into(),
                suggestion: suggest_unit(unit),
            })?
    };
    n.checked_mul(multiplier)
        .ok_or_else(|| NumberError::Overflow(text.into()))
}

fn suggest_unit(unit: &str) -> Option<&'static str> {
    if let Some(&(_, s)) = LOOKALIKES.iter().find(|(l, _)| *l == unit) {
        return Some(s);
    }
    UNITS
        .iter()
        .map(|&(name, _)| name)
        .find(|name| name.eq_ignore_ascii_case(unit))
}

/// Time units and their length in nanoseconds.
const TIME_UNITS: [(&str, u64); 5] = [
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
];

/// Parses a duration into nanoseconds: `"500ns"`, `"100us"` (or `µs`), `"2.5ms"`, `"1s"`.
/// A decimal fraction is exact down to the nanosecond; a bare number has no unit and is
/// refused (cycles or microseconds would both be guesses).
pub fn parse_duration(text: &str) -> Result<u64, NumberError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(NumberError::Empty);
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '_' || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit = unit.trim_start();
    if unit.is_empty() {
        return Err(NumberError::NoTimeUnit);
    }
    let Some(&(_, ns)) = TIME_UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(NumberError::UnknownTimeUnit(unit.into()));
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(NumberError::NotANumber(text.into()));
    }
    let overflow = || NumberError::Overflow(text.into());
    let whole = if whole.is_empty() {
        0
    } else {
        parse_uint(whole)?
    };
    let mut total = whole.checked_mul(ns).ok_or_else(overflow)?;
    // Each fraction digit is worth a tenth of the one before; a digit worth less than
    // 1 ns must be zero.
    let mut place = ns;
    for c in fraction.chars().filter(|&c| c != '_') {
        let digit = c
            .to_digit(10)
            .ok_or_else(|| NumberError::NotANumber(text.into()))?;
        if place % 10 != 0 {
            if digit != 0 {
                return Err(NumberError::TooPrecise(text.into()));
            }
            continue;
        }
        place /= 10;
        total = total
            .checked_add(u64::from(digit) * place)
            .ok_or_else(overflow)?;
    }
    Ok(total)
}

/// Formats nanoseconds the way a manifest would write them (`"100us"`, `"2500ns"`).
pub fn human_duration(ns: u64) -> String {
    match ns {
        0 => "0ns".into(),
        n if n % 1_000_000_000 == 0 => format!("{}s", n / 1_000_000_000),
        n if n % 1_000_000 == 0 => format!("{}ms", n / 1_000_000),
        n if n % 1_000 == 0 => format!("{}us", n / 1_000),
        n => format!("{n}ns"),
    }
}

/// Checks that a number is a valid port.
pub fn port(value: u64) -> Result<u16, NumberError> {
    u16::try_from(value).map_err(|_| NumberError::PortTooLarge(value))
}

/// Parses `"0x2f8-0x2ff"` (inclusive) or a single port `"0x60"`; decimal is fine too.
pub fn parse_port_range(text: &str) -> Result<(u16, u16), NumberError> {
    let (first, last) = match text.split_once('-') {
        Some((a, b)) => (port(parse_uint(a)?)?, port(parse_uint(b)?)?),
        None => {
            let p = port(parse_uint(text)?)?;
            (p, p)
        }
    };
    if last < first {
        return Err(NumberError::Reversed { first, last });
    }
    Ok((first, last))
}

/// Formats a byte count the way people write it in a manifest (`64 MiB`, `4 KiB`, `100 B`).
pub fn human(bytes: u64) -> String {
    for &(name, m) in UNITS.iter().rev() {
        if m > 1 && bytes >= m && bytes % m == 0 {
            return format!("{} {name}", bytes / m);
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Each `(text, what parse makes of it)`.
    fn parses<T: PartialEq + std::fmt::Debug>(
        parse: fn(&str) -> Result<T, NumberError>,
        cases: &[(&str, Result<T, NumberError>)],
    ) {
        for (text, want) in cases {
            assert_eq!(&parse(text), want, "{text:?}");
        }
    }

    #[test]
    fn durations() {
        use NumberError::*;
        parses(
            parse_duration,
            &[
                ("500ns", Ok(500)),
                ("100us", Ok(100_000)),
                ("100 \u{b5}s", Ok(100_000)),
                ("2.5ms", Ok(2_500_000)),
                (".5us", Ok(500)),
                ("1s", Ok(1_000_000_000)),
                ("1.000000001s", Ok(1_000_000_001)),
                ("1.50ns", Err(TooPrecise("1.50ns".into()))),
                ("1.0ns", Ok(1)),
                ("100", Err(NoTimeUnit)),
                ("100 min", Err(UnknownTimeUnit("min".into()))),
                ("1.2.3us", Err(NotANumber("1.2.3us".into()))),
                ("us", Err(NotANumber("us".into()))),
                (
                    "99999999999999999999s",
                    Err(Overflow("99999999999999999999".into())),
                ),
                (
                    "18446744073.709551616s",
                    Err(Overflow("18446744073.709551616s".into())),
                ),
            ],
        );
    }

    proptest! {
        #[test]
        fn durations_round_trip(ns in 0u64..u64::MAX / 2) {
            prop_assert_eq!(parse_duration(&human_duration(ns)), Ok(ns));
        }

        #[test]
        fn durations_never_panic(s in ".{0,24}") {
            let _ = parse_duration(&s);
        }
    }

    #[test]
    fn sizes_with_units() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2 TiB"), Ok(2 << 40));
        assert_eq!(parse_size("12B"), Ok(12));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1_024"), Ok(1024));
        assert_eq!(parse_size("0x1000"), Ok(4096));
        assert_eq!(parse_size("0X20_0000"), Ok(2 << 20));
    }

    #[test]
    fn bad_sizes_say_why() {
        use NumberError::*;
        // A unit is what follows the number; a close one is suggested.
        let unit = |unit: &str, suggestion| UnknownUnit {
            unit: unit.into(),
            suggestion,
        };
        parses(
            parse_size,
            &[
                ("", Err(Empty)),
                ("MiB", Err(NotANumber("MiB".into()))),
                ("0x10MiB", Err(HexWithUnit)),
                ("64MB", Err(unit("MB", Some("MiB")))),
                ("64mib", Err(unit("mib", Some("MiB")))),
                ("64 parsecs", Err(unit("parsecs", None))),
                ("1.5GiB", Err(unit(".5GiB", None))),
                ("0xzz", Err(NotANumber("0xzz".into()))),
            ],
        );
    }

    #[test]
    fn overflow_is_an_error() {
        fn overflow(text: &str) -> (&str, Result<u64, NumberError>) {
            (text, Err(NumberError::Overflow(text.into())))
        }
        parses(
            parse_size,
            &[
                overflow("99999999999GiB"),
                overflow("99999999999999999999999"),
                overflow("0x1_0000_0000_0000_0000"),
                ("16777215TiB", Ok(16_777_215 << 40)),
                overflow("16777216TiB"),
            ],
        );
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("0x2f8-0x2ff"), Ok((0x2f8, 0x2ff)));
        assert_eq!(parse_port_range("0x60"), Ok((0x60, 0x60)));
        assert_eq!(parse_port_range("96 - 100"), Ok((96, 100)));
        assert_eq!(parse_port_range("0xffff"), Ok((0xffff, 0xffff)));
        assert_eq!(
            parse_port_range("0x10000"),
            Err(NumberError::PortTooLarge(0x10000))
        );
        assert_eq!(
            parse_port_range("0x2ff-0x2f8"),
            Err(NumberError::Reversed {
                first: 0x2ff,
                last: 0x2f8
            })
        );
        assert!(parse_port_range("0x60-").is_err());
        assert!(parse_port_range("-").is_err());
        assert!(parse_port_range("com1").is_err());
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(64 << 20), "64 MiB");
        assert_eq!(human(4096), "4 KiB");
        assert_eq!(human(4097), "4097 B");
        assert_eq!(human(3 << 30), "3 GiB");
        assert_eq!(human(0), "0 B");
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse_size(&s);
            let _ = parse_port_range(&s);
            let _ = parse_uint(&s);
        }

        #[test]
        fn units_round_trip(n in 0u64..(1 << 20), unit in 0usize..UNITS.len()) {
            let (name, m) = UNITS[unit];
            prop_assert_eq!(parse_size(&format!("{n}{name}")), Ok(n * m));
            prop_assert_eq!(parse_size(&format!("{:#x}", n * m)), Ok(n * m));
        }

        #[test]
        fn human_round_trips(n in any::<u64>()) {
            let text = human(n).replace(' ', "");
            prop_assert_eq!(parse_size(&text), Ok(n));
        }
    }
}
