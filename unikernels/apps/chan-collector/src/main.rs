//! A reader with one healthy and two hostile channels
//! (`partition-manifests/channels-hostile.toml`).
//!
//! It polls all three and verifies every message (in order, checksum). A hostile channel
//! must deliver its valid messages and then report `Corrupt`, which the collector prints
//! and closes; it must finish the healthy channel regardless, and exits 0 only if all of
//! that happened.
#![no_std]
#![no_main]

use chan_proto::hostile::{HEALTHY_SEED, HOSTILE_CHANNELS, HOSTILE_SEED, VALID_BEFORE_SCRIBBLE};
use chan_proto::{verify, MAX_LEN};
use quest_channel::{Receiver, RecvError};
use quest_rt::time::rdtsc;
use quest_rt::{println, Ctx};

quest_rt::entry!(main, vcpu0_only);

/// How long to wait for the hostile channels' errors once the healthy one is done.
const HOSTILE_TIMEOUT: u64 = 2_000_000_000;

/// One channel being read.
struct Inbound {
    name: &'static str,
    rx: Receiver,
    seed: u64,
    /// Messages received and verified.
    verified: u64,
    /// The error that closed it.
    error: Option<RecvError>,
}

impl Inbound {
    fn open(name: &'static str, seed: u64) -> Result<Self, i32> {
        match Receiver::open(name) {
            Ok(rx) => Ok(Self {
                name,
                rx,
                seed,
                verified: 0,
                error: None,
            }),
            Err(e) => {
                println!("collector: cannot open {name}: {e}");
                Err(2)
            }
        }
    }

    /// Takes at most one message; `Err` if it fails verification.
    fn poll(&mut self, buf: &mut [u8]) -> Result<(), ()> {
        if self.error.is_some() {
            return Ok(());
        }
        match self.rx.try_recv(buf) {
            Ok(Some(n)) => match verify(self.seed, self.verified, &buf[..n]) {
                Ok(()) => {
                    self.verified += 1;
                    Ok(())
                }
                Err(e) => {
                    println!(
                        "collector: {}: message {} garbled: {e}",
                        self.name, self.verified
                    );
                    Err(())
                }
            },
            Ok(None) => Ok(()),
            Err(e) => {
                println!(
                    "collector: {}: error after {} verified messages: {e}",
                    self.name, self.verified
                );
                self.error = Some(e);
                Ok(())
            }
        }
    }
}

fn main(ctx: &Ctx) -> i32 {
    let messages = chan_proto::number(ctx.args().var("MESSAGES"), 2000);
    let mut healthy = match Inbound::open("healthy", HEALTHY_SEED) {
        Ok(c) => c,
        Err(status) => return status,
    };
    let mut hostile = [
        match Inbound::open(HOSTILE_CHANNELS[0].0, HOSTILE_SEED) {
            Ok(c) => c,
            Err(status) => return status,
        },
        match Inbound::open(HOSTILE_CHANNELS[1].0, HOSTILE_SEED) {
            Ok(c) => c,
            Err(status) => return status,
        },
    ];
    let mut buf = [0u8; MAX_LEN];
    let mut healthy_done_at = None;
    loop {
        if healthy.verified < messages && healthy.poll(&mut buf).is_err() {
            return 1;
        }
        for c in &mut hostile {
            if c.poll(&mut buf).is_err() {
                return 1;
            }
        }
        if healthy.error.is_some() {
            return 1;
        }
        if healthy.verified == messages {
            let done = *healthy_done_at.get_or_insert_with(|| {
                println!("collector: healthy: {messages} messages verified in order");
                rdtsc()
            });
            if hostile.iter().all(|c| c.error.is_some()) {
                break;
            }
            if rdtsc().wrapping_sub(done) > HOSTILE_TIMEOUT {
                for c in hostile.iter().filter(|c| c.error.is_none()) {
                    println!("collector: {}: never reported an error", c.name);
                }
                return 1;
            }
        }
        core::hint::spin_loop();
    }
    let honest = hostile
        .iter()
        .all(|c| c.verified == VALID_BEFORE_SCRIBBLE && c.error == Some(RecvError::Corrupt));
    println!(
        "collector: done: healthy {} verified, hostile channels closed as corrupt: {}",
        healthy.verified,
        if honest { "both" } else { "NOT AS EXPECTED" }
    );
    if honest {
        0
    } else {
        1
    }
}
