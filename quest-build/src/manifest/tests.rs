//! Whole-manifest tests: each check through `parse_and_validate`, with a fake app check,
//! and property tests that no input makes parsing, validation or rendering panic.

use super::*;
use proptest::prelude::*;
use std::path::PathBuf;

/// Every app is fine except directories whose name ends in `bad`.
struct FakeApps;

impl AppCheck for FakeApps {
    fn check(&self, dir: &Path) -> Result<(), String> {
        if dir.to_string_lossy().ends_with("bad") {
            Err("no Cargo.toml in this directory".into())
        } else {
            Ok(())
        }
    }
}

const VALID: &str = r#"
[system]
name = "demo"
cores = 4
memory = "512MiB"
console = "com1"

[[sandbox]]
name = "ping"
app = "apps/ping"
runtime = "bare"
cores = [0, 1]
memory = "8MiB"
args = ["--count", "3"]
env = { MODE = "fast" }
devices = [{ port = "0x2f8-0x2ff" }]

[[sandbox]]
name = "pong"
app = "apps/pong"
cores = [2]
memory = "64MiB"
on_fault = "restart"

[[channel]]
name = "ping-to-pong"
writer = "ping"
reader = "pong"
size = "64KiB"
"#;

fn check(src: &str) -> Result<Manifest, Diagnostics> {
    parse_and_validate(Path::new("dir/m.toml"), src, &FakeApps)
}

/// The I/O port range `first..=last` as a [`Device`].
pub(super) fn ports(first: u16, last: u16) -> Device {
    Device::Ports {
        first,
        last,
        irq: None,
    }
}

/// The messages of every error for `src` (which must be rejected).
fn errors(src: &str) -> Vec<String> {
    let diags = check(src).expect_err("manifest should be rejected");
    diags.items.iter().map(|d| d.message.clone()).collect()
}

/// `VALID` with `from` replaced by `to` (which must occur).
pub(super) fn edit(from: &str, to: &str) -> String {
    assert!(VALID.contains(from), "{from}");
    VALID.replacen(from, to, 1)
}

/// Each `(from, to, error)`: `VALID` with `from` replaced by `to` is rejected with exactly
/// that one error.
fn expect_errors(cases: &[(&str, &str, &str)]) {
    for (from, to, error) in cases {
        assert_eq!(errors(&edit(from, to)), [*error], "{from} -> {to}");
    }
}

#[test]
fn valid_manifest_builds_the_model() {
    let m = check(VALID).unwrap();
    assert_eq!(m.system.name.value, "demo");
    assert_eq!(m.system.cores.value, 4);
    assert_eq!(m.system.memory.value, 512 << 20);
    assert_eq!(m.system.console.value, Console::Com1);
    assert_eq!(m.base_dir, PathBuf::from("dir"));
    let ping = &m.sandboxes[0];
    assert_eq!(ping.app_dir(&m), PathBuf::from("dir/apps/ping"));
    assert_eq!(ping.runtime.value, Runtime::Bare);
    assert_eq!(
        ping.cores.value.iter().map(|c| c.value).collect::<Vec<_>>(),
        [0, 1]
    );
    assert_eq!(ping.args.len(), 2);
    assert_eq!(ping.env[0].0.value, "MODE");
    assert_eq!(ping.devices[0].value, ports(0x2f8, 0x2ff));
    assert_eq!(ping.on_fault.value, OnFault::HaltSandbox);
    let pong = &m.sandboxes[1];
    assert_eq!(pong.runtime.value, Runtime::Hermit);
    assert_eq!(pong.on_fault.value, OnFault::Restart);
    assert_eq!(m.channels[0].size.value, 64 << 10);
    assert_eq!(&VALID[m.channels[0].writer.span.clone()], "\"ping\"");
}

#[test]
fn unknown_key_with_suggestion() {
    let d = check(&edit("memory = \"8MiB\"", "memroy = \"8MiB\"")).unwrap_err();
    // In source order: the missing key at the table's header, then the unknown key.
    assert_eq!(d.items[0].message, "missing key `memory` in `[[sandbox]]`");
    let unknown = &d.items[1];
    assert_eq!(unknown.message, "unknown key `memroy` in `[[sandbox]]`");
    assert_eq!(unknown.hint.as_deref(), Some("did you mean `memory`?"));
    assert_eq!(d.items.len(), 2);
}

#[test]
fn duplicate_names() {
    let d = check(&edit("name = \"pong\"", "name = \"ping\"")).unwrap_err();
    assert_eq!(d.items[0].message, "duplicate sandbox name `ping`");
    assert_eq!(d.items[0].related[0].1, "first defined here");
    assert_eq!(d.items[1].message, "no sandbox named `pong`");
    assert_eq!(d.items.len(), 2);
    let two = format!("{VALID}\n[[channel]]\nname = \"ping-to-pong\"\nwriter = \"pong\"\nreader = \"ping\"\nsize = 4096\n");
    assert_eq!(errors(&two), ["duplicate channel name `ping-to-pong`"]);
}

#[test]
fn cores_checked() {
    expect_errors(&[
        (
            "cores = [2]",
            "cores = [1]",
            "core 1 is already used by sandbox `ping`",
        ),
        (
            "cores = [2]",
            "cores = [2, 2]",
            "core 2 is listed twice in sandbox `pong`",
        ),
        (
            "cores = [2]",
            "cores = [4]",
            "core 4 does not exist: the system has 4 cores (0 to 3)",
        ),
        ("cores = [2]", "cores = []", "sandbox `pong` has no cores"),
        (
            "cores = [2]",
            "cores = [-1]",
            "invalid `cores`: negative value -1",
        ),
    ]);
    let many = format!(
        "cores = [{}]",
        (2..19).map(|c| c.to_string()).collect::<Vec<_>>().join(",")
    );
    let src = edit("cores = [2]", &many).replace("cores = 4", "cores = 32");
    assert_eq!(errors(&src), ["sandbox `pong` has 17 cores, more than 16"]);
    assert_eq!(
        errors(&edit("cores = 4", "cores = 0"))[0],
        "`cores` is 0, but a system has 1 to 256 cores"
    );
}

#[test]
fn memory_checked() {
    expect_errors(&[
        (
            "\"8MiB\"",
            "\"2MiB\"",
            "sandbox memory 2 MiB is too small for a bare sandbox",
        ),
        (
            "\"64MiB\"",
            "\"16MiB\"",
            "sandbox memory 16 MiB is too small for a hermit sandbox",
        ),
        (
            "\"8MiB\"",
            "\"9MiB\"",
            "sandbox memory 9 MiB is not a multiple of 2 MiB",
        ),
    ]);
    assert_eq!(
        errors(&edit("\"8MiB\"", "\"99999999999GiB\""))[0],
        "invalid `memory`: `99999999999GiB` is too large (more than 2^64 - 1 bytes)"
    );
    let e = errors(&edit("\"64MiB\"", "\"512GiB\"").replace("\"512MiB\"", "\"1TiB\""));
    assert_eq!(
        e,
        ["sandbox memory 512 GiB is more than a sandbox can have"]
    );
    // 1 MiB low memory + 36 MiB monitor (32 + 2 x 2) + 8 + 64 MiB sandboxes + 2 MiB channel.
    let e = errors(&edit("\"512MiB\"", "\"64MiB\""));
    assert_eq!(
        e,
        ["the system needs 111 MiB of memory, more than `system.memory` (64 MiB)"]
    );
}

#[test]
fn channels_checked() {
    expect_errors(&[
        (
            "\"64KiB\"",
            "\"1000\"",
            "channel size 1000 B is not a positive multiple of 4 KiB",
        ),
        (
            "\"64KiB\"",
            "0",
            "channel size 0 B is not a positive multiple of 4 KiB",
        ),
        (
            "reader = \"pong\"",
            "reader = \"pnog\"",
            "no sandbox named `pnog`",
        ),
        (
            "reader = \"pong\"",
            "reader = \"ping\"",
            "channel writer and reader are the same sandbox `ping`",
        ),
    ]);
    let d = check(&edit("reader = \"pong\"", "reader = \"pnog\"")).unwrap_err();
    assert_eq!(d.items[0].hint.as_deref(), Some("did you mean `pong`?"));
    let big = edit("\"64KiB\"", "\"1GiB\"").replace("\"512MiB\"", "\"4GiB\"");
    assert_eq!(
        errors(&big),
        [
            "the channels of sandbox `ping` do not fit in its 1 GiB channel window",
            "the channels of sandbox `pong` do not fit in its 1 GiB channel window"
        ]
    );
}

#[test]
fn ports_checked() {
    expect_errors(&[
        (
            "0x2f8-0x2ff",
            "0x3f8-0x3ff",
            "ports 0x3f8-0x3ff collide with the monitor console com1 (0x3f8-0x3ff)",
        ),
        (
            "0x2f8-0x2ff",
            "0x2ff-0x2f8",
            "invalid `port`: port range 0x2ff-0x2f8 is reversed",
        ),
        (
            "0x2f8-0x2ff",
            "0x2f8-0x10000",
            "invalid `port`: port 0x10000 is above 0xffff",
        ),
    ]);
    let src = edit("on_fault = \"restart\"", "devices = [{ port = \"0x2fc\" }]");
    assert_eq!(
        errors(&src),
        ["ports 0x2fc-0x2fc overlap ports of sandbox `ping`"]
    );
    // Moving the console frees com1's ports.
    check(&edit("0x2f8-0x2ff", "0x3f8-0x3ff").replace("\"com1\"", "\"com3\"")).unwrap();
}

#[test]
fn names_checked() {
    expect_errors(&[
        ("\"demo\"", "\"\"", "system name is empty"),
        ("\"demo\"", "\"Demo\"", "system name contains 'D'"),
    ]);
    let long = "x".repeat(32);
    assert_eq!(
        errors(&edit("\"demo\"", &format!("\"{long}\""))),
        ["system name is 32 bytes long, more than 31"]
    );
    check(&edit("\"demo\"", &format!("\"{}\"", "x".repeat(31)))).unwrap();
}

#[test]
fn enum_values_checked() {
    let d = check(&edit("\"restart\"", "\"restrat\"")).unwrap_err();
    assert_eq!(d.items[0].message, "unknown on_fault `restrat`");
    assert!(d.items[0]
        .hint
        .as_deref()
        .unwrap()
        .starts_with("did you mean `\"restart\"`?"));
    expect_errors(&[
        ("\"bare\"", "\"linux\"", "unknown runtime `linux`"),
        ("\"com1\"", "\"com5\"", "unknown console `com5`"),
    ]);
}

#[test]
fn apps_checked() {
    expect_errors(&[(
        "apps/ping",
        "apps/bad",
        "`apps/bad` is not a Cargo package with a binary target",
    )]);
}

#[test]
fn sandbox_limit() {
    let mut src = "[system]\nname = \"big\"\ncores = 256\nmemory = \"1TiB\"\n".to_owned();
    for i in 0..65 {
        src += &format!("[[sandbox]]\nname = \"s{i}\"\napp = \"a\"\nruntime = \"bare\"\ncores = [{i}]\nmemory = \"4MiB\"\n");
    }
    assert_eq!(errors(&src), ["65 sandboxes, but a system has at most 64"]);
}

#[test]
fn all_errors_reported_in_source_order() {
    let src = edit("cores = 4", "cores = 2")
        .replace("\"8MiB\"", "\"3MiB\"")
        .replace("reader = \"pong\"", "reader = \"nobody\"")
        .replace("name = \"demo\"", "name = \"demo\"\ncolour = \"blue\"");
    let e = errors(&src);
    assert_eq!(
        e,
        [
            "unknown key `colour` in `[system]`",
            "sandbox memory 3 MiB is too small for a bare sandbox",
            "core 2 does not exist: the system has 2 cores (0 to 1)",
            "no sandbox named `nobody`",
        ]
    );
    let rendered = check(&src).unwrap_err().render(false);
    assert!(rendered.ends_with("error: could not check `m.toml` due to 4 previous errors\n"));
}

#[test]
fn load_reports_unreadable_files() {
    let d = load(Path::new("/nonexistent/quest/m.toml")).unwrap_err();
    assert_eq!(d.items.len(), 1);
    assert!(d.items[0]
        .message
        .starts_with("cannot read `/nonexistent/quest/m.toml`"));
}

/// Lines of `VALID`, for building mutated manifests.
fn valid_lines() -> Vec<&'static str> {
    VALID.lines().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_never_panics(src in "\\PC*") {
        if let Err(d) = check(&src) {
            let _ = d.render(false);
        }
    }

    #[test]
    fn toml_like_text_never_panics(src in "(\\[\\[?(system|sandbox|channel)\\]\\]?\n|[a-z_]{1,8} = (\"[a-z0-9x-]{0,12}\"|-?[0-9]{1,22}|\\[[0-9, ]{0,12}\\]|\\{ port = \"[0-9a-fx-]{0,12}\" \\})\n){0,30}") {
        if let Err(d) = check(&src) {
            prop_assert!(d.has_errors());
            let _ = d.render(true);
        }
    }

    #[test]
    fn mutated_valid_manifests_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..4, "\\PC{0,12}"), 1..6)
    ) {
        let mut lines: Vec<String> = valid_lines().into_iter().map(String::from).collect();
        for (at, op, text) in edits {
            let i = at.index(lines.len().max(1));
            let last = lines.len().saturating_sub(1).min(i);
            match op {
                0 => { lines.remove(last); }
                1 => lines.insert(i, text),
                2 => lines[last].push_str(&text),
                // Cut the line at a character boundary (an arbitrary prefix of it).
                _ => {
                    let l = &mut lines[last];
                    let cut = (0..=l.len().min(text.len())).rev().find(|&c| l.is_char_boundary(c)).unwrap_or(0);
                    l.truncate(cut);
                }
            }
            if lines.is_empty() { lines.push(String::new()); }
        }
        let src = lines.join("\n");
        match check(&src) {
            Ok(m) => {
                // What validation accepts, the planner and the ABI's validate accept too.
                let table = crate::plan::encode_table(&crate::plan::plan(&m), None);
                prop_assert!(table.is_ok(), "{:?}\n{}", table.err(), src);
                prop_assert_eq!(m.source, src);
            }
            Err(d) => { prop_assert!(d.has_errors()); let _ = d.render(false); }
        }
    }
}

#[test]
fn table_forms_of_devices_and_env() {
    let src = format!(
        "{VALID}\n[[sandbox]]\nname = \"third\"\napp = \"apps/third\"\nruntime = \"bare\"\ncores = [3]\nmemory = \"4MiB\"\n\n[sandbox.env]\nA = \"1\"\n\n[[sandbox.devices]]\nport = \"0x60\"\n"
    );
    let m = check(&src).unwrap();
    let third = &m.sandboxes[2];
    assert_eq!(third.env[0].0.value, "A");
    assert_eq!(third.devices[0].value, ports(0x60, 0x60));
}

#[test]
fn a_system_needs_a_sandbox() {
    let src = "[system]\nname = \"empty\"\ncores = 1\nmemory = \"64MiB\"\n";
    assert_eq!(errors(src), ["the system has no sandboxes"]);
}

#[test]
fn channel_directory_limit() {
    let n = quest_abi::directory::MAX_DIRECTORY_ENTRIES;
    let mut src = VALID.to_owned();
    for i in 0..n {
        src += &format!(
            "[[channel]]\nname = \"c{i}\"\nwriter = \"pong\"\nreader = \"ping\"\nsize = 4096\n"
        );
    }
    // `ping` and `pong` now have n + 1 channels each (with `ping-to-pong`).
    assert_eq!(
        errors(&src),
        [
            format!("sandbox `pong` has more than {n} channels"),
            format!("sandbox `ping` has more than {n} channels")
        ]
    );
    src.truncate(src.rfind("[[channel]]").unwrap());
    check(&src).unwrap();
}

#[test]
fn huge_unaligned_channel_sizes_do_not_overflow() {
    let e =
        errors(&edit("\"64KiB\"", &format!("\"{}\"", u64::MAX)).replace("\"512MiB\"", "\"16TiB\""));
    assert!(
        e.contains(
            &"channel size 18446744073709551615 B is not a positive multiple of 4 KiB".to_owned()
        ),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.contains("do not fit in its 1 GiB channel window")),
        "{e:?}"
    );
}

/// The sample with `ping`'s devices replaced by `ping` and `pong` given `pong` devices.
fn with_devices(ping: &str, pong: &str) -> String {
    edit(
        "devices = [{ port = \"0x2f8-0x2ff\" }]",
        &format!("devices = [{ping}]"),
    )
    .replace(
        "on_fault = \"restart\"",
        &format!("on_fault = \"restart\"\ndevices = [{pong}]"),
    )
}

#[test]
fn pci_devices_and_irqs_parse() {
    let m = check(&with_devices(
        r#"{ port = "0x2f8-0x2ff", irq = 3 }, { pci = "00:03.0", dma = "unprotected" }"#,
        r#"{ pci = "1234:11e8", index = 1, if_absent = "start-without" }"#,
    ))
    .unwrap();
    let ping = &m.sandboxes[0].devices;
    assert!(matches!(
        &ping[0].value,
        Device::Ports { first: 0x2f8, last: 0x2ff, irq: Some(i) } if i.value == 3
    ));
    assert_eq!(
        ping[1].value,
        Device::Pci(PciDevice {
            select: PciSelector::Address(PciAddress::new(0, 3, 0).unwrap()),
            dma: Dma::Unprotected,
            if_absent: IfAbsent::KeepStopped,
        })
    );
    assert_eq!(
        m.sandboxes[1].devices[0].value,
        Device::Pci(PciDevice {
            select: PciSelector::Id {
                id: PciId {
                    vendor: 0x1234,
                    device: 0x11e8
                },
                index: 1
            },
            dma: Dma::Protected,
            if_absent: IfAbsent::StartWithout,
        })
    );
}

#[test]
fn device_errors_are_all_reported() {
    let src = with_devices(
        r#"{ port = "0x2f8-0x2ff", irq = 4 }, { port = "0x60", irq = 16 }, { port = "0x61", irq = 2 }, { port = "0xcf8-0xcff" }, { pci = "00:03.0" }, { pci = "00:20.0" }, { pci = "zz:11e8" }, { pci = "00:04.0", index = 1 }, { port = "0x70", pci = "00:05.0" }, { irq = 5 }, { port = "0x80", dma = "unprotected" }, { pci = "00:06.0", irq = 5 }, { pci = "00:07.0", dma = "none" }"#,
        r#"{ pci = "00:03.0" }, { port = "0x2e8-0x2ef", irq = 5 }, { port = "0x2e0", irq = 5 }, { pci = "8086:1237" }, { pci = "8086:1237", index = 0 }"#,
    );
    assert_eq!(
        errors(&src),
        [
            "IRQ 4 is the monitor console's (com1)",
            "IRQ 16 is not a legacy IRQ line (0 to 15)",
            "IRQ 2 is the cascade of the two interrupt controllers",
            "ports 0xcf8-0xcff include the PCI configuration ports (0xcf8-0xcff)",
            "invalid `pci`: device 0x20 is above 0x1f",
            "invalid `pci`: `zz` is not a vendor ID (hexadecimal, at most 4 digits)",
            "`index` applies to a vendor:device ID, not to an address",
            "a device is either `port` or `pci`, not both",
            "a device needs `port` or `pci`",
            "`dma` does not apply to a port range",
            "`irq` does not apply to a PCI function",
            "unknown dma `none`",
            "PCI function 00:03.0 is already given to sandbox `ping`",
            "IRQ 5 is already given to sandbox `pong`",
            "PCI function 8086:1237 is listed twice for sandbox `pong`",
        ]
    );
}
