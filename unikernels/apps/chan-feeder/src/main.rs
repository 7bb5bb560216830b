//! A well-behaved channel writer (`partition-manifests/channels-hostile.toml`): sends
//! `MESSAGES` mixed-size, numbered, checksummed messages on `healthy` and a few on
//! `to-scribbler`, then exits 0.
#![no_std]
#![no_main]

use chan_proto::hostile::{HEALTHY_SEED, SCRIBBLER_MESSAGES, SCRIBBLER_SEED};
use chan_proto::{make, MAX_LEN};
use quest_channel::Sender;
use quest_rt::{println, Ctx};

quest_rt::entry!(main, vcpu0_only);

fn main(ctx: &Ctx) -> i32 {
    let messages = chan_proto::number(ctx.args().var("MESSAGES"), 2000);
    let mut buf = [0u8; MAX_LEN];
    // The scribbler's few messages fit in its ring: we never wait on a reader that is
    // about to be stopped.
    let mut to_scribbler = match Sender::open("to-scribbler") {
        Ok(tx) => tx,
        Err(e) => {
            println!("feeder: cannot open to-scribbler: {e}");
            return 2;
        }
    };
    for seq in 0..SCRIBBLER_MESSAGES {
        let len = make(SCRIBBLER_SEED, seq, &mut buf);
        if let Err(e) = to_scribbler.try_send(&buf[..len]) {
            println!("feeder: to-scribbler message {seq}: {e}");
            return 1;
        }
    }
    let mut healthy = match Sender::open("healthy") {
        Ok(tx) => tx,
        Err(e) => {
            println!("feeder: cannot open healthy: {e}");
            return 2;
        }
    };
    let mut bytes = 0u64;
    for seq in 0..messages {
        let len = make(HEALTHY_SEED, seq, &mut buf);
        if let Err(e) = healthy.send(&buf[..len]) {
            println!("feeder: healthy message {seq}: {e}");
            return 1;
        }
        bytes += len as u64;
    }
    println!(
        "feeder: sent {messages} messages ({bytes} B) on healthy, {SCRIBBLER_MESSAGES} on to-scribbler"
    );
    0
}
