//! Planner tests: `plan()` on manifests built in code, and the table it encodes.

use super::testing::{self, arb_manifest, SandboxSpec};
use super::*;
use proptest::prelude::*;
use quest_abi::layout::{BARE_IMAGE_GPA, BOOT_INFO_GPA, DIRECTORY_GPA, HERMIT_KERNEL_GPA};
use quest_abi::{GuestPhysAddr, RegionKind, ACCESS_EXEC, ACCESS_READ, ACCESS_WRITE};

const MIB: u64 = 1 << 20;

#[test]
fn pingpong_plan_has_the_documented_shape() {
    let p = plan(&testing::pingpong());
    assert_eq!(p.system_name, "test");
    assert_eq!((p.system_cores, p.system_memory), (4, 256 * MIB));
    assert_eq!(p.console_port, 0x3f8);
    let [ping, pong] = &p.sandboxes[..] else {
        panic!("two sandboxes expected")
    };
    assert_eq!(ping.runtime, quest_abi::Runtime::Hermit);
    assert_eq!(ping.boot.image_gpa, GuestPhysAddr::new(HERMIT_KERNEL_GPA));
    assert_eq!(pong.boot.image_gpa, GuestPhysAddr::new(BARE_IMAGE_GPA));
    assert_eq!(
        ping.boot.directory_gpa,
        Some(GuestPhysAddr::new(DIRECTORY_GPA))
    );
    assert_eq!(pong.boot.boot_info_gpa, GuestPhysAddr::new(BOOT_INFO_GPA));
    assert_eq!(
        pong.vcpus.iter().map(|v| v.core).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(pong.ports().collect::<Vec<_>>(), [(0x2f8, 0x2ff)]);
    assert_eq!(ping.app_dir, std::path::Path::new("/manifests/apps/ping"));
    assert_eq!(ping.args, ["--fast"]);
    assert_eq!(ping.env, [("MODE".to_string(), "test".to_string())]);

    let rwx = ACCESS_READ | ACCESS_WRITE | ACCESS_EXEC;
    assert_eq!(
        (
            ping.regions[0].kind,
            ping.regions[0].gpa,
            ping.regions[0].size,
            ping.regions[0].access
        ),
        (RegionKind::Ram, GuestPhysAddr::ZERO, 64 * MIB, rwx)
    );
    assert_eq!(ping.regions[1].kind, RegionKind::Directory);
    assert_eq!(
        ping.regions.len(),
        6,
        "RAM, directory, two channels x (data, ack)"
    );

    // Channel 0: ping writes, pong reads; channel 1 the other way.
    let c0 = &p.channels[0];
    assert_eq!((c0.writer, c0.reader), (0, 1));
    assert_eq!(ping.channel_ends[0].role, Role::Writer);
    assert_eq!(pong.channel_ends[0].role, Role::Reader);
    assert_eq!(ping.channel_ends[0].data_gpa, c0.writer_gpa);
    assert_eq!(pong.channel_ends[0].data_gpa, c0.reader_gpa);
    let c1 = &p.channels[1];
    assert_eq!((c1.writer, c1.reader, c1.data_size), (1, 0, 8192));

    // Host memory: low MiB + reserve + 64 + 8 MiB RAM + two channels of 2 MiB each.
    assert_eq!(
        p.host_memory_needed,
        MIB + p.monitor_reserve + 64 * MIB + 8 * MIB + 2 * 2 * MIB
    );
    assert_eq!(p.monitor_reserve, budget::monitor_reserve(2));
}

#[test]
fn the_table_says_what_the_plan_says() {
    let p = plan(&testing::pingpong());
    let enc = encode_table(&p, None).unwrap();
    let t = quest_abi::validate(&enc.table).unwrap();
    assert!(enc.payload_area.is_empty());
    assert_eq!(t.header.payload_area_size.get(), 0);
    assert_eq!(t.header.monitor_reserve.get(), p.monitor_reserve);
    assert_eq!(enc.checksum(), t.header.checksum.get());
    assert_eq!(t.sandboxes.len(), 2);
    for (s, sb) in p.sandboxes.iter().enumerate() {
        let e = &t.sandboxes[s];
        assert_eq!(quest_abi::name_str(&e.name), Some(sb.name.as_str()));
        assert_eq!(e.ram_size.get(), sb.ram_size);
        assert_eq!(
            e.patch_tsc_khz_gpa.get(),
            sb.boot.patch_tsc_khz_gpa.map_or(0, GuestPhysAddr::as_u64)
        );
        let regions = t.sandbox_regions(s);
        assert_eq!(regions.len(), sb.regions.len());
        for (r, want) in regions.iter().zip(&sb.regions) {
            assert_eq!((r.gpa.get(), r.size.get()), (want.gpa.as_u64(), want.size));
            assert_eq!(r.access.get(), want.access);
        }
        for (v, want) in t.sandbox_vcpus(s).iter().zip(&sb.vcpus) {
            assert_eq!(v.core.get(), want.core);
            assert_eq!(v.rip.get(), sb.boot.image_gpa.as_u64());
            assert_eq!(v.rsp.get(), want.stack_top);
            assert_eq!(v.rdi.get(), sb.boot.boot_info_gpa.as_u64());
            assert_eq!(v.rsi.get(), u64::from(want.index));
        }
    }
    let d = t.sandbox_devices(1);
    assert_eq!((d[0].first.get(), d[0].last.get()), (0x2f8, 0x2ff));
    assert_eq!(
        t.channels[0].writer_gpa.get(),
        p.channels[0].writer_gpa.as_u64()
    );
}

#[test]
fn every_device_reads_back_from_the_table_as_planned() {
    use quest_abi::{PciAddress, PciId, PciSelector};
    let mut p = plan(&testing::pingpong());
    let edu = PciId {
        vendor: 0x1234,
        device: 0x11e8,
    };
    let devices = vec![
        DevicePlan::Ports {
            first: 0x2f8,
            last: 0x2ff,
            irq: Some(3),
        },
        DevicePlan::Ports {
            first: 0x3e8,
            last: 0x3ef,
            irq: None,
        },
        DevicePlan::Pci {
            select: PciSelector::Address(PciAddress::new(0, 3, 0).unwrap()),
            dma_unprotected: true,
            start_without: false,
        },
        DevicePlan::Pci {
            select: PciSelector::Id { id: edu, index: 1 },
            dma_unprotected: false,
            start_without: true,
        },
    ];
    p.sandboxes[1].devices = devices.clone();
    let enc = encode_table(&p, None).unwrap();
    let view = quest_abi::TableView::validate(&enc.table).unwrap();
    let back: Vec<DevicePlan> = view
        .sandboxes()
        .nth(1)
        .unwrap()
        .devices()
        .map(|d| table::device_plan(&d))
        .collect();
    assert_eq!(back, devices);
    let words: Vec<String> = back.iter().map(DevicePlan::describe).collect();
    assert_eq!(
        words,
        [
            "ports 0x2f8-0x2ff irq 3",
            "ports 0x3e8-0x3ef",
            "pci 00:03.0 (dma unprotected; if absent: not started)",
            "pci 1234:11e8#1 (if absent: started without it)",
        ]
    );
}

fn image(entry: u64, payloads: &[(u64, &[u8])]) -> SandboxImage {
    SandboxImage {
        entry,
        payloads: payloads
            .iter()
            .map(|&(gpa, bytes)| Payload {
                gpa,
                bytes: bytes.to_vec(),
            })
            .collect(),
    }
}

#[test]
fn payloads_are_page_aligned_hashed_and_entries_become_rip() {
    use sha2::{Digest, Sha256};
    let p = plan(&testing::pingpong());
    let dir = directory_bytes(&p, 1);
    let images = [
        image(0x41000, &[(0x40000, &[0xcc; 5000]), (0x9000, b"boot")]),
        image(
            0x20_0040,
            &[
                (0x20_0000, b"bare app"),
                (DIRECTORY_GPA, &dir),
                (0x10000, &[]),
            ],
        ),
    ];
    let enc = encode_table(&p, Some(&images)).unwrap();
    let t = quest_abi::validate(&enc.table).unwrap();
    assert_eq!(
        enc.payload_area.len() as u64,
        t.header.payload_area_size.get()
    );
    assert_eq!(
        enc.payload_area.len() % quest_abi::PAYLOAD_ALIGN as usize,
        0
    );
    assert_eq!(t.sandbox_vcpus(0)[0].rip.get(), 0x41000);
    assert!(t.sandbox_vcpus(1).iter().all(|v| v.rip.get() == 0x20_0040));
    // Sorted by address within each sandbox; the empty payload is left out.
    let gpas: Vec<_> = t.payloads.iter().map(|e| e.gpa.get()).collect();
    assert_eq!(gpas, [0x9000, 0x40000, 0x20_0000, DIRECTORY_GPA]);
    let all: Vec<&[u8]> = vec![b"boot", &[0xcc; 5000], b"bare app", &dir];
    for (e, want) in t.payloads.iter().zip(all) {
        let off = e.offset.get() as usize;
        assert_eq!(off % 4096, 0);
        assert_eq!(&enc.payload_area[off..off + e.size.get() as usize], want);
        assert_eq!(e.sha256, <[u8; 32]>::from(Sha256::digest(want)));
    }
}

#[test]
fn overlapping_payloads_and_wrong_image_counts_are_errors() {
    let p = plan(&testing::pingpong());
    let ok = image(0x40000, &[]);
    let err = encode_table(&p, Some(std::slice::from_ref(&ok))).unwrap_err();
    assert!(
        matches!(err, TableError::ImageCount { got: 1, want: 2 }),
        "{err}"
    );
    let bad = image(0x20_0000, &[(0x20_0000, &[1; 100]), (0x20_0050, &[2])]);
    let err = encode_table(&p, Some(&[ok, bad])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "sandbox `pong`: payloads at 0x200000 and 0x200050 overlap"
    );
}

#[test]
fn a_payload_outside_the_sandbox_is_reported_as_invalid() {
    let p = plan(&testing::pingpong());
    let images = [image(0x40000, &[]), image(0x20_0000, &[(64 * MIB, b"x")])];
    let err = encode_table(&p, Some(&images)).unwrap_err();
    assert!(matches!(err, TableError::Invalid(_)), "{err}");
}

#[test]
fn invalid_manifests_never_panic_and_the_table_rejects_them() {
    let bad_channel = testing::manifest(
        2,
        64,
        &[SandboxSpec::new("a", quest_abi::Runtime::Bare, &[0], 4)],
        &[("c", "a", "nobody", 4096)],
    );
    let err = encode_table(&plan(&bad_channel), None).unwrap_err();
    assert!(matches!(err, TableError::Invalid(_)), "{err}");

    let tiny = testing::manifest(
        2,
        64,
        &[SandboxSpec::new("a", quest_abi::Runtime::Bare, &[0, 1], 0)],
        &[],
    );
    assert!(encode_table(&plan(&tiny), None).is_err());

    let long_name = testing::manifest(
        1,
        64,
        &[SandboxSpec::new(
            &"n".repeat(40),
            quest_abi::Runtime::Bare,
            &[0],
            4,
        )],
        &[],
    );
    let err = encode_table(&plan(&long_name), None).unwrap_err();
    assert!(matches!(err, TableError::Name(_)), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn valid_manifests_plan_to_valid_deterministic_tables(m in arb_manifest()) {
        let p = plan(&m);
        prop_assert_eq!(&p, &plan(&m));
        let a = encode_table(&p, None).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let b = encode_table(&plan(&m), None).unwrap();
        prop_assert_eq!(&a, &b, "byte-identical tables");
        let t = quest_abi::validate(&a.table).unwrap();
        prop_assert_eq!(t.sandboxes.len(), m.sandboxes.len());
        prop_assert_eq!(t.channels.len(), m.channels.len());
        for sb in &p.sandboxes {
            // Regions never overlap, RAM first, the rest sorted by address.
            prop_assert_eq!(sb.regions[0].kind, RegionKind::Ram);
            for w in sb.regions.windows(2) {
                prop_assert!(w[0].gpa.checked_add(w[0].size).unwrap() <= w[1].gpa);
            }
            prop_assert_eq!(sb.boot.directory_gpa.is_some(), !sb.channel_ends.is_empty());
        }
        // Every core used at most once across the system.
        let mut cores: Vec<u32> = p.sandboxes.iter().flat_map(|s| s.vcpus.iter().map(|v| v.core)).collect();
        let n = cores.len();
        cores.sort_unstable();
        cores.dedup();
        prop_assert_eq!(cores.len(), n);
    }

    #[test]
    fn tables_with_images_round_trip(m in arb_manifest(), seed in any::<u8>()) {
        let p = plan(&m);
        let images: Vec<SandboxImage> = p
            .sandboxes
            .iter()
            .enumerate()
            .map(|(s, sb)| {
                let (image_gpa, info_gpa) = (sb.boot.image_gpa.as_u64(), sb.boot.boot_info_gpa.as_u64());
                let mut img = image(image_gpa, &[(image_gpa, &[seed; 3000]), (info_gpa, &[s as u8; 64])]);
                let dir = directory_bytes(&p, s);
                img.payloads.push(Payload { gpa: DIRECTORY_GPA, bytes: dir });
                img
            })
            .collect();
        let enc = encode_table(&p, Some(&images)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let t = quest_abi::validate(&enc.table).unwrap();
        let with_dir = p.sandboxes.iter().filter(|s| !s.channel_ends.is_empty()).count();
        prop_assert_eq!(t.payloads.len(), 2 * p.sandboxes.len() + with_dir);
        prop_assert_eq!(enc.payload_area.len() as u64, t.header.payload_area_size.get());
        prop_assert_eq!(encode_table(&p, Some(&images)).unwrap(), enc);
    }
}

#[test]
fn migration_terms_reach_the_table() {
    use manifest::{Spanned, StandbyMemory};
    use quest_abi::{Runtime, SandboxId, TableView};
    fn sp<T>(v: T) -> Spanned<T> {
        Spanned::new(v, 0..0)
    }
    let mut m = testing::manifest(
        6,
        256,
        &[
            SandboxSpec::new("ctl", Runtime::Bare, &[0], 4),
            SandboxSpec::new("mover", Runtime::Bare, &[1, 2], 8),
        ],
        &[],
    );
    let mover = &mut m.sandboxes[1];
    mover.standby_cores = Some(sp(vec![sp(4), sp(3)]));
    mover.standby_memory = sp(StandbyMemory::Separate);
    mover.migrate_by = vec![sp("self".to_string()), sp("ctl".to_string())];
    mover.max_downtime = Some(sp(40_000_000));
    let p = plan(&m);
    let terms = p.sandboxes[1].migration.as_ref().unwrap();
    assert_eq!(terms.migrate_by, [0, 1], "ctl and itself, by index");
    assert!(p.sandboxes[0].migration.is_none());
    // The standby region is budgeted: 8 MiB more than the same system without it.
    let mut still = m.clone();
    still.sandboxes[1].standby_memory = sp(StandbyMemory::Same);
    assert_eq!(
        p.host_memory_needed,
        plan(&still).host_memory_needed + 8 * MIB
    );

    let enc = encode_table(&p, None).unwrap();
    let view = TableView::validate(&enc.table).unwrap();
    let sb = view.sandbox(SandboxId::new(1)).unwrap();
    let mig = sb.migration().unwrap();
    assert!(mig.separate_memory);
    assert_eq!((mig.migrate_by, mig.max_downtime_ns), (0b11, 40_000_000));
    let standby: Vec<_> = sb
        .vcpus()
        .map(|v| v.standby_core().map(|c| c.index()))
        .collect();
    assert_eq!(standby, [Some(4), Some(3)]);
    let ctl = view.sandbox(SandboxId::new(0)).unwrap();
    assert!(ctl.migration().is_none() && ctl.vcpus().all(|v| v.standby_core().is_none()));
}
