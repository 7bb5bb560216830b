//! PCI configuration space as a driver in a sandbox and the monitor's virtual
//! configuration space both see it (PCI Local Bus Specification 3.0): configuration
//! mechanism #1's address (3.2.2.3.2), the type 0 header's registers (6.1), base
//! address registers (6.2.5) and capabilities (6.7). A `bare` sandbox reaches it through
//! `quest_rt::pci`, the monitor through `quest_monitor_core::pci`.

use crate::{PciAddress, PciId};

/// Vendor ID (16 bits) and device ID (16 bits).
pub const ID: u8 = 0x00;
/// Command (16 bits) and status (16 bits).
pub const COMMAND: u8 = 0x04;
/// Revision (8 bits) and class code (24 bits).
pub const CLASS: u8 = 0x08;
/// Cache line size, latency timer, header type (bits 23:16), BIST.
pub const HEADER: u8 = 0x0c;
/// The first base address register; type 0 headers have six, 4 bytes apart.
pub const BAR0: u8 = 0x10;
/// The expansion ROM base address (type 0 header).
pub const ROM: u8 = 0x30;
/// Capabilities pointer (8 bits).
pub const CAPABILITIES: u8 = 0x34;
/// Interrupt Line (byte 0), Interrupt Pin (byte 1, 1 = INTA), Min_Gnt, Max_Lat.
pub const INTERRUPT: u8 = 0x3c;
/// Command: I/O space decode.
pub const COMMAND_IO: u16 = 1 << 0;
/// Command: memory space decode.
pub const COMMAND_MEMORY: u16 = 1 << 1;
/// Command: bus master (the function may start DMA).
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
/// Command: INTx emulation disable.
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
/// The status register's "capabilities list" bit (in the [`COMMAND`] dword's upper half).
pub const STATUS_CAPABILITIES: u32 = 1 << (16 + 4);
/// Header type bit 7: a multi-function device.
pub const MULTI_FUNCTION: u8 = 0x80;
/// Capability ID of MSI.
pub const CAP_MSI: u8 = 0x05;

impl PciAddress {
    /// What a driver writes to port 0xCF8 (mechanism #1) to reach the dword of register
    /// `offset`: bit 31 enable, bits 23:8 [`PciAddress::to_u16`], bits 7:2 the dword
    /// (`offset & 0xfc`).
    pub fn config_address(self, offset: u8) -> u32 {
        1 << 31 | u32::from(self.to_u16()) << 8 | u32::from(offset & 0xfc)
    }
}

impl PciId {
    /// The ID register ([`ID`]) as it reads: device ID in the high half, vendor in the
    /// low; `None` where no function answers (vendor 0xffff).
    pub fn from_register(v: u32) -> Option<Self> {
        let id = Self {
            vendor: v as u16,
            device: (v >> 16) as u16,
        };
        (id.vendor != 0xffff).then_some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_address_and_id_register_decode() {
        let f = PciAddress::new(0x12, 0x1f, 7).unwrap();
        // Enable bit, bus 0x12, device 31, function 7, dword 0x3c (offset rounded down).
        assert_eq!(f.config_address(0x3e), 0x8012_ff3c);
        assert_eq!(
            PciAddress::new(0, 0, 0).unwrap().config_address(4),
            0x8000_0004
        );
        assert_eq!(
            PciId::from_register(0x11e8_1234),
            Some(PciId {
                vendor: 0x1234,
                device: 0x11e8
            })
        );
        assert_eq!(PciId::from_register(0xffff_ffff), None);
        assert_eq!(PciId::from_register(0x0000_ffff), None);
    }
}
