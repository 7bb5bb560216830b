//! The web server of `partition-manifests/web.toml`: an ordinary std program that listens
//! with `std::net::TcpListener` and answers HTTP (see the library for the pages). Its
//! sandbox owns the network card (an RTL8139), so Hermit's own driver and TCP/IP stack
//! carry the connections; nothing here is Quest-specific except where its data comes from:
//! the compute sandbox, over the channels `compute-to-web` and `web-to-compute`
//! (`quest-channel`, as every std program on Quest talks to other sandboxes).
//!
//! Prints `web: listening on port P` once it accepts connections (what a client waits
//! for), and ends with status 0 after answering `GET /quit`.
//!
//! `PORT` (default 80) is the port; the address is Hermit's (`HERMIT_IP` in the
//! manifest's env). Built for any other OS (the host lints it) it says it needs a Quest
//! Hermit sandbox and exits with status 2.

use std::net::TcpListener;
use web_std::{serve, Backend, Served};

fn main() {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(80);
    let mut compute = match compute::open() {
        Ok(c) => c,
        Err(e) => {
            println!("web: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "web: received {} bytes from compute: {}",
        compute.table().len(),
        compute.table().split(':').next().unwrap_or("")
    );
    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(e) => {
            println!("web: cannot listen on port {port}: {e}");
            std::process::exit(1);
        }
    };
    println!("web: listening on port {port}");
    let mut answered = 0u64;
    for stream in listener.incoming() {
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                println!("web: accept: {e}");
                continue;
            }
        };
        match serve(&mut stream, &mut compute, answered + 1) {
            Ok(Served::Status(_)) => answered += 1,
            Ok(Served::Nothing) => {}
            Ok(Served::Quit) => {
                answered += 1;
                break;
            }
            Err(e) => println!("web: request failed: {e}"),
        }
    }
    println!("web: answered {answered} requests, quitting");
}

/// The compute sandbox behind its two channels.
#[cfg(target_os = "hermit")]
mod compute {
    use quest_channel::{Receiver, Sender};

    /// The largest message compute sends (its table of up to 10 000 primes is ~60 KB;
    /// the channel's ring bounds it anyway).
    const MAX_MESSAGE: usize = 64 * 1024;

    /// Both channels and the table compute sent first.
    pub struct Compute {
        tx: Sender,
        rx: Receiver,
        buf: Vec<u8>,
        table: String,
    }

    /// Opens the channels and waits for the table.
    pub fn open() -> Result<Compute, String> {
        let tx = Sender::open("web-to-compute").map_err(|e| format!("web-to-compute: {e}"))?;
        let mut rx =
            Receiver::open("compute-to-web").map_err(|e| format!("compute-to-web: {e}"))?;
        let mut buf = vec![0u8; MAX_MESSAGE];
        let len = rx
            .recv(&mut buf)
            .map_err(|e| format!("receiving the table: {e}"))?;
        let table = String::from_utf8_lossy(&buf[..len]).into_owned();
        Ok(Compute { tx, rx, buf, table })
    }

    impl web_std::Backend for Compute {
        fn table(&self) -> &str {
            &self.table
        }

        fn ask(&mut self, request: &str) -> Result<String, String> {
            self.tx
                .send(request.as_bytes())
                .map_err(|e| format!("sending: {e}"))?;
            let len = self
                .rx
                .recv(&mut self.buf)
                .map_err(|e| format!("receiving: {e}"))?;
            Ok(String::from_utf8_lossy(&self.buf[..len]).into_owned())
        }
    }
}

/// No channels outside a Quest Hermit sandbox.
#[cfg(not(target_os = "hermit"))]
mod compute {
    /// Never built: [`open`] always fails here.
    pub enum Compute {}

    pub fn open() -> Result<Compute, String> {
        Err(
            "needs a Quest Hermit sandbox with the channels compute-to-web and web-to-compute"
                .into(),
        )
    }

    impl web_std::Backend for Compute {
        fn table(&self) -> &str {
            match *self {}
        }

        fn ask(&mut self, _request: &str) -> Result<String, String> {
            match *self {}
        }
    }
}
