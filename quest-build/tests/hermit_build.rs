//! End to end on the host: a manifest with Hermit sandboxes is planned, the kernel and the
//! std applications are really built (nightly toolchain, hermit-kernel from crates.io),
//! and each unikernel is loaded into its initial guest memory.
//!
//! Cold (no cache under `images/hermit/`) this compiles the kernel and the standard
//! library: a minute or two. Warm it runs no compiler for the kernel at all.

use quest_abi::layout::{BOOT_INFO_GPA, FDT_GPA, GDT_GPA, HERMIT_KERNEL_GPA, PAGE_TABLES_GPA};
use quest_build::build::{Progress, Workspace};
use quest_build::plan::{Payload, SandboxImage};
use quest_build::runtime::hermit::bootinfo::{HermitBootInfo, BOOT_INFO_SIZE, PLATFORM_UHYVE};
use quest_build::runtime::hermit::{build_sandbox, HermitDirs};
use quest_build::{manifest, plan};
use std::path::{Path, PathBuf};
use zerocopy::FromBytes;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A two-sandbox manifest written to a scratch directory, planned; the first sandbox
/// (hello-std) gets `cores`.
fn hermit_plan(cores: &[u32]) -> plan::Plan {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("quest-hermit-build-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let app = |name: &str| {
        repo()
            .join("unikernels/apps")
            .join(name)
            .canonicalize()
            .unwrap()
            .display()
            .to_string()
    };
    let text = format!(
        r#"
[system]
name = "hermit-test"
cores = 4
memory = "512MiB"

[[sandbox]]
name = "hello"
app = "{hello}"
cores = {cores:?}
memory = "64MiB"
args = ["alpha", "two words"]
env = {{ GREETING = "hi there" }}

[[sandbox]]
name = "panicky"
app = "{panic}"
cores = [2, 3]
memory = "32MiB"
"#,
        hello = app("hello-std"),
        panic = app("panic-std"),
        cores = cores,
    );
    let path = dir.join("hermit.toml");
    std::fs::write(&path, text).unwrap();
    let m = manifest::load(&path).unwrap_or_else(|d| panic!("{}", d.render(false)));
    std::fs::remove_dir_all(&dir).unwrap();
    plan::plan(&m)
}

fn payload_at(image: &SandboxImage, gpa: u64) -> &Payload {
    image
        .payloads
        .iter()
        .find(|p| p.gpa == gpa)
        .unwrap_or_else(|| panic!("no payload at {gpa:#x}"))
}

#[test]
fn hermit_sandboxes_build_and_load() {
    let plan = hermit_plan(&[0, 1]);
    let ws = Workspace::locate();
    let dirs = HermitDirs::of(&ws);
    let progress = Progress::stderr();

    let hello = build_sandbox(&ws, &plan, 0, &progress).expect("hello-std builds");
    let sb = &plan.sandboxes[0];
    let ram = sb.ram_size;

    // The ELF: a static PIE for Hermit with the entry-version note (= 4).
    let elf_bytes = std::fs::read(&hello.elf).unwrap();
    let elf = goblin::elf::Elf::parse(&elf_bytes).unwrap();
    assert_eq!(elf.header.e_type, goblin::elf::header::ET_DYN);
    assert_eq!(elf.header.e_ident[goblin::elf::header::EI_OSABI], 0xff);
    let notes: Vec<_> = elf
        .iter_note_headers(&elf_bytes)
        .expect("the image has notes")
        .map(|n| n.unwrap())
        .collect();
    let version = notes
        .iter()
        .find(|n| n.name == "HERMIT")
        .expect("a HERMIT note");
    assert_eq!(version.desc, [4]);
    // Kernel and application really are linked together: the kernel's entry and the
    // application's main, and no unprefixed second allocator.
    let names: Vec<&str> = elf
        .syms
        .iter()
        .filter_map(|s| elf.strtab.get_at(s.st_name))
        .collect();
    assert!(names.contains(&"_start"));
    assert!(names.contains(&"runtime_entry"));
    assert!(names.iter().any(|n| n.starts_with("hermit_")));

    eprintln!(
        "hello-std: ELF {} bytes, loaded image {} bytes, payloads {} bytes",
        elf_bytes.len(),
        hello
            .image
            .payloads
            .iter()
            .find(|p| p.gpa == HERMIT_KERNEL_GPA)
            .map_or(0, |p| p.bytes.len()),
        hello
            .image
            .payloads
            .iter()
            .map(|p| p.bytes.len())
            .sum::<usize>()
    );

    // The entry is `_start`, relocated to where the kernel was loaded.
    let image = &hello.image;
    assert_eq!(image.entry, HERMIT_KERNEL_GPA + elf.header.e_entry);

    // Every payload lies inside RAM and none overlaps another.
    let mut spans: Vec<(u64, u64)> = image
        .payloads
        .iter()
        .map(|p| (p.gpa, p.gpa + p.bytes.len() as u64))
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "overlap {w:x?}");
    }
    assert!(spans.iter().all(|&(_, end)| end <= ram), "{spans:x?}");

    // GDT, page tables, FDT, boot info and image are where Hermit expects them.
    assert_eq!(payload_at(image, GDT_GPA).bytes.len(), 24);
    let pml4 = &payload_at(image, PAGE_TABLES_GPA).bytes;
    assert_eq!(
        u64::from_le_bytes(pml4[511 * 8..512 * 8].try_into().unwrap()) & !0xfff,
        PAGE_TABLES_GPA
    );
    let kernel = payload_at(image, HERMIT_KERNEL_GPA);
    assert!(kernel.bytes.len() > 100_000, "{}", kernel.bytes.len());
    assert!(
        (HERMIT_KERNEL_GPA..HERMIT_KERNEL_GPA + kernel.bytes.len() as u64).contains(&image.entry)
    );

    let fdt_bytes = &payload_at(image, FDT_GPA).bytes;
    let fdt = fdt::Fdt::new(fdt_bytes).unwrap();
    assert_eq!(fdt.root().compatible().first(), "hermit,uhyve");
    assert_eq!(
        fdt.chosen().bootargs(),
        Some("'env=GREETING=hi there' -- alpha 'two words'")
    );

    let info_bytes = &payload_at(image, BOOT_INFO_GPA).bytes;
    assert_eq!(info_bytes.len(), BOOT_INFO_SIZE);
    let info = HermitBootInfo::read_from_bytes(info_bytes).unwrap();
    assert_eq!(info.platform.get(), PLATFORM_UHYVE);
    assert_eq!(info.num_cpus.get(), 2);
    assert_eq!(info.phys_addr_end.get(), ram);
    assert_eq!(info.device_tree.get(), FDT_GPA);
    assert_eq!(info.kernel_image_start.get(), HERMIT_KERNEL_GPA);
    assert_eq!(
        info.kernel_image_end.get(),
        HERMIT_KERNEL_GPA + kernel.bytes.len() as u64
    );
    assert_ne!(info.tls_memsz.get(), 0, "std has thread-locals");

    // A second application against the same kernel, and then a no-op rebuild: the
    // kernel is not compiled again.
    let archive = dirs
        .kernel_dir(quest_build::runtime::hermit::KernelConfig::Plain)
        .join("libhermit.a");
    let before = std::fs::metadata(&archive).unwrap().modified().unwrap();
    let panicky = build_sandbox(&ws, &plan, 1, &progress).expect("panic-std builds");
    let again = build_sandbox(&ws, &plan, 0, &progress).expect("hello-std rebuilds");
    assert_eq!(
        again.image, hello.image,
        "a rebuild gives the same memory image"
    );
    assert_eq!(
        std::fs::metadata(&archive).unwrap().modified().unwrap(),
        before
    );
    assert_ne!(panicky.image.entry, 0);
    assert_eq!(
        fdt::Fdt::new(&payload_at(&panicky.image, FDT_GPA).bytes)
            .unwrap()
            .chosen()
            .bootargs(),
        Some("--")
    );
}

#[test]
fn a_bare_sandbox_is_refused() {
    let mut plan = hermit_plan(&[0, 1]);
    plan.sandboxes[0].runtime = quest_abi::Runtime::Bare;
    let nowhere = Workspace::at("/nonexistent".into());
    let err = build_sandbox(&nowhere, &plan, 0, &Progress::quiet()).unwrap_err();
    assert!(
        err.to_string().contains("does not use the Hermit runtime"),
        "{err}"
    );
    let err = build_sandbox(&nowhere, &plan, 9, &Progress::quiet()).unwrap_err();
    assert!(err.to_string().contains("no sandbox 9"), "{err}");
}

/// A one-core sandbox runs the same (`smp`) kernel, linked into the same application
/// target directory, and its boot info says one CPU.
#[test]
fn a_single_core_sandbox_shares_the_one_kernel() {
    let plan = hermit_plan(&[1]);
    let ws = Workspace::locate();
    let built = build_sandbox(&ws, &plan, 0, &Progress::stderr()).unwrap();
    let info =
        HermitBootInfo::read_from_bytes(&payload_at(&built.image, BOOT_INFO_GPA).bytes).unwrap();
    assert_eq!(info.num_cpus.get(), 1);
    assert!(
        built
            .elf
            .starts_with(HermitDirs::of(&ws).root.join("apps-smp")),
        "{}",
        built.elf.display()
    );
}
