//! The one sample partition table for tests (feature `testing`; dev-dependencies enable
//! it): sandbox `a` (2 vCPUs on cores 1 and 2) writes channel `a-to-b` to sandbox `b`
//! (1 vCPU on core 3), which owns ports 0x2f8-0x2ff. Each sandbox has 8 MiB of RAM, a
//! directory and one 100-byte payload. [`Sample`] holds the entries so a test can edit
//! one invariant and re-encode ([`Sample::encode`] repairs the checksum).

extern crate std;

use crate::layout::*;
use crate::*;
use std::vec;
use std::vec::Vec;
use zerocopy::FromZeros;

/// One MiB.
pub const MIB: u64 = 1 << 20;
/// Size of the sample channel's data area.
pub const DATA_SIZE: u64 = 64 * 1024;
/// Size of the sample's payload area (one page per payload).
pub const PAYLOAD_AREA_SIZE: u64 = 8192;

/// The sample's entries, editable before [`Sample::encode`].
#[derive(Clone, Debug)]
pub struct Sample {
    /// Logical cores of the system.
    pub system_cores: u32,
    /// Sandboxes `a` and `b`.
    pub sandboxes: Vec<SandboxEntry>,
    /// `a`'s two vCPUs, then `b`'s.
    pub vcpus: Vec<VcpuEntry>,
    /// Per sandbox: RAM, directory, channel data, channel ack.
    pub regions: Vec<RegionEntry>,
    /// `a-to-b`.
    pub channels: Vec<ChannelEntry>,
    /// `b`'s ports 0x2f8-0x2ff.
    pub devices: Vec<DeviceEntry>,
    /// One 100-byte payload per sandbox at [`BARE_IMAGE_GPA`], offsets 0 and 4096.
    pub payloads: Vec<PayloadEntry>,
}

fn region(
    sandbox: u32,
    kind: RegionKind,
    gpa: u64,
    size: u64,
    access: u32,
    ch: u32,
) -> RegionEntry {
    RegionEntry {
        sandbox: sandbox.into(),
        kind: (kind as u32).into(),
        gpa: gpa.into(),
        size: size.into(),
        access: access.into(),
        channel: ch.into(),
    }
}

impl Sample {
    /// The valid two-sandbox system described in the module documentation.
    pub fn new() -> Self {
        let rw = ACCESS_READ | ACCESS_WRITE;
        let rwx = rw | ACCESS_EXEC;
        let chan_gpa = DIRECTORY_GPA + DIRECTORY_SIZE;
        let mut sandboxes = Vec::new();
        for (i, name) in ["a", "b"].iter().enumerate() {
            let mut s = SandboxEntry::new_zeroed();
            s.name = name_field(name).unwrap();
            s.runtime = (Runtime::Bare as u32).into();
            s.on_fault = (OnFault::HaltSandbox as u32).into();
            s.regions = IndexRange::new(4 * i as u32, 4);
            s.devices = IndexRange::new(0, i as u32);
            s.payloads = IndexRange::new(i as u32, 1);
            s.ram_size = (8 * MIB).into();
            s.boot_info_gpa = BOOT_INFO_GPA.into();
            s.page_table_gpa = PAGE_TABLES_GPA.into();
            s.directory_gpa = DIRECTORY_GPA.into();
            s.patch_tsc_khz_gpa = (BOOT_INFO_GPA + bootinfo::TSC_KHZ_OFFSET).into();
            sandboxes.push(s);
        }
        sandboxes[0].vcpus = IndexRange::new(0, 2);
        sandboxes[1].vcpus = IndexRange::new(2, 1);
        let vcpu = |sandbox: u32, index: u32, core: u32| VcpuEntry {
            sandbox: sandbox.into(),
            index: index.into(),
            core: core.into(),
            standby_core: NO_INDEX.into(),
            rip: BARE_IMAGE_GPA.into(),
            rsp: (8 * MIB - u64::from(index) * BARE_STACK_SIZE).into(),
            rdi: BOOT_INFO_GPA.into(),
            rsi: u64::from(index).into(),
        };
        let vcpus = vec![vcpu(0, 0, 1), vcpu(0, 1, 2), vcpu(1, 0, 3)];
        let dir = |s| {
            region(
                s,
                RegionKind::Directory,
                DIRECTORY_GPA,
                DIRECTORY_SIZE,
                ACCESS_READ,
                NO_INDEX,
            )
        };
        let ack_gpa = chan_gpa + DATA_SIZE;
        let regions = vec![
            region(0, RegionKind::Ram, 0, 8 * MIB, rwx, NO_INDEX),
            dir(0),
            region(0, RegionKind::ChannelData, chan_gpa, DATA_SIZE, rw, 0),
            region(
                0,
                RegionKind::ChannelAck,
                ack_gpa,
                CHANNEL_ACK_SIZE,
                ACCESS_READ,
                0,
            ),
            region(1, RegionKind::Ram, 0, 8 * MIB, rwx, NO_INDEX),
            dir(1),
            region(
                1,
                RegionKind::ChannelData,
                chan_gpa,
                DATA_SIZE,
                ACCESS_READ,
                0,
            ),
            region(1, RegionKind::ChannelAck, ack_gpa, CHANNEL_ACK_SIZE, rw, 0),
        ];
        let mut channel = ChannelEntry::new_zeroed();
        channel.name = name_field("a-to-b").unwrap();
        channel.writer = 0.into();
        channel.reader = 1.into();
        channel.data_size = DATA_SIZE.into();
        channel.ack_size = CHANNEL_ACK_SIZE.into();
        channel.writer_gpa = chan_gpa.into();
        channel.reader_gpa = chan_gpa.into();
        let devices = vec![DeviceEntry {
            sandbox: 1.into(),
            kind: (DeviceKind::IoPorts as u32).into(),
            first: 0x2f8.into(),
            last: 0x2ff.into(),
            irq: 3.into(),
            flags: 0.into(),
            pci_address: NO_INDEX.into(),
            pci_id: 0.into(),
            pci_index: 0.into(),
            reserved: 0.into(),
        }];
        let payloads = (0..2u32)
            .map(|i| PayloadEntry {
                sandbox: i.into(),
                reserved: 0.into(),
                gpa: BARE_IMAGE_GPA.into(),
                offset: (u64::from(i) * 4096).into(),
                size: 100.into(),
                sha256: [i as u8; 32],
            })
            .collect();
        Self {
            system_cores: 4,
            sandboxes,
            vcpus,
            regions,
            channels: vec![channel],
            devices,
            payloads,
        }
    }

    /// Encodes the entries (system `sample`, 256 MiB, console COM1) with a correct
    /// checksum. Panics only if an edit made the table unencodable (too large).
    pub fn encode(&self) -> Vec<u8> {
        let parts = TableParts {
            system_name: name_field("sample").unwrap(),
            system_cores: self.system_cores,
            console_port: 0x3f8,
            system_memory: 256 * MIB,
            monitor_reserve: 32 * MIB,
            payload_area_size: PAYLOAD_AREA_SIZE,
            sandboxes: &self.sandboxes,
            vcpus: &self.vcpus,
            regions: &self.regions,
            channels: &self.channels,
            devices: &self.devices,
            payloads: &self.payloads,
        };
        let mut buf = vec![0u8; encoded_len(&parts).unwrap()];
        let n = encode(&parts, &mut buf).unwrap();
        assert_eq!(n, buf.len(), "encode fills exactly encoded_len bytes");
        buf
    }
}

impl Default for Sample {
    fn default() -> Self {
        Self::new()
    }
}

/// The encoded sample table (valid).
pub fn sample_table() -> Vec<u8> {
    Sample::new().encode()
}
