//! A channel reader that turns on its channel (`partition-manifests/channels-hostile.toml`).
//!
//! It receives and verifies a few messages on `to-scribbler`, then tries to write into
//! that channel's data area, which EPT maps read-only for the reader. It first makes the
//! page writable in its own page tables, so that only EPT stands in the way; the monitor
//! must stop it (an EPT violation, reported on the console) while the others finish.
#![no_std]
#![no_main]

extern crate alloc;

use chan_proto::hostile::{SCRIBBLER_MESSAGES, SCRIBBLER_SEED};
use chan_proto::{verify, MAX_LEN};
use quest_channel::Receiver;
use quest_rt::console::not_contained;
use quest_rt::{println, Ctx};

quest_rt::entry!(main, vcpu0_only);

fn main(ctx: &Ctx) -> i32 {
    let mut rx = match Receiver::open("to-scribbler") {
        Ok(rx) => rx,
        Err(e) => {
            println!("scribbler: cannot open to-scribbler: {e}");
            return 2;
        }
    };
    let mut buf = [0u8; MAX_LEN];
    for seq in 0..SCRIBBLER_MESSAGES {
        let checked = rx
            .recv(&mut buf)
            .map_err(|e| alloc::format!("{e}"))
            .and_then(|n| {
                verify(SCRIBBLER_SEED, seq, &buf[..n]).map_err(|e| alloc::format!("{e}"))
            });
        if let Err(e) = checked {
            println!("scribbler: to-scribbler message {seq}: {e}");
            return 1;
        }
    }
    let Some(gpa) = ctx.channel("to-scribbler").map(|e| e.data_gpa.get()) else {
        println!("scribbler: to-scribbler is not in the directory");
        return 2;
    };
    if let Err(e) = quest_rt::paging::make_writable(gpa) {
        println!("scribbler: cannot edit our page tables: {e}");
        return 2;
    }
    println!(
        "scribbler: {SCRIBBLER_MESSAGES} messages verified; now writing the data area of to-scribbler at {gpa:#x} (read-only for us)"
    );
    // SAFETY: deliberately unsound: EPT maps this page read-only for the reader, so the
    // monitor stops us here; the write never happens.
    unsafe { (gpa as *mut u64).write_volatile(u64::MAX) };
    not_contained("scribbler", "wrote the data area of to-scribbler")
}
