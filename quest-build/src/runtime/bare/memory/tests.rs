//! A bare sandbox's initial memory, checked field by field and through `validate`.

use super::*;
use crate::manifest::Runtime as ManifestRuntime;
use crate::plan::testing::{manifest, SandboxSpec};
use crate::runtime::bare::testing::{tiny_app, BSS, FILE_LEN};
use quest_abi::args::ArgsBlock;
use quest_abi::layout::{BARE_IMAGE_GPA, BOOT_INFO_GPA, DIRECTORY_GPA};
use zerocopy::FromBytes;

fn two_sandboxes_and_a_channel() -> Plan {
    let m = manifest(
        4,
        256,
        &[
            SandboxSpec::new("a", ManifestRuntime::Bare, &[0], 8),
            SandboxSpec::new("b", ManifestRuntime::Bare, &[1, 2], 16),
        ],
        &[("a-to-b", "a", "b", 64 * 1024)],
    );
    crate::plan::plan(&m)
}

fn payload(image: &SandboxImage, gpa: u64) -> &[u8] {
    &image
        .payloads
        .iter()
        .find(|p| p.gpa == gpa)
        .unwrap_or_else(|| panic!("no payload at {gpa:#x}"))
        .bytes
}

#[test]
fn boot_info_describes_the_sandbox_and_its_memory() {
    let plan = two_sandboxes_and_a_channel();
    let image = prepare(&plan, 1, &tiny_app()).unwrap();
    assert_eq!(image.entry, BARE_IMAGE_GPA + 0x208);
    let info = BootInfo::read_from_bytes(payload(&image, BOOT_INFO_GPA)).unwrap();
    assert_eq!(info.magic, BOOT_INFO_MAGIC);
    assert_eq!(quest_abi::name_str(&info.name), Some("b"));
    assert_eq!(info.sandbox_index.get(), 1);
    assert_eq!(info.num_vcpus.get(), 2);
    assert_eq!([info.cores[0].get(), info.cores[1].get()], [1, 2]);
    assert_eq!(info.ram_size.get(), 16 << 20);
    assert_eq!(info.image_start.get(), BARE_IMAGE_GPA);
    assert_eq!(info.image_end.get(), BARE_IMAGE_GPA + FILE_LEN + BSS);
    assert_eq!(
        info.heap_start.get(),
        (BARE_IMAGE_GPA + FILE_LEN + BSS).next_multiple_of(4096)
    );
    assert_eq!(info.heap_end.get(), (16 << 20) - 2 * BARE_STACK_SIZE);
    assert_eq!(info.directory_gpa.get(), DIRECTORY_GPA);
    assert_eq!(info.launch_count.get(), 0, "patched by the monitor");

    let block = payload(&image, info.args_gpa.get());
    assert_eq!(block.len() as u32, info.args_size.get());
    let args = ArgsBlock::new(block, info.argc.get(), info.envc.get());
    assert!(args.args().eq(["--fast"]));
    assert_eq!(args.var("MODE"), Some("test"));

    let gdt = payload(&image, GDT_GPA);
    assert_eq!(gdt, quest_abi::gdt::launch_gdt_bytes());
}

#[test]
fn page_tables_map_ram_and_channels_with_planned_access() {
    let plan = two_sandboxes_and_a_channel();
    let writer = page_tables(&plan, 0).unwrap();
    let reader = page_tables(&plan, 1).unwrap();
    let end = &plan.sandboxes[1].channel_ends[0];
    let (data, ack) = (end.data_gpa.as_u64(), end.ack_gpa.as_u64());
    assert_eq!(reader.lookup(data), Some((data, false)));
    assert_eq!(reader.lookup(ack), Some((ack, true)));
    let wend = &plan.sandboxes[0].channel_ends[0];
    let (data, ack) = (wend.data_gpa.as_u64(), wend.ack_gpa.as_u64());
    assert_eq!(writer.lookup(data), Some((data, true)));
    assert_eq!(writer.lookup(ack), Some((ack, false)));
    assert_eq!(reader.lookup(DIRECTORY_GPA), Some((DIRECTORY_GPA, false)));
    assert_eq!(reader.lookup((16 << 20) - 1), Some(((16 << 20) - 1, true)));
    assert_eq!(reader.lookup(16 << 20), None, "nothing past RAM");
    // The tables themselves are stored where CR3 points.
    let image = prepare(&plan, 1, &tiny_app()).unwrap();
    assert_eq!(payload(&image, PAGE_TABLES_GPA), reader.to_bytes());
}

#[test]
fn prepared_images_pass_the_monitors_validation() {
    let plan = two_sandboxes_and_a_channel();
    let images: Vec<_> = (0..2)
        .map(|i| prepare(&plan, i, &tiny_app()).unwrap())
        .collect();
    let encoded = crate::plan::encode_table(&plan, Some(&images)).unwrap();
    let table = quest_abi::validate(&encoded.table).unwrap();
    // GDT, boot info, args, page tables, image, and (with a channel) the directory.
    assert_eq!(table.sandbox_payloads(0).len(), 6);
    assert_eq!(table.vcpus[0].rip.get(), BARE_IMAGE_GPA + 0x208);
}

#[test]
fn an_image_that_leaves_no_heap_is_refused() {
    let m = manifest(
        1,
        64,
        &[SandboxSpec::new("tiny", ManifestRuntime::Bare, &[0], 2)],
        &[],
    );
    let plan = crate::plan::plan(&m);
    let err = prepare(&plan, 0, &tiny_app()).unwrap_err();
    assert!(err.to_string().contains("leaves no heap"), "{err}");
}

#[test]
fn a_broken_application_names_its_sandbox() {
    let plan = two_sandboxes_and_a_channel();
    let err = prepare(&plan, 0, b"#!/bin/sh").unwrap_err();
    assert!(
        err.to_string().starts_with("sandbox `a`: application ELF"),
        "{err}"
    );
}
