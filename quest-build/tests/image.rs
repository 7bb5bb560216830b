//! The image stage end to end (no emulator): identical inputs give byte-identical ELF and
//! ISO, GRUB accepts the ELF as multiboot2, a no-op rebuild writes nothing, and `inspect`
//! finds every payload intact.

use quest_build::build::{Progress, Workspace};
use quest_build::image::inspect::inspect;
use quest_build::image::{build_image, iso, BuiltImage, ImageRequest};
use std::process::Command;

fn build(output: &str) -> BuiltImage {
    let ws = Workspace::locate();
    let req = ImageRequest {
        manifest: ws.root.join("partition-manifests/hello.toml"),
        iso: Some(ws.images().join("tests").join(format!("{output}.iso"))),
        make_iso: true,
    };
    build_image(&ws, &req, &Progress::stderr()).unwrap_or_else(|e| panic!("building hello: {e}"))
}

#[test]
fn identical_inputs_give_identical_images_and_no_op_rebuilds_do_nothing() {
    let a = build("repro-a");
    let b = build("repro-b");
    let read =
        |p: &std::path::Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert!(read(&a.elf) == read(&b.elf), "the ELFs differ");
    let (a_iso, b_iso) = (a.iso.clone().unwrap(), b.iso.clone().unwrap());
    assert!(read(&a_iso) == read(&b_iso), "the ISOs differ");

    let again = build("repro-a");
    assert!(!again.elf_changed, "a no-op rebuild rewrote the ELF");
    assert!(!again.iso_made, "a no-op rebuild remade the ISO");

    let report = inspect(&read(&a.elf)).expect("the table is valid");
    assert_eq!(report.bad_payloads, 0);
    assert!(
        report.text.contains("sandbox 1 `beta`: hermit"),
        "{}",
        report.text
    );
    assert!(
        report.text.contains("sandbox 2 `gamma`: bare"),
        "{}",
        report.text
    );

    if let Some(grub_file) = iso::find_program("grub-file") {
        let ok = Command::new(grub_file)
            .arg("--is-x86-multiboot2")
            .arg(&a.elf)
            .status()
            .expect("grub-file runs");
        assert!(
            ok.success(),
            "grub-file does not accept the image as multiboot2"
        );
    }
}

/// The README's main command names the manifest relative to the checkout; every app path
/// (bare and Hermit) must still resolve once cargo runs in another directory.
#[test]
fn a_relative_manifest_path_builds() {
    let ws = Workspace::locate();
    let out = Command::new(env!("CARGO_BIN_EXE_quest-build"))
        .current_dir(&ws.root)
        .args(["image", "partition-manifests/hello.toml", "--no-iso", "-o"])
        .arg(ws.images().join("tests").join("relative.iso"))
        .output()
        .expect("quest-build runs");
    assert!(
        out.status.success(),
        "quest-build image with a relative manifest path failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
