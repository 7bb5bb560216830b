//! Round-trip, invariant and robustness tests for the table format.

extern crate std;

use crate::layout::*;
use crate::testing::Sample;
use crate::*;
use proptest::prelude::*;
use std::vec;
use std::vec::Vec;

fn sample() -> Sample {
    Sample::new()
}

fn encode_sample(s: &Sample) -> Vec<u8> {
    s.encode()
}

/// Re-encodes after `edit` so the checksum is right and only the edited invariant fails.
fn with_edit(edit: impl FnOnce(&mut Sample)) -> Result<(), AbiError> {
    let mut s = sample();
    edit(&mut s);
    validate(&encode_sample(&s)).map(|_| ())
}

#[test]
fn sample_round_trips() {
    let s = sample();
    let bytes = encode_sample(&s);
    let t = validate(&bytes).expect("valid");
    assert_eq!(t.sandboxes.len(), 2);
    assert_eq!(name_str(&t.sandboxes[1].name), Some("b"));
    assert_eq!(t.sandbox_regions(0).len(), 4);
    assert_eq!(t.sandbox_devices(1)[0].first.get(), 0x2f8);
    assert_eq!(t.channels[0].data_size.get(), 64 * 1024);
    assert_eq!(t.payload_area_offset() % PAYLOAD_ALIGN, 0);
    assert_eq!(encode_sample(&s), bytes, "encoding is deterministic");
}

#[test]
fn header_damage_is_detected() {
    let bytes = encode_sample(&sample());
    assert_eq!(validate(&bytes[..10]).unwrap_err(), AbiError::Truncated);
    assert_eq!(
        validate(&bytes[..bytes.len() - 1]).unwrap_err(),
        AbiError::Truncated
    );
    let mut b = bytes.clone();
    b[0] ^= 1;
    assert_eq!(validate(&b).unwrap_err(), AbiError::BadMagic);
    let mut b = bytes.clone();
    b[8] = 9;
    assert_eq!(validate(&b).unwrap_err(), AbiError::BadVersion(9));
    let mut b = bytes.clone();
    let last = b.len() - 1;
    b[last] ^= 0x40;
    assert!(matches!(
        validate(&b).unwrap_err(),
        AbiError::BadChecksum { .. }
    ));
}

/// A change to the sample table.
type Edit = fn(&mut Sample);

#[test]
fn invariants_are_enforced() {
    use crate::validate::Array::{Sandboxes, Vcpus};
    use AbiError::*;
    // Each edit breaks one invariant of the sample; validation names it.
    let cases: [(Edit, AbiError); 19] = [
        (|s| s.vcpus[1].core = 1.into(), CoreUsedTwice(1)),
        (|s| s.vcpus[1].core = 4.into(), CoreOutOfRange(1)),
        (|s| s.vcpus[0].rip = (8u64 << 20).into(), VcpuState(0)),
        (|s| s.vcpus[0].sandbox = 1.into(), WrongOwner(Vcpus, 0)),
        (
            |s| s.sandboxes[1].name = name_field("a").unwrap(),
            DuplicateName(Sandboxes, 1),
        ),
        (|s| s.sandboxes[0].runtime = 7.into(), BadEnum(Sandboxes, 0)),
        (|s| s.sandboxes[0].ram_size = (3u64 << 20).into(), Ram(0)),
        (
            |s| s.regions[1].gpa = (DIRECTORY_GPA + 1).into(),
            RegionShape(1),
        ),
        (
            |s| s.regions[2].access = (ACCESS_READ).into(),
            RegionAccess(2),
        ),
        (
            |s| s.regions[6].access = (ACCESS_READ | ACCESS_WRITE).into(),
            RegionAccess(6),
        ),
        (|s| s.regions[3].gpa = s.regions[2].gpa, RegionOverlap(3)),
        (|s| s.channels[0].reader = 0.into(), ChannelShape(0)),
        (
            |s| {
                s.devices[0].first = 0x3f0.into();
                s.devices[0].last = 0x3fa.into();
            },
            DeviceConflict(0),
        ),
        (|s| s.devices[0].last = 0x10000.into(), DevicePorts(0)),
        (|s| s.payloads[1].offset = 8150.into(), Payload(1)),
        (|s| s.payloads[0].gpa = (8u64 << 20).into(), Payload(0)),
        (
            |s| s.sandboxes[0].vcpus = IndexRange::new(0, 3),
            BadRange(Vcpus, 1),
        ),
        (
            |s| s.sandboxes[0].boot_info_gpa = (9u64 << 20).into(),
            SandboxAddress(0),
        ),
        (
            |s| s.channels = vec![s.channels[0]; MAX_CHANNELS + 1],
            ChannelCount,
        ),
    ];
    for (i, (edit, want)) in cases.into_iter().enumerate() {
        assert_eq!(with_edit(edit), Err(want), "case {i}");
    }
}

#[test]
fn messages_name_the_entry() {
    let e = with_edit(|s| s.vcpus[1].core = 1.into()).unwrap_err();
    assert_eq!(
        std::format!("{e}"),
        "vcpu 1 runs on a core another vcpu already uses"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary bytes never panic the validator.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = validate(&bytes);
    }

    /// Any single-byte change of a valid table, with the checksum repaired so the change
    /// reaches the structural checks, is either rejected or still decodes consistently.
    #[test]
    fn mutated_tables_never_panic(pos in any::<prop::sample::Index>(), val in any::<u8>()) {
        let mut bytes = encode_sample(&sample());
        let i = pos.index(bytes.len());
        bytes[i] = val;
        let crc = crate::validate::checksum(&bytes);
        bytes[20..24].copy_from_slice(&crc.to_le_bytes());
        if let Ok(t) = validate(&bytes) {
            for s in 0..t.sandboxes.len() {
                let _ = (t.sandbox_vcpus(s), t.sandbox_regions(s), t.sandbox_devices(s), t.sandbox_payloads(s));
            }
        }
    }

    /// Encoding then validating gives back exactly the entries that went in.
    #[test]
    fn encode_validate_round_trip(cores in 3u32..=MAX_CORES, ram_mib in 2u64..512, hash in any::<[u8; 32]>()) {
        let mut s = sample();
        let ram = (ram_mib & !1).max(2) << 20;
        for sb in &mut s.sandboxes { sb.ram_size = ram.into(); }
        for r in &mut s.regions { if r.kind.get() == RegionKind::Ram as u32 { r.size = ram.into(); } }
        for (i, v) in s.vcpus.iter_mut().enumerate() { v.rsp = ram.into(); v.core = (cores - 1 - i as u32).into(); v.rip = 0x1000.into(); }
        for p in &mut s.payloads { p.sha256 = hash; p.gpa = 0x1000.into(); }
        let parts = TableParts {
            system_name: name_field("prop").unwrap(), system_cores: cores, console_port: 0x3f8,
            system_memory: 1 << 30, monitor_reserve: 32 << 20, payload_area_size: 8192,
            sandboxes: &s.sandboxes, vcpus: &s.vcpus, regions: &s.regions, channels: &s.channels,
            devices: &s.devices, payloads: &s.payloads,
        };
        let mut buf = vec![0u8; encoded_len(&parts).unwrap()];
        encode(&parts, &mut buf).unwrap();
        let t = validate(&buf).unwrap();
        prop_assert_eq!(t.header.system_cores.get(), cores);
        prop_assert_eq!(t.sandboxes[1].ram_size.get(), ram);
        prop_assert_eq!(t.payloads[0].sha256, hash);
        prop_assert_eq!(zerocopy::IntoBytes::as_bytes(t.vcpus), zerocopy::IntoBytes::as_bytes(&s.vcpus[..]));
    }
}

#[test]
fn table_enums_decode_exactly_their_values() {
    for v in 0..8u32 {
        assert_eq!(Runtime::from_u32(v).map(|r| r as u32), (v < 2).then_some(v));
        assert_eq!(OnFault::from_u32(v).map(|o| o as u32), (v < 3).then_some(v));
        assert_eq!(
            RegionKind::from_u32(v).map(|k| k as u32),
            (v < 4).then_some(v)
        );
        assert_eq!(
            DeviceKind::from_u32(v).map(|k| k as u32),
            (v < 2).then_some(v)
        );
    }
    assert_eq!(
        OnFault::from_u32(2),
        Some(OnFault::HaltSystem),
        "the values are ABI"
    );
    assert_eq!(RegionKind::from_u32(3), Some(RegionKind::Directory));
}

/// A PCI device entry of sandbox `sandbox` (by `address` when `Some`, else by ID).
fn pci_entry(sandbox: u32, address: Option<u16>, id: u32, index: u32, flags: u32) -> DeviceEntry {
    let mut e = <DeviceEntry as zerocopy::FromZeros>::new_zeroed();
    e.sandbox = sandbox.into();
    e.kind = (DeviceKind::Pci as u32).into();
    e.irq = NO_INDEX.into();
    e.flags = flags.into();
    e.pci_address = address.map_or(NO_INDEX, u32::from).into();
    e.pci_id = id.into();
    e.pci_index = index.into();
    e
}

/// The sample with `devices` as sandbox 1's devices (sandbox 0 has none).
fn with_devices(devices: Vec<DeviceEntry>) -> Result<(), AbiError> {
    with_edit(move |s| {
        s.sandboxes[1].devices = IndexRange::new(0, devices.len() as u32);
        s.devices = devices;
    })
}

#[test]
fn pci_devices_round_trip_through_the_view() {
    let devices = vec![
        pci_entry(1, Some(0x0018), 0, 0, 0),
        pci_entry(
            1,
            None,
            0x1234_11e8,
            1,
            DEVICE_DMA_UNPROTECTED | DEVICE_START_WITHOUT,
        ),
        sample().devices[0],
    ];
    let mut s = sample();
    s.sandboxes[1].devices = IndexRange::new(0, 3);
    s.devices = devices;
    let bytes = encode_sample(&s);
    let t = crate::TableView::validate(&bytes).unwrap();
    let b = t.sandbox(SandboxId::new(1)).unwrap();
    let d: Vec<_> = b.devices().collect();
    assert_eq!(
        d[0].pci(),
        Some(PciSelector::Address(PciAddress::new(0, 3, 0).unwrap()))
    );
    assert_eq!(std::format!("{}", d[0].pci().unwrap()), "00:03.0");
    assert!(!d[0].dma_unprotected() && !d[0].start_without());
    let id = PciId {
        vendor: 0x1234,
        device: 0x11e8,
    };
    assert_eq!(d[1].pci(), Some(PciSelector::Id { id, index: 1 }));
    assert_eq!(std::format!("{}", d[1].pci().unwrap()), "1234:11e8#1");
    assert!(d[1].dma_unprotected() && d[1].start_without());
    assert_eq!(
        (d[2].pci(), d[2].irq(), d[2].ports()),
        (None, Some(3), 0x2f8..=0x2ff)
    );
}

#[test]
fn device_fields_are_checked() {
    use AbiError::*;
    let ports = sample().devices[0];
    let with_irq = |irq: u32| {
        let mut d = ports;
        d.irq = irq.into();
        d
    };
    let cases: Vec<(Vec<DeviceEntry>, AbiError)> = vec![
        // IRQ lines: beyond the PIC, the cascade, the console's (COM1: 4), shared.
        (vec![with_irq(16)], DeviceFields(0)),
        (vec![with_irq(CASCADE_IRQ)], DeviceFields(0)),
        (vec![with_irq(4)], DeviceConflict(0)),
        (
            vec![with_irq(5), {
                let mut d = with_irq(5);
                d.first = 0x60.into();
                d.last = 0x60.into();
                d
            }],
            DeviceConflict(1),
        ),
        // The PCI configuration ports are the monitor's.
        (
            vec![{
                let mut d = ports;
                d.first = 0xcfc.into();
                d.last = 0xcfc.into();
                d
            }],
            DeviceConflict(0),
        ),
        // Flags on ports, PCI fields on ports.
        (
            vec![{
                let mut d = ports;
                d.flags = DEVICE_START_WITHOUT.into();
                d
            }],
            DeviceFields(0),
        ),
        // PCI: an address beyond 16 bits, an address with an ID, vendor 0xffff, an IRQ,
        // unknown flags, the same function twice.
        (vec![pci_entry(1, None, 0, 0, 0)], DeviceFields(0)),
        (
            vec![pci_entry(1, Some(0x18), 0x1234_0001, 0, 0)],
            DeviceFields(0),
        ),
        (vec![pci_entry(1, None, 0xffff_0001, 0, 0)], DeviceFields(0)),
        (vec![pci_entry(1, Some(0x18), 0, 0, 4)], DeviceFields(0)),
        (
            vec![{
                let mut d = pci_entry(1, Some(0x18), 0, 0, 0);
                d.irq = 5.into();
                d
            }],
            DeviceFields(0),
        ),
        (
            vec![
                pci_entry(1, Some(0x18), 0, 0, 0),
                pci_entry(1, Some(0x18), 0, 0, 0),
            ],
            DeviceConflict(1),
        ),
    ];
    for (i, (devices, want)) in cases.into_iter().enumerate() {
        assert_eq!(with_devices(devices), Err(want), "case {i}");
    }
    // An address entry beyond 16 bits.
    let mut d = pci_entry(1, Some(0), 0, 0, 0);
    d.pci_address = 0x1_0000.into();
    assert_eq!(with_devices(vec![d]), Err(DeviceFields(0)));
    // Good ones: a PCI function by ID twice with different indices, ports with IRQ 3.
    assert_eq!(
        with_devices(vec![
            pci_entry(1, None, 0x1234_11e8, 0, 0),
            pci_entry(1, None, 0x1234_11e8, 1, 0),
            with_irq(3),
        ]),
        Ok(())
    );
}

#[test]
fn pci_addresses_and_ids_encode_as_the_hardware_does() {
    let a = PciAddress::new(0x12, 31, 7).unwrap();
    assert_eq!(a.to_u16(), 0x12ff);
    assert_eq!(PciAddress::from_u16(0x12ff), a);
    assert_eq!(std::format!("{a}"), "12:1f.7");
    assert!(PciAddress::new(0, 32, 0).is_none() && PciAddress::new(0, 0, 8).is_none());
    assert_eq!(PciId::from_u32(0x8086_1237).to_u32(), 0x8086_1237);
    assert_eq!(
        (
            console_irq(0x3f8),
            console_irq(0x2f8),
            console_irq(0x3e8),
            console_irq(0x2e8)
        ),
        (4, 3, 4, 3)
    );
}
