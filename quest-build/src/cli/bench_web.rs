//! The web rows of `quest-build bench` (`QUEST_BENCH_ONLY=web` for only these): HTTP
//! requests per second and latency (median, p99) from this machine to web.toml's server,
//! a Hermit sandbox answering on the RTL8139 it owns, through QEMU's user network and
//! `--forward`'s port forward.
//!
//! Three requests, interleaved: `GET /` (the page, from the server's memory),
//! `GET /local/100` (`prime 100 = 541`, looked up in the table the server holds) and
//! `GET /prime/100` (the same answer, but the server asks the compute sandbox over a
//! channel and waits for its reply: one channel hop there and back on the request's
//! path). The last two differ only by the hop: what isolating the computation in its own
//! sandbox costs a request. The monitor's per-channel latency lines give the hop's two
//! legs inside the guest as well.
//!
//! The client is a plain `std::net::TcpStream` here: one request per connection, one at a
//! time (what `curl` in a loop does, without a process per request), so a request's
//! latency is connect to last byte, and requests per second is their inverse. In QEMU's
//! software emulation everything the guest does is emulated (the NIC, the monitor, the
//! TCP stack), so these are emulator numbers: the row says which emulator ran it.

use crate::build::{Progress, Workspace};
use crate::image::{self, ImageRequest};
use crate::run::background::Background;
use crate::run::network::Forward;
use crate::run::{self, RunOptions};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Bench rows: (metric, value).
pub type Rows = Vec<(String, String)>;

/// Requests of each kind that are timed (after [`WARMUP`] untimed ones).
pub const REQUESTS: usize = 200;
/// Untimed requests first (ARP, caches, the first connection's setup).
pub const WARMUP: usize = 5;
/// How long the system may take to listen.
const LISTEN: Duration = Duration::from_secs(300);
/// One request's limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether `QUEST_BENCH_ONLY=web` asks for only these rows.
pub fn only() -> bool {
    std::env::var_os("QUEST_BENCH_ONLY").is_some_and(|v| v == "web")
}

/// Median and 99th percentile (nearest rank) of `samples`; zero for none.
pub fn median_p99(samples: &[Duration]) -> (Duration, Duration) {
    if samples.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = |p: usize| sorted[(sorted.len() * p).div_ceil(100).clamp(1, sorted.len()) - 1];
    (rank(50), rank(99))
}

/// One `GET path` on a new connection to 127.0.0.1:`port`: (latency, body). An error
/// unless the answer is a 200 whose body is all there (`Content-Length`).
pub fn get(port: u16, path: &str) -> Result<(Duration, String), String> {
    let started = Instant::now();
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(REQUEST_TIMEOUT)))
        .map_err(|e| format!("timeouts: {e}"))?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("sending GET {path}: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("reading the answer to GET {path}: {e}"))?;
    let latency = started.elapsed();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: no HTTP answer: {answer:?}"))?;
    if !head.starts_with("HTTP/1.1 200 ") {
        return Err(format!("GET {path}: {}", head.lines().next().unwrap_or("")));
    }
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|n| n.trim().parse::<usize>().ok());
    if length != Some(body.len()) {
        return Err(format!(
            "GET {path}: {} body bytes, Content-Length {length:?}",
            body.len()
        ));
    }
    Ok((latency, body.to_owned()))
}

/// `REQUESTS` timed rounds after `WARMUP` untimed ones; a round is one `GET` of each of
/// `paths` in turn (interleaved, so that a slower stretch of the emulator hits all alike),
/// and each body must contain its `expect`. Per path: its latencies.
fn measure_paths(port: u16, paths: &[(&str, &str)]) -> Result<Vec<Vec<Duration>>, String> {
    let mut latencies = vec![Vec::with_capacity(REQUESTS); paths.len()];
    for round in 0..WARMUP + REQUESTS {
        for (i, (path, expect)) in paths.iter().enumerate() {
            let (latency, body) = get(port, path)?;
            if !body.contains(expect) {
                return Err(format!("GET {path}: {expect:?} not in {body:?}"));
            }
            if round >= WARMUP {
                latencies[i].push(latency);
            }
        }
    }
    Ok(latencies)
}

/// A row's value: requests/s (one at a time), median and p99 latency.
fn describe(latencies: &[Duration]) -> String {
    let total: Duration = latencies.iter().sum();
    let (median, p99) = median_p99(latencies);
    let per_s = latencies.len() as f64 / total.as_secs_f64().max(1e-9);
    format!(
        "{per_s:.1} requests/s, latency median {:.2} ms, p99 {:.2} ms ({} requests, one per connection)",
        ms(median),
        ms(p99),
        latencies.len()
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Builds web.toml, boots it in QEMU with a forward to a free port, measures both request
/// kinds, and asks the server to quit.
pub fn measure(ws: &Workspace, timeout: Duration) -> Result<Rows, String> {
    if let Some(missing) = run::host::qemu_missing() {
        return Ok(vec![(
            "web: HTTP from the host".into(),
            format!("not measured: {missing}"),
        )]);
    }
    let req = ImageRequest {
        manifest: ws.root.join("partition-manifests").join("web.toml"),
        iso: Some(ws.images().join("bench").join("web.iso")),
        make_iso: true,
    };
    let built = image::build_image(ws, &req, &Progress::stderr()).map_err(|e| match e {
        image::ImageError::Manifest(d) => d.render(false),
        other => other.to_string(),
    })?;
    let iso = built.iso.ok_or("no ISO was built")?;
    let machine = run::machine_of(&built.elf).map_err(|e| e.to_string())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("finding a free port: {e}"))?
        .port();
    let emulator = run::default_emulator(false);
    let opts = RunOptions {
        forwards: vec![Forward {
            host: port,
            guest: 80,
        }],
        ..RunOptions::new(Some(emulator), timeout)
    };
    let boot = Background::start(ws, iso, machine, opts);
    // Timed once the attacker and the quiet scan are done: in QEMU's software emulation
    // their hundreds of thousands of port exits would take turns with the server's vCPU.
    for line in [
        "[web] web: listening on port 80",
        "quest: sandbox 'quiet' exited",
        "quest: sandbox 'attacker' exited",
    ] {
        boot.wait_for(line, LISTEN)
            .map_err(|e| format!("{e}; console:\n{}", boot.console()))?;
    }
    let measured = measure_paths(
        port,
        &[
            ("/", "first 100 primes (sum 24133)"),
            ("/local/100", "prime 100 = 541"),
            ("/prime/100", "prime 100 = 541"),
        ],
    )?;
    get(port, "/quit")?;
    let outcome = boot.finish().map_err(|e| e.to_string())?;
    let (local, _) = median_p99(&measured[1]);
    let (hop, _) = median_p99(&measured[2]);
    let mut rows = vec![
        (
            format!("web: GET / from the host ({emulator}, RTL8139, user network)"),
            describe(&measured[0]),
        ),
        (
            "web: GET /local/100 (answered from the server's memory)".into(),
            describe(&measured[1]),
        ),
        (
            "web: GET /prime/100 (the same answer through a channel hop to compute and back)"
                .into(),
            describe(&measured[2]),
        ),
        (
            "web: the channel hop's share of a request (median /prime - /local)".into(),
            format!("{:+.2} ms", ms(hop) - ms(local)),
        ),
    ];
    rows.push((
        "web: the channel hop inside the guest (monitor's per-message latency)".into(),
        hop_in_guest(&outcome.console),
    ));
    if !outcome.passed() {
        rows.push(("web: the system's end".into(), outcome.describe()));
    }
    Ok(rows)
}

/// The hop's two one-way legs as the channels' readers recorded them (stamp to `recv`
/// returning, `quest: latency` lines): the mean per request of `web-to-compute`, and of
/// `compute-to-web` without its worst message, the table compute sent at start (which
/// waited there until web started).
pub fn hop_in_guest(console: &str) -> String {
    use crate::run::console::{records, Record};
    let latency = |name: &str| {
        records(console).find_map(|r| match r {
            Record::ChannelLatency { channel, latency } if channel == name => Some(latency),
            _ => None,
        })
    };
    let khz = super::bench_hermit::tsc_khz(console).unwrap_or(0);
    let (Some(request), Some(reply)) = (latency("web-to-compute"), latency("compute-to-web"))
    else {
        return "not reported (no latency lines for web's channels)".into();
    };
    let mean = |total: u64, n: u64| total.checked_div(n).unwrap_or(0);
    let request_mean = mean(request.total, request.messages);
    let reply_mean = mean(
        reply.total.wrapping_sub(reply.worst),
        reply.messages.saturating_sub(1),
    );
    let us = |cycles: u64| {
        if khz == 0 {
            String::new()
        } else {
            format!(" = {:.2} us", cycles as f64 * 1000.0 / khz as f64)
        }
    };
    format!(
        "request leg {request_mean} cycles{} ({} messages), reply leg {reply_mean} cycles{} ({} messages), TSC {khz} kHz",
        us(request_mean),
        request.messages,
        us(reply_mean),
        reply.messages.saturating_sub(1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p99_by_nearest_rank() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|&m| Duration::from_millis(m))
                .collect::<Vec<_>>()
        };
        assert_eq!(median_p99(&[]), (Duration::ZERO, Duration::ZERO));
        let one = ms(&[7]);
        assert_eq!(median_p99(&one), (one[0], one[0]));
        // 1..=100 in any order: the 50th and the 99th.
        let mut hundred: Vec<u64> = (1..=100).rev().collect();
        hundred.swap(3, 70);
        assert_eq!(
            median_p99(&ms(&hundred)),
            (Duration::from_millis(50), Duration::from_millis(99))
        );
        // 200 samples: p99 is the 198th, so two outliers show, one does not.
        let mut many = vec![1u64; 198];
        many.extend([500, 900]);
        assert_eq!(median_p99(&ms(&many)).1, Duration::from_millis(1));
        many[0] = 400;
        assert_eq!(median_p99(&ms(&many)).1, Duration::from_millis(400));
    }

    #[test]
    fn the_hop_is_read_from_the_latency_lines() {
        let console = "quest: TSC 1000000 kHz (measured against the PIT)\n\
            quest: latency 'compute-to-web': 3 messages, worst 5000000, total 5004000, early 0 cycles; buckets 11:2,23:1\n\
            quest: latency 'web-to-compute': 2 messages, worst 3000, total 5000, early 0 cycles; buckets 11:1,12:1\n";
        assert_eq!(
            hop_in_guest(console),
            "request leg 2500 cycles = 2.50 us (2 messages), reply leg 2000 cycles = 2.00 us (2 messages), TSC 1000000 kHz"
        );
        assert!(hop_in_guest("").starts_with("not reported"));
    }

    #[test]
    fn a_request_to_a_closed_port_is_an_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        assert!(get(port, "/").unwrap_err().starts_with("connect: "));
    }

    #[test]
    fn get_checks_status_and_length() {
        let serve = |answer: &'static str| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let server = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                s.write_all(answer.as_bytes()).unwrap();
            });
            let got = get(port, "/x");
            server.join().unwrap();
            got
        };
        let ok = serve("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
        assert_eq!(ok.unwrap().1, "hi");
        let short = serve("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhi");
        assert!(short.unwrap_err().contains("2 body bytes"));
        let missing = serve("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(missing.unwrap_err(), "GET /x: HTTP/1.1 404 Not Found");
    }
}
