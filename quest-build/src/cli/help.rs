//! The long help of `quest-build` and each subcommand (`--help`): complete on its own, so
//! a user needs no document outside the repository to use the tool.

/// After `quest-build --help`.
pub const TOP: &str = "\
Quest turns a partition manifest (TOML: each sandbox's cores, memory, I/O ports and
application, an ordinary Cargo package, plus the shared-memory channels between
sandboxes) into one bootable image: a small VT-x monitor that gives every sandbox its
own cores and EPT-isolated memory, and one unikernel per sandbox (Hermit for std
programs, Quest's quest-rt for no_std ones).

Typical use, from the repository root:
  quest-build check partition-manifests/hello.toml   every problem, with file:line:col
  quest-build plan  partition-manifests/hello.toml   cores, memory maps, channels
  quest-build run   partition-manifests/hello.toml   build, boot, show each sandbox's output

Documentation in the repository: README.md (overview, architecture, contributing),
partition-manifests/README.md (the manifest language), quest-build/README.md (the
stages of the tool), monitor/README.md (the monitor and its exit handlers).

Environment: QUEST_ROOT names the Quest checkout whose monitor, runtimes and images/
directory are used (default: the checkout this tool was built from);
QUEST_HERMIT_LOG sets Hermit's kernel log level (default warn).

Exit status: 0 success, 1 invalid input or a failed system, 2 usage error.";

/// After `quest-build check --help`.
pub const CHECK: &str = "\
Parses and validates each manifest and prints every problem at once, the way rustc does:
the message, file:line:col, the line with a caret, and a hint on how to fix it. Nothing
is built. Exit status 1 if any manifest has an error (warnings alone pass).

Example: quest-build check partition-manifests/*.toml";

/// After `quest-build plan --help`.
pub const PLAN: &str = "\
The plan is what the image will contain, computed from the manifest alone: which
sandbox owns which core, each sandbox's guest-physical memory map, the channels and
where they are mapped, and the partition table's size and checksum. Host-physical
placement is chosen by the monitor at boot and printed in the boot log.

Examples:
  quest-build plan partition-manifests/pingpong.toml
  quest-build plan partition-manifests/hello.toml --json
  quest-build plan partition-manifests/hello.toml --svg hello.svg";

/// After `quest-build image --help`.
pub const IMAGE: &str = "\
Builds every application for its runtime (cargo; Hermit applications with the pinned
nightly toolchain, which ci/setup.sh installs), the monitor, every sandbox's initial
memory and the partition table, and links them into one multiboot2 ELF and a GRUB ISO
that boots in QEMU, Bochs or on a PC. Outputs go to images/ (ignored by git); builds are
cached, so an unchanged manifest rebuilds nothing and gives identical bytes.

Example: quest-build image partition-manifests/hello.toml -o images/hello.iso";

/// After `quest-build run --help`.
pub const RUN: &str = "\
Builds the image if given a manifest, boots it, and streams the console: monitor lines
start with `quest:`, each sandbox's lines with `[name]`. The default emulator is QEMU
with KVM where the host offers VT-x or SVM to guests; else QEMU's software emulation
(an AMD CPU with SVM, which the monitor's SVM backend uses; about 10x faster than
Bochs), and with --check-bounds Bochs (which emulates VT-x with EPT; slow, but its cores
keep pace with each other, where QEMU runs the vCPUs in turns and no latency bound
holds): apt install qemu-system-x86 bochs bochsbios vgabios. Bochs runs in its
own network namespace (its display is a VNC server) with dummy sound drivers, so it
needs no sound card or display. The configuration and logs of each boot are kept in
images/run/NAME-PID-N/ (bochsrc, serial.log, bochs.log, emulator.out).

Devices: QEMU gets the emulated PCI devices a table names by ID. A sandbox given
`{ pci = \"10ec:8139\" }` owns a Realtek RTL8139 on QEMU's user network (the guest is
10.0.2.15, gateway 10.0.2.2; it cannot open connections out). --forward HOST:GUEST
(repeatable) forwards TCP port HOST of 127.0.0.1 on this machine to the guest's port
GUEST; it needs QEMU and such a card:
  quest-build run partition-manifests/web.toml --forward 8080:80
  curl http://127.0.0.1:8080/

A system that gives a sandbox a PCI device boots in QEMU on its Q35 machine with an
IOMMU, so the monitor can confine each device's DMA to its sandbox's memory: Intel VT-d
by default; --iommu amd gives QEMU's AMD-Vi instead, --iommu none no IOMMU (the monitor
then refuses bus mastering unless the device's entry says dma = \"unprotected\"). Bochs
has no IOMMU; --iommu with Bochs, or for a system without PCI devices, is an error.

Before any sandbox runs, the monitor measures the platform (`quest: calibration:` lines).
--calibrate writes those constants to images/<system>.platform.toml, a profile for
`quest-build bounds --platform`. --check-bounds (manifests only) computes each channel's
bound from this boot's own calibration and checks every message's latency, as its reader
recorded it, against it; it prints a log2 histogram per channel and one line:
  bounds: <messages> messages on <k> channels, worst observed/bound <ratio>, held
(or `... VIOLATED on <channel>`, and the run exits 1). --json prints the check as JSON.

Exit status: 0 if every sandbox exited 0; else the first failing sandbox's status; 1 if
the system halted, the boot never finished, the time limit ended it, or a calibration or
bounds check failed.";

/// After `quest-build bounds --help`.
pub const BOUNDS: &str = "\
For each channel: the longest one message can take from the start of `send` to the
return of `recv`, built term by term from the channel's declared model (the manifest's
`reader_mode`, `poll_period`, `poll_jitter`, `max_message`, `min_interval`, `burst`) and
the platform's measured costs: the writer's copy, the record's cache lines moving to the
reader's core, the reader's detection delay for its mode, the messages the reader can find
ahead of this one, and the reader's copy. Also the longest a `send` on a full ring waits.
partition-manifests/README.md states the formula and what breaks it.

The costs come from a platform profile: `--platform FILE`, written by
`quest-build run --calibrate MANIFEST` on the target (images/<system>.platform.toml),
or else the profile shipped for Bochs (measured), and the report says which.
`quest-build run --check-bounds` compares every message's latency with these bounds.

Example: quest-build bounds partition-manifests/bounds.toml --json";

/// After `quest-build inspect --help`.
pub const INSPECT: &str = "\
Reads the partition table embedded in an image, validates it as the monitor does at
boot, and checks every payload's SHA-256. Exit status 1 if the table is unreadable or
invalid or a hash does not match.";

/// After `quest-build bench --help`.
pub const BENCH: &str = "\
Measures and prints one table: cold and warm build times, image and monitor sizes, boot
cost (monitor entry to all sandboxes running), Hermit launch-to-main, channel round
trips and VM exits per message. It builds from scratch in its own target directory and
boots in Bochs, so it takes several minutes; run it in release mode:
  cargo run --release -p quest-build -- bench";

/// After `quest-build new --help`.
pub const NEW: &str = "\
Creates NAME/NAME.toml (a one-sandbox manifest with every key commented) and the
application package NAME/apps/NAME/ beside it, like `cargo new`: a std program for the
hermit runtime, a no_std quest-rt program for bare. Both build and boot as they are;
nothing existing is overwritten. Then:
  quest-build run NAME/NAME.toml

Add sandboxes and channels to the manifest as partition-manifests/README.md describes.";
