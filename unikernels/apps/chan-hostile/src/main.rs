//! A hostile channel writer (`partition-manifests/channels-hostile.toml`).
//!
//! On each channel of [`chan_proto::hostile::HOSTILE_CHANNELS`] it first sends
//! [`VALID_BEFORE_SCRIBBLE`] valid messages, waits until the reader has taken them, and
//! then scribbles over the ring in its data area (which it may write: it is the writer):
//! `hostile-index` gets a write index more than a ring ahead of the reader, and
//! `hostile-length` a published record whose header claims an impossible length. The
//! reader must report the channel corrupt and go on with its other channels.
#![no_std]
#![no_main]

use chan_proto::hostile::{HOSTILE_CHANNELS, HOSTILE_SEED, VALID_BEFORE_SCRIBBLE};
use chan_proto::{make, MAX_LEN};
use core::sync::atomic::{AtomicU64, Ordering};
use quest_channel::wire::{record_header, RING_HEADER_SIZE, WORD};
use quest_channel::Sender;
use quest_rt::time::rdtsc;
use quest_rt::{println, Ctx};

quest_rt::entry!(main, vcpu0_only);

/// How long to wait for the reader to take the valid messages (TSC cycles).
const READER_TIMEOUT: u64 = 2_000_000_000;

fn main(ctx: &Ctx) -> i32 {
    for (name, what) in HOSTILE_CHANNELS {
        if let Err(e) = attack(ctx, name) {
            println!("hostile: {name}: {e}");
            return 1;
        }
        println!(
            "hostile: {name}: sent {VALID_BEFORE_SCRIBBLE} valid messages, then scribbled: {what}"
        );
    }
    0
}

/// A shared word of the channel at `gpa`.
fn word(gpa: u64) -> &'static AtomicU64 {
    // SAFETY: callers pass 8-byte aligned addresses inside this sandbox's channel areas
    // (from its directory), which stay mapped for its life and are only ever accessed with
    // atomic operations (the channel protocol); reading our peer's area is allowed.
    unsafe { AtomicU64::from_ptr(gpa as *mut u64) }
}

fn attack(ctx: &Ctx, name: &str) -> Result<(), &'static str> {
    let entry = ctx.channel(name).ok_or("not a channel of this sandbox")?;
    let (data, data_size, ack) = (
        entry.data_gpa.get(),
        entry.data_size.get(),
        entry.ack_gpa.get(),
    );
    let mut tx = Sender::open(name).map_err(|_| "cannot open it as its writer")?;
    let mut buf = [0u8; MAX_LEN];
    for seq in 0..VALID_BEFORE_SCRIBBLE {
        let len = make(HOSTILE_SEED, seq, &mut buf);
        tx.send(&buf[..len])
            .map_err(|_| "sending a valid message failed")?;
    }
    drop(tx);
    // Wait until the reader consumed everything, so what it sees next is the scribble.
    let write = word(data).load(Ordering::Relaxed);
    let start = rdtsc();
    while word(ack).load(Ordering::Acquire) != write {
        if rdtsc().wrapping_sub(start) > READER_TIMEOUT {
            return Err("the reader never took the valid messages");
        }
        core::hint::spin_loop();
    }
    let ring = (data_size - RING_HEADER_SIZE as u64) / WORD as u64 * WORD as u64;
    if name == "hostile-index" {
        word(data).store(write + ring + 64, Ordering::Release);
    } else {
        let at = data + RING_HEADER_SIZE as u64 + write % ring;
        word(at).store(record_header(0xffff_ff00), Ordering::Relaxed);
        word(data).store(write + 2 * WORD as u64, Ordering::Release);
    }
    Ok(())
}
