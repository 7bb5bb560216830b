//! The Hermit endpoint of `partition-manifests/bounds.toml`, an ordinary std program:
//! `bounds-std spin CHANNEL` reads `COUNT` messages of stream `SEED` spinning,
//! `bounds-std burst CHANNEL` writes them in bursts of `BURST` (see `chan_proto::bounds`).
//!
//! It needs a Quest Hermit sandbox (the channel directory exists only there); built for
//! any other OS (the host lints it) it says so and exits with status 2.

use chan_proto::bounds::{Reader, Writer};
use chan_proto::number;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let var = |name: &str, default: u64| number(std::env::var(name).ok().as_deref(), default);
    let role = args.first().map_or("", String::as_str);
    let channel = args.get(1).map_or("", String::as_str);
    let (count, seed) = (var("COUNT", 1000), var("SEED", 1));
    let result = match role {
        "burst" => run_writer(channel, seed, count, Writer::Burst(var("BURST", 8))),
        "spin" => run_reader(channel, seed, count),
        other => Err(format!("unknown role {other:?} (burst or spin)")),
    };
    match result {
        Ok(done) => println!("{role} {channel}: {done}"),
        Err(e) => {
            println!("{role} {channel}: FAILED: {e}");
            std::process::exit(if cfg!(target_os = "hermit") { 1 } else { 2 });
        }
    }
}

#[cfg(target_os = "hermit")]
fn run_writer(channel: &str, seed: u64, count: u64, how: Writer) -> Result<String, String> {
    let mut tx =
        quest_channel::Sender::open(channel).map_err(|e| format!("cannot open {channel}: {e}"))?;
    chan_proto::bounds::write(&mut tx, seed, count, how)
}

#[cfg(target_os = "hermit")]
fn run_reader(channel: &str, seed: u64, count: u64) -> Result<String, String> {
    let mut rx = quest_channel::Receiver::open(channel)
        .map_err(|e| format!("cannot open {channel}: {e}"))?;
    chan_proto::bounds::read(&mut rx, seed, count, Reader::Blocking)
}

#[cfg(not(target_os = "hermit"))]
fn run_writer(_: &str, _: u64, _: u64, _: Writer) -> Result<String, String> {
    Err("needs a Quest Hermit sandbox with channels".into())
}

#[cfg(not(target_os = "hermit"))]
fn run_reader(_: &str, _: u64, _: u64) -> Result<String, String> {
    let _ = Reader::Blocking;
    Err("needs a Quest Hermit sandbox with channels".into())
}
