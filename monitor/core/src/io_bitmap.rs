//! The I/O bitmaps of one sandbox (Intel SDM Vol. 3, 25.6.4 "I/O-Bitmap Addresses"):
//! bitmap A covers ports 0-0x7fff, bitmap B 0x8000-0xffff, one bit per port, a set bit
//! makes the access exit. Only the ports of the sandbox's own devices are clear.

use quest_abi::{DeviceEntry, DeviceKind};

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
