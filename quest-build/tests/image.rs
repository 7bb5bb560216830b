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

/// `quest-build inspect` lists every device of an image in the words `plan` uses: ports
/// with their IRQ line, PCI functions by address or by ID and index, `dma`, `if_absent`.
#[test]
fn inspect_lists_each_sandboxs_devices() {
    let ws = Workspace::locate();
    let dir = ws.images().join("tests").join("inspect-devices");
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let app = ws.root.join("unikernels/apps/pci-scan");
    let manifest = dir.join("inspect-devices.toml");
    std::fs::write(
        &manifest,
        format!(
            r#"[system]
name = "inspect-devices"
cores = 2
memory = "256MiB"
console = "com1"

[[sandbox]]
name = "owner"
app = "{app}"
runtime = "bare"
cores = [0]
memory = "4MiB"
devices = [
    {{ port = "0x2f8-0x2ff", irq = 3 }},
    {{ port = "0x3e8-0x3ef" }},
    {{ pci = "00:03.0", dma = "unprotected" }},
    {{ pci = "1234:11e8", index = 1, if_absent = "start-without" }},
]

[[sandbox]]
name = "bystander"
app = "{app}"
runtime = "bare"
cores = [1]
memory = "4MiB"
"#,
            app = app.display()
        ),
    )
    .expect("writing the manifest");
    let elf = dir.join("inspect-devices.elf");
    let req = ImageRequest {
        manifest,
        iso: Some(elf.with_extension("iso")),
        make_iso: false,
    };
    build_image(&ws, &req, &Progress::stderr()).unwrap_or_else(|e| panic!("building: {e}"));
    let out = Command::new(env!("CARGO_BIN_EXE_quest-build"))
        .arg("inspect")
        .arg(&elf)
        .output()
        .expect("quest-build runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let devices: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("sandbox ") || l.starts_with("  device: "))
        .map(|l| l.split_once(':').map_or(l, |(head, _)| head))
        .collect();
    assert_eq!(
        devices,
        [
            "sandbox 0 `owner`",
            "  device",
            "  device",
            "  device",
            "  device",
            "sandbox 1 `bystander`",
        ],
        "{text}"
    );
    for line in [
        "  device: ports 0x2f8-0x2ff irq 3\n",
        "  device: ports 0x3e8-0x3ef\n",
        "  device: pci 00:03.0 (dma unprotected; if absent: not started)\n",
        "  device: pci 1234:11e8#1 (if absent: started without it)\n",
    ] {
        assert!(text.contains(line), "{line:?} not in\n{text}");
    }
}
