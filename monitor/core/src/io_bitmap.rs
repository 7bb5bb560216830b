//! The I/O bitmaps of one sandbox (Intel SDM Vol. 3, 25.6.4 "I/O-Bitmap Addresses"):
//! bitmap A covers ports 0-0x7fff, bitmap B 0x8000-0xffff, one bit per port, a set bit
//! makes the access exit. Only the ports of the sandbox's own devices (port ranges and
//! its PCI functions' I/O BARs) are clear.

use crate::device_windows::IoWindow;
use quest_abi::{DeviceEntry, DeviceKind, PCI_CONFIG_PORTS};

/// Bytes of both bitmaps together (A then B, 4 KiB each).
pub const IO_BITMAPS_SIZE: usize = 8192;

/// Fills `out` (A followed by B) so that exactly the devices' ports pass through.
pub fn build_io_bitmaps(devices: &[DeviceEntry], out: &mut [u8; IO_BITMAPS_SIZE]) {
    out.fill(0xff);
    for d in devices {
        if DeviceKind::from_u32(d.kind.get()) != Some(DeviceKind::IoPorts) {
            continue;
        }
        let (first, last) = (d.first.get(), d.last.get().min(0xffff));
        for port in first..=last {
            let p = port as usize;
            out[p / 8] &= !(1 << (p % 8));
        }
    }
}

/// Every port a sandbox may reach directly.
#[derive(Clone, Copy, Debug)]
pub struct PortAccess<'a> {
    /// Its devices (port ranges among them).
    pub devices: &'a [DeviceEntry],
    /// Its PCI functions' I/O BARs.
    pub bars: &'a [IoWindow],
    /// The console's first port.
    pub console: u16,
}

impl PortAccess<'_> {
    /// Fills `out` (bitmap A then B) so that exactly these ports pass.
    pub fn fill(&self, out: &mut [u8; IO_BITMAPS_SIZE]) {
        build_io_bitmaps(self.devices, out);
        open_windows(self.bars, self.console, out);
    }
}

/// Clears the bits of the I/O BAR windows `io` (checked by `crate::device_windows`),
/// except, whatever they say, the configuration ports 0xCF8-0xCFF and the console's 8
/// ports from `console`, which always exit.
pub fn open_windows(io: &[IoWindow], console: u16, out: &mut [u8; IO_BITMAPS_SIZE]) {
    let closed = |p: u16| {
        (PCI_CONFIG_PORTS.0..=PCI_CONFIG_PORTS.1).contains(&p)
            || (console..=console.saturating_add(7)).contains(&p)
    };
    for w in io {
        for p in (w.first..=w.last).filter(|&p| !closed(p)) {
            let p = usize::from(p);
            out[p / 8] &= !(1 << (p % 8));
        }
    }
}

/// Whether every port touched by a `size`-byte access at `port` belongs to one of the
/// devices (an access that straddles a device's end exits and is refused).
pub fn access_allowed(devices: &[DeviceEntry], port: u16, size: u8) -> bool {
    let last = u64::from(port) + u64::from(size.max(1)) - 1;
    devices.iter().any(|d| {
        DeviceKind::from_u32(d.kind.get()) == Some(DeviceKind::IoPorts)
            && d.first.get() <= u64::from(port)
            && last <= d.last.get()
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A port-range device of sandbox 0 (also used by the SVM map tests).
    pub(crate) fn dev(first: u64, last: u64) -> DeviceEntry {
        DeviceEntry {
            sandbox: 0.into(),
            kind: 0.into(),
            first: first.into(),
            last: last.into(),
            irq: quest_abi::NO_INDEX.into(),
            flags: 0.into(),
            pci_address: quest_abi::NO_INDEX.into(),
            pci_id: 0.into(),
            pci_index: 0.into(),
            reserved: 0.into(),
        }
    }

    fn exits(bitmaps: &[u8; IO_BITMAPS_SIZE], port: usize) -> bool {
        bitmaps[port / 8] & (1 << (port % 8)) != 0
    }

    #[test]
    fn only_device_ports_pass() {
        let mut b = [0u8; IO_BITMAPS_SIZE];
        build_io_bitmaps(&[dev(0x2f8, 0x2ff), dev(0xfffe, 0xffff)], &mut b);
        assert!(exits(&b, 0x2f7));
        assert!((0x2f8..=0x2ff).all(|p| !exits(&b, p)));
        assert!(exits(&b, 0x300));
        assert!(exits(&b, 0x3f8), "the console is never passed through");
        assert!(exits(&b, 0x880));
        assert!(
            !exits(&b, 0xfffe) && !exits(&b, 0xffff),
            "bitmap B covers high ports"
        );
        assert!(exits(&b, 0x8000));
        let passed = (0..0x10000).filter(|&p| !exits(&b, p)).count();
        assert_eq!(passed, 10);
    }

    #[test]
    fn no_devices_means_every_port_exits() {
        let mut b = [0u8; IO_BITMAPS_SIZE];
        build_io_bitmaps(&[], &mut b);
        assert!(b.iter().all(|&x| x == 0xff));
    }

    #[test]
    fn io_bars_pass_but_never_the_config_or_console_ports() {
        let mut b = [0u8; IO_BITMAPS_SIZE];
        build_io_bitmaps(&[], &mut b);
        let w = |first, last| IoWindow { first, last };
        open_windows(
            &[w(0xc000, 0xc00f), w(0xcf0, 0xcff), w(0x3f8, 0x3ff)],
            0x3f8,
            &mut b,
        );
        assert!((0xc000..=0xc00f).all(|p| !exits(&b, p)));
        assert!(exits(&b, 0xbfff) && exits(&b, 0xc010));
        assert!((0xcf0..0xcf8).all(|p| !exits(&b, p)));
        assert!((0xcf8..=0xcff).all(|p| exits(&b, p)), "config ports exit");
        assert!((0x3f8..=0x3ff).all(|p| exits(&b, p)), "console exits");
        let passed = (0..0x10000).filter(|&p| !exits(&b, p)).count();
        assert_eq!(passed, 24);
    }

    #[test]
    fn straddling_access_is_refused() {
        let d = [dev(0x2f8, 0x2ff)];
        assert!(access_allowed(&d, 0x2f8, 1));
        assert!(access_allowed(&d, 0x2fc, 4));
        assert!(!access_allowed(&d, 0x2fe, 4));
        assert!(!access_allowed(&d, 0x2f7, 2));
        assert!(!access_allowed(&d, 0xffff, 4));
        assert!(!access_allowed(&[], 0x2f8, 1));
    }
}
