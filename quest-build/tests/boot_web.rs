//! Boot test of `partition-manifests/web.toml` in QEMU (TCG, the SVM backend): a Hermit
//! sandbox that owns an RTL8139 serves HTTP with `std::net::TcpListener`, and `curl` on
//! this machine talks to it through `quest-build run --forward`'s port forward.
//!
//! Checked: the monitor gives the card to `web`; `curl` gets the page several times, each
//! holding exactly the first 100 primes that `compute` sent over a channel (recomputed
//! here) and its own request number; `/prime/1000` crosses the channel hop (7919);
//! `quiet`'s bus scan finds nothing; `attacker` reads the card's memory BAR (an NPT
//! violation: restarted), writes its I/O BAR (an I/O-bitmap violation: restarted), then
//! writes the configuration space of every function of bus 0 and sees nothing, while the
//! server goes on answering; `/quit` ends web and compute, and every sandbox exits 0.

#[macro_use]
mod common;

use common::{assert_line, assert_passed, build, reports};
use quest_build::build::Workspace;
use quest_build::run::background::Background;
use quest_build::run::network::Forward;
use quest_build::run::{self, qemu::Accel, Emulator, RunOptions};
use std::process::Command;
use std::time::Duration;

/// How long the system gets to boot until web listens (QEMU TCG on a loaded 2-core host;
/// a quiet one takes well under a minute).
const LISTEN_TIMEOUT: Duration = Duration::from_secs(300);
/// Requests for `/`.
const PAGES: u64 = 5;
/// What web.toml's attacker targets: where QEMU's firmware puts the RTL8139.
const NIC_MEMORY_BAR: u64 = 0xfebd_1000;
const NIC_IO_BAR: u16 = 0xc000;

/// A TCP port of 127.0.0.1 that nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `curl` on `path`: (HTTP status, body).
fn curl(port: u16, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "120", "-w", "\n%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl {path} failed ({}): {}{text}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, status) = text.rsplit_once('\n').expect("curl's status line");
    (
        status.trim().parse().expect("an HTTP status"),
        body.to_owned(),
    )
}

/// The first `n` primes, as `primes` computes them.
fn first_primes(n: usize) -> Vec<u64> {
    let mut primes = Vec::new();
    let mut k = 2u64;
    while primes.len() < n {
        if primes
            .iter()
            .take_while(|&&p| p * p <= k)
            .all(|&p| k % p != 0)
        {
            primes.push(k);
        }
        k += 1;
    }
    primes
}

fn curl_missing() -> bool {
    Command::new("curl").arg("--version").output().is_err()
}

#[test]
fn web_answers_curl_through_its_own_network_card() {
    require_qemu!();
    if curl_missing() {
        assert!(
            std::env::var_os("QUEST_REQUIRE_BOOT").is_none(),
            "QUEST_REQUIRE_BOOT is set, but curl is missing (ci/setup.sh installs it)"
        );
        eprintln!("\n*** SKIPPED web boot test: curl is missing ***\n");
        return;
    }
    let built = build("web", "svm-web");
    let iso = built.iso.clone().expect("an ISO");
    let machine = run::machine_of(&built.elf).expect("a readable table");
    assert_eq!(machine.nics.count(), 1, "the table names one RTL8139");
    let port = free_port();
    let opts = RunOptions {
        forwards: vec![Forward {
            host: port,
            guest: 80,
        }],
        ..RunOptions::new(Some(Emulator::Qemu(Accel::Tcg)), common::BOOT_TIMEOUT)
    };
    // Dropping it (as a failing check does) ends QEMU.
    let boot = Background::start(&Workspace::locate(), iso, machine, opts);
    let wait_for = |wanted: &str| {
        if let Err(e) = boot.wait_for(wanted, LISTEN_TIMEOUT) {
            panic!("{e}:\n{}", boot.console());
        }
    };

    wait_for("[web] web: listening on port 80");
    let primes = first_primes(100);
    let list: Vec<String> = primes.iter().map(u64::to_string).collect();
    let table = format!(
        "<pre id=\"primes\">first 100 primes (sum {}): {}</pre>",
        primes.iter().sum::<u64>(),
        list.join(" ")
    );
    for n in 1..=PAGES {
        let (status, body) = curl(port, "/");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(&table), "request {n}: {body}");
        assert!(body.contains(&format!("<p>request {n}</p>")), "{body}");
    }
    // The attacker's three launches run meanwhile; the server keeps answering after.
    wait_for("[attacker] attacker: pci-config: ");
    assert_eq!(
        curl(port, "/prime/1000"),
        (200, "prime 1000 = 7919\n".into())
    );
    assert_eq!(curl(port, "/prime/0").0, 404);
    // The same answer from the table web holds (no hop; the benchmark compares the two).
    assert_eq!(curl(port, "/local/100"), (200, "prime 100 = 541\n".into()));
    let (status, body) = curl(port, "/");
    assert_eq!(status, 200);
    assert!(body.contains(&table), "{body}");
    assert_eq!(curl(port, "/quit"), (200, "bye\n".into()));

    let out = boot.finish().expect("QEMU runs");
    println!(
        "--- console ---\n{}--- end: {} ---",
        out.console,
        out.describe()
    );
    let c = &out.console;
    assert_line(c, "quest: AMD SVM with nested paging (");
    assert_line(c, "quest: device 00:02.0 (10ec:8139) -> sandbox 'web'");
    // The attacker's targets are the card's BARs (web.toml names them: QEMU's firmware
    // chose them; if it chooses others, update web.toml's attacker arguments).
    for bar in [
        format!("quest: device 00:02.0 BAR0 ports {NIC_IO_BAR:#x}-"),
        format!("quest: device 00:02.0 BAR1 {NIC_MEMORY_BAR:#x}+"),
    ] {
        assert!(
            c.lines()
                .any(|l| l.starts_with(&bar) && l.contains("-> sandbox 'web'")),
            "no {bar:?}: the firmware placed the card elsewhere, update web.toml's attacker: {c}"
        );
    }
    assert_line(c, "[compute] compute: sent the first 100 primes");
    assert_line(
        c,
        &format!("[web] web: answered {} requests, quitting", PAGES + 5),
    );
    assert_line(c, "[compute] compute: answered 2 requests, quitting");
    // quiet: no device, nothing on the bus.
    assert_line(c, "[quiet] pci-scan: 0 functions");
    assert!(!c.lines().any(|l| l.starts_with("[quiet] function")), "{c}");
    // attacker: each attack contained and reported, then restarted; the last one exits 0.
    assert!(!c.contains("NOT CONTAINED"), "an attack got through");
    assert_line(
        c,
        &format!(
            "[attacker] attacker: reading {NIC_MEMORY_BAR:#x} (another sandbox's device memory)"
        ),
    );
    assert_line(
        c,
        &format!("[attacker] attacker: out to port {NIC_IO_BAR:#x}, which is not ours"),
    );
    let restarts: Vec<&str> = reports(c, "attacker", "-> restarting").collect();
    assert_eq!(restarts.len(), 2, "{restarts:?}");
    assert!(
        restarts[0].contains("violation") && restarts[0].contains(&format!("{NIC_MEMORY_BAR:#x}")),
        "the BAR read was stopped for the wrong reason: {}",
        restarts[0]
    );
    assert!(
        restarts[1].contains(&format!("forbidden I/O port {NIC_IO_BAR:#x} (out)")),
        "{}",
        restarts[1]
    );
    assert_line(
        c,
        "[attacker] attacker: pci-config: 10ec:8139 not visible, 1024 config writes on bus 0 read back all ones, 0 functions visible after",
    );
    assert_line(c, "quest:   'attacker': exited 0, faults 2, launches 3");
    assert_passed(&out);
}
