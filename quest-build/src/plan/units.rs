//! How the plan's numbers are written for people: sizes in binary units, guest
//! addresses in grouped hex, access bits as `rwx`.

use quest_abi::{ACCESS_EXEC, ACCESS_READ, ACCESS_WRITE};

/// `64 MiB`, `4 KiB`, `1 GiB`, or `65472 B` when no unit divides it exactly.
pub fn size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes >= unit && bytes % unit == 0 {
            return format!("{} {name}", bytes / unit);
        }
    }
    format!("{bytes} B")
}

/// A guest-physical address as 12 hex digits in groups of four: `0x0040_0000_2000`
/// (wide enough for every address in the 39-bit guest space, so columns line up).
pub fn addr(gpa: u64) -> String {
    let digits = format!("{gpa:012x}");
    let mut out = String::from("0x");
    let lead = digits.len() % 4;
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (i + 4 - lead) % 4 == 0 {
            out.push('_');
        }
        out.push(c);
    }
    out
}

/// `rwx`-style access string.
pub fn access(bits: u32) -> String {
    let bit = |b: u32, c: char| if bits & b != 0 { c } else { '-' };
    [
        bit(ACCESS_READ, 'r'),
        bit(ACCESS_WRITE, 'w'),
        bit(ACCESS_EXEC, 'x'),
    ]
    .into_iter()
    .collect()
}

/// The manifest name of a console port (`com1`), or its hex value if it is no COM port.
pub fn console(port: u16) -> String {
    quest_abi::CONSOLE_PORTS
        .iter()
        .find(|(_, p)| *p == port)
        .map_or_else(|| format!("{port:#x}"), |(name, _)| (*name).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_the_largest_exact_unit() {
        assert_eq!(size(64 << 20), "64 MiB");
        assert_eq!(size(4096), "4 KiB");
        assert_eq!(size(3 << 30), "3 GiB");
        assert_eq!(size(1536 << 10), "1536 KiB");
        assert_eq!(size(65472), "65472 B");
        assert_eq!(size(0), "0 B");
    }

    #[test]
    fn addresses_are_grouped_and_fixed_width() {
        assert_eq!(addr(0), "0x0000_0000_0000");
        assert_eq!(addr(0x40_0000_2000), "0x0040_0000_2000");
        assert_eq!(addr(0x9034), "0x0000_0000_9034");
        assert_eq!(addr(u64::MAX), "0xffff_ffff_ffff_ffff");
        assert_eq!(addr(0x1_0000_0000_0000), "0x1_0000_0000_0000");
    }

    #[test]
    fn access_and_console_names() {
        assert_eq!(access(ACCESS_READ | ACCESS_WRITE | ACCESS_EXEC), "rwx");
        assert_eq!(access(ACCESS_READ), "r--");
        assert_eq!(access(ACCESS_READ | ACCESS_WRITE), "rw-");
        assert_eq!(console(0x3f8), "com1");
        assert_eq!(console(0x2e8), "com4");
        assert_eq!(console(0x100), "0x100");
    }
}
