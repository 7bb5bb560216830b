//! The manifest's spelling of a PCI function (`pci = "00:03.0"` or `pci = "1234:11e8"`):
//! pure, checked, never panicking. The spellings are `lspci`'s (`lspci` and `lspci -n`).

use quest_abi::{PciAddress, PciId, PciSelector};
use thiserror::Error;

/// Why a `pci` value was rejected. The doc line of each variant is its message.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PciError {
    /// Neither `bb:dd.f` nor `vvvv:dddd`.
    #[error("`{0}` is neither a PCI address (`00:03.0`) nor a vendor:device ID (`1234:11e8`)")]
    Form(String),
    /// A part is not hexadecimal or too long.
    #[error("`{part}` is not a {what} (hexadecimal, at most {digits} digits)")]
    Part {
        /// The part as written.
        part: String,
        /// Which part: bus, device, function, vendor ID, device ID.
        what: &'static str,
        /// Its most hexadecimal digits.
        digits: usize,
    },
    /// A device number above 0x1f or a function above 7.
    #[error("{what} {value:#x} is above {max:#x}")]
    Range {
        /// Device or function.
        what: &'static str,
        /// The value.
        value: u32,
        /// Its largest value.
        max: u32,
    },
    /// Vendor ID 0xffff (what an absent function reads as) or 0.
    #[error("vendor ID {0:#06x} names no function")]
    Vendor(u16),
}

impl PciError {
    /// How to fix it.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::Form(_) | Self::Part { .. } => {
                "write the address as `lspci` shows it (`\"00:03.0\"`: bus:device.function) or the ID as `lspci -n` does (`\"1234:11e8\"`: vendor:device), in hexadecimal"
            }
            Self::Range { .. } => "a bus has devices 0x00-0x1f, each with functions 0-7",
            Self::Vendor(_) => "use the function's real vendor ID (`lspci -n`)",
        }
    }
}

fn hex(part: &str, what: &'static str, digits: usize) -> Result<u32, PciError> {
    let bad = || PciError::Part {
        part: part.to_owned(),
        what,
        digits,
    };
    if part.is_empty() || part.len() > digits || !part.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad());
    }
    u32::from_str_radix(part, 16).map_err(|_| bad())
}

/// Parses `bb:dd.f` (an address) or `vvvv:dddd` (an ID, `index` 0; the caller sets it).
/// A PCI segment (`0000:00:03.0`) is accepted when it is 0, the only one Quest scans.
pub fn parse_pci(text: &str) -> Result<PciSelector, PciError> {
    let form = || PciError::Form(text.to_owned());
    let t = text.trim();
    let parts: Vec<&str> = t.split(':').collect();
    match parts[..] {
        [vendor, device] if !device.contains('.') => {
            let vendor = hex(vendor, "vendor ID", 4)? as u16;
            let device = hex(device, "device ID", 4)? as u16;
            if vendor == 0xffff || vendor == 0 {
                return Err(PciError::Vendor(vendor));
            }
            Ok(PciSelector::Id {
                id: PciId { vendor, device },
                index: 0,
            })
        }
        [bus, devfn] | ["0000", bus, devfn] => {
            let (dev, func) = devfn.split_once('.').ok_or_else(form)?;
            let bus = hex(bus, "bus number", 2)? as u8;
            let dev = hex(dev, "device number", 2)?;
            let func = hex(func, "function number", 1)?;
            let range = |what, value, max| PciError::Range { what, value, max };
            if dev > 31 {
                return Err(range("device", dev, 31));
            }
            if func > 7 {
                return Err(range("function", func, 7));
            }
            PciAddress::new(bus, dev as u8, func as u8)
                .map(PciSelector::Address)
                .ok_or_else(form)
        }
        _ => Err(form()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(b: u8, d: u8, f: u8) -> PciSelector {
        PciSelector::Address(PciAddress::new(b, d, f).unwrap())
    }

    #[test]
    fn addresses_and_ids_parse() {
        assert_eq!(parse_pci("00:03.0"), Ok(addr(0, 3, 0)));
        assert_eq!(parse_pci("ff:1f.7"), Ok(addr(0xff, 31, 7)));
        assert_eq!(parse_pci("0000:01:00.1"), Ok(addr(1, 0, 1)));
        assert_eq!(parse_pci(" 0:3.0 "), Ok(addr(0, 3, 0)));
        assert_eq!(
            parse_pci("1234:11E8"),
            Ok(PciSelector::Id {
                id: PciId {
                    vendor: 0x1234,
                    device: 0x11e8
                },
                index: 0
            })
        );
    }

    #[test]
    fn malformed_values_say_why() {
        let err = |s: &str| parse_pci(s).unwrap_err().to_string();
        assert_eq!(err("00:20.0"), "device 0x20 is above 0x1f");
        assert_eq!(err("00:03.8"), "function 0x8 is above 0x7");
        assert_eq!(
            err("100:03.0"),
            "`100` is not a bus number (hexadecimal, at most 2 digits)"
        );
        assert_eq!(
            err("12345:1"),
            "`12345` is not a vendor ID (hexadecimal, at most 4 digits)"
        );
        assert_eq!(err("ffff:1234"), "vendor ID 0xffff names no function");
        assert_eq!(err("0000:1234"), "vendor ID 0x0000 names no function");
        for bad in [
            "",
            "00",
            "00:03",
            "00.03.0",
            "0001:00:03.0",
            "a:b:c:d",
            "g0:00.0",
        ] {
            assert!(parse_pci(bad).is_err(), "{bad:?}");
        }
    }
}
