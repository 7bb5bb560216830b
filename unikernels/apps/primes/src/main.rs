//! The compute end of `partition-manifests/web.toml`: computes prime numbers for the web
//! server, which owns the network card and has them only from here, over channels.
//!
//! It sieves the first [`MAX_PRIMES`] primes, sends the first `TABLE` (default 100) to
//! `web` on `compute-to-web` as one text message,
//!
//! ```text
//! first 100 primes (sum 24133): 2 3 5 7 ... 541
//! ```
//!
//! and then answers requests from `web-to-compute`, one reply on `compute-to-web` each:
//! `prime K` (1-based) gets `prime K = P`, `quit` gets `bye` and ends it with status 0,
//! anything else gets `error: ...`. The web server forwards `GET /prime/K` this way, so
//! that request crosses the channel hop both ways (what the benchmark compares with a
//! page served from the server's own memory).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::Write;
use quest_channel::{Receiver, Sender};
use quest_rt::{println, Ctx};

quest_rt::entry!(main, vcpu0_only);

/// Primes computed (the 10 000th is 104 729).
const MAX_PRIMES: usize = 10_000;
/// A sieve this long holds the first [`MAX_PRIMES`] primes.
const SIEVE_LEN: usize = 104_730;
/// The longest request or reply.
const MAX_MESSAGE: usize = 256;

/// The first [`MAX_PRIMES`] primes (sieve of Eratosthenes).
fn first_primes() -> Vec<u32> {
    let mut composite = vec![false; SIEVE_LEN];
    let mut primes = Vec::with_capacity(MAX_PRIMES);
    for n in 2..SIEVE_LEN {
        if composite[n] {
            continue;
        }
        primes.push(n as u32);
        let mut m = n * n;
        while m < SIEVE_LEN {
            composite[m] = true;
            m += n;
        }
    }
    primes.truncate(MAX_PRIMES);
    primes
}

/// `first N primes (sum S): p1 p2 ...`
fn table(primes: &[u32]) -> String {
    let sum: u64 = primes.iter().map(|&p| u64::from(p)).sum();
    let mut text = format!("first {} primes (sum {sum}):", primes.len());
    for p in primes {
        let _ = write!(text, " {p}");
    }
    text
}

/// The reply to one request, and whether it was `quit`.
fn answer(request: &[u8], primes: &[u32]) -> (String, bool) {
    let Ok(request) = core::str::from_utf8(request) else {
        return (String::from("error: the request is not UTF-8"), false);
    };
    if request == "quit" {
        return (String::from("bye"), true);
    }
    let Some(k) = request.strip_prefix("prime ") else {
        return (format!("error: unknown request {request:?}"), false);
    };
    match k.parse::<usize>() {
        Ok(k @ 1..=MAX_PRIMES) => (format!("prime {k} = {}", primes[k - 1]), false),
        _ => (
            format!("error: K in `prime K` must be 1 to {MAX_PRIMES}, not {k:?}"),
            false,
        ),
    }
}

fn main(ctx: &Ctx) -> i32 {
    let count = ctx
        .args()
        .var("TABLE")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(100)
        .clamp(1, MAX_PRIMES);
    let (mut tx, mut rx) = match (
        Sender::open("compute-to-web"),
        Receiver::open("web-to-compute"),
    ) {
        (Ok(tx), Ok(rx)) => (tx, rx),
        (Err(e), _) | (_, Err(e)) => {
            println!("compute: cannot open the channels: {e}");
            return 2;
        }
    };
    let primes = first_primes();
    let text = table(&primes[..count]);
    if let Err(e) = tx.send(text.as_bytes()) {
        println!("compute: sending the table: {e}");
        return 1;
    }
    println!(
        "compute: sent the first {count} primes ({} bytes) to web",
        text.len()
    );
    let mut buf = [0u8; MAX_MESSAGE];
    let mut answered = 0u64;
    loop {
        let len = match rx.recv(&mut buf) {
            Ok(len) => len,
            Err(e) => {
                println!("compute: receiving a request: {e}");
                return 1;
            }
        };
        let (reply, quit) = answer(&buf[..len], &primes);
        if let Err(e) = tx.send(reply.as_bytes()) {
            println!("compute: replying: {e}");
            return 1;
        }
        if quit {
            println!("compute: answered {answered} requests, quitting");
            return 0;
        }
        answered += 1;
    }
}
