//! The HTTP part of web-std: plain `std::io` over any stream, so it runs (and is tested)
//! on the host exactly as in the sandbox, where the stream is a `std::net::TcpStream`.
//!
//! One request per connection (`Connection: close`), `GET` only:
//! - `/`: an HTML page with the prime table the compute sandbox sent at start (in a
//!   `<pre id="primes">` element, verbatim) and the request's number;
//! - `/prime/K`: asks the compute sandbox (one message there and one back, the channel
//!   hop) and answers its reply as plain text;
//! - `/local/K`: the same answer (`prime K = P`) for K up to the table's length, looked up
//!   in the table this server already holds: the same request without the hop, which the
//!   benchmark compares with `/prime/K`;
//! - `/quit`: tells the compute sandbox to stop, answers `bye`, and the server ends.
//!
//! Anything else gets 404 (an unknown path), 405 (not `GET`) or 400 (not HTTP).

use std::io::{self, Read, Write};

/// The longest request head read (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;

/// Where the server's data comes from: the compute sandbox, over channels.
pub trait Backend {
    /// The prime table it sent at start.
    fn table(&self) -> &str;
    /// Sends `request` and waits for the reply.
    fn ask(&mut self, request: &str) -> Result<String, String>;
}

/// A request's method and path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `GET`, ...
    pub method: String,
    /// `/`, `/prime/7`, ...
    pub path: String,
}

/// What the client gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// 200, 400, 404, 405, 502.
    pub status: u16,
    /// `text/html` or `text/plain`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }

    /// The status line's reason phrase.
    pub fn reason(&self) -> &'static str {
        match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            502 => "Bad Gateway",
            _ => "Error",
        }
    }

    /// Writes status line, headers and body.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        let head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nServer: quest-web-std\r\n\r\n",
            self.status,
            self.reason(),
            self.content_type,
            self.body.len()
        );
        out.write_all(head.as_bytes())?;
        out.write_all(self.body.as_bytes())?;
        out.flush()
    }
}

/// Reads a request head (up to the blank line) from `input`; `None` for a connection
/// closed before a whole head arrived, an error for a head over [`MAX_HEAD`] bytes.
pub fn read_head(input: &mut impl Read) -> io::Result<Option<String>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    // Where the blank line may start that the bytes so far did not rule out.
    let mut from = 0;
    loop {
        if let Some(at) = head[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            head.truncate(from + at);
            return Ok(Some(String::from_utf8_lossy(&head).into_owned()));
        }
        from = head.len().saturating_sub(3);
        if head.len() > MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request head over 8 KiB",
            ));
        }
        let n = input.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&chunk[..n]);
    }
}

/// The request line of `head`: `METHOD PATH HTTP/1.x`.
pub fn parse(head: &str) -> Option<Request> {
    let line = head.lines().next()?;
    let mut words = line.split(' ');
    let (method, path, version) = (words.next()?, words.next()?, words.next()?);
    if words.next().is_some() || !version.starts_with("HTTP/1.") || !path.starts_with('/') {
        return None;
    }
    Some(Request {
        method: method.to_owned(),
        path: path.to_owned(),
    })
}

/// The page `/` shows: the table verbatim and the request's number.
pub fn page(table: &str, number: u64) -> String {
    format!(
        "<!doctype html>\n<html><head><title>Quest web</title></head><body>\n\
         <h1>Hello from a Quest sandbox</h1>\n\
         <p>Served by an ordinary std program (Hermit's std::net) on the RTL8139 this \
         sandbox owns; the numbers come from the compute sandbox over a channel.</p>\n\
         <pre id=\"primes\">{table}</pre>\n<p>request {number}</p>\n</body></html>\n"
    )
}

/// The response to `request` (the `number`-th served), and whether the server ends.
pub fn respond(request: &Request, backend: &mut impl Backend, number: u64) -> (Response, bool) {
    if request.method != "GET" {
        return (Response::text(405, "only GET\n"), false);
    }
    let path = request.path.split('?').next().unwrap_or("");
    if path == "/" {
        let html = Response {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: page(backend.table(), number),
        };
        return (html, false);
    }
    let hop = |backend: &mut dyn FnMut() -> Result<String, String>| match backend() {
        Ok(reply) if reply.starts_with("error:") => Response::text(404, reply + "\n"),
        Ok(reply) => Response::text(200, reply + "\n"),
        Err(e) => Response::text(502, format!("the compute sandbox: {e}\n")),
    };
    if path == "/quit" {
        return (hop(&mut || backend.ask("quit")), true);
    }
    if let Some(k) = path.strip_prefix("/local/") {
        return (local_prime(backend.table(), k), false);
    }
    if let Some(k) = path.strip_prefix("/prime/") {
        if !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()) {
            let ask = format!("prime {k}");
            return (hop(&mut || backend.ask(&ask)), false);
        }
    }
    (Response::text(404, format!("no page {path}\n")), false)
}

/// `/local/K`: the K-th prime from `table` (`first N primes (sum S): p1 p2 ...`), worded
/// as the compute sandbox words it.
fn local_prime(table: &str, k: &str) -> Response {
    let primes = table.split_once(':').map_or("", |(_, list)| list);
    match k.parse::<usize>() {
        Ok(n @ 1..) => match primes.split_whitespace().nth(n - 1) {
            Some(p) => Response::text(200, format!("prime {n} = {p}\n")),
            None => Response::text(404, format!("error: the table has fewer than {n} primes\n")),
        },
        _ => Response::text(404, format!("error: no prime number {k:?}\n")),
    }
}

/// What serving one connection did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Served {
    /// Answered with this status.
    Status(u16),
    /// The client closed before sending a request.
    Nothing,
    /// Answered `/quit`: the server ends.
    Quit,
}

/// Reads one request from `stream`, answers it, and says what happened.
pub fn serve(
    stream: &mut (impl Read + Write),
    backend: &mut impl Backend,
    number: u64,
) -> io::Result<Served> {
    let Some(head) = read_head(stream)? else {
        return Ok(Served::Nothing);
    };
    let Some(request) = parse(&head) else {
        Response::text(400, "not an HTTP/1 request\n").write_to(stream)?;
        return Ok(Served::Status(400));
    };
    let (response, quit) = respond(&request, backend, number);
    response.write_to(stream)?;
    Ok(if quit {
        Served::Quit
    } else {
        Served::Status(response.status)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A compute sandbox in memory: answers like `primes` does.
    struct Fake {
        asked: Vec<String>,
        down: bool,
    }

    impl Backend for Fake {
        fn table(&self) -> &str {
            "first 3 primes (sum 10): 2 3 5"
        }

        fn ask(&mut self, request: &str) -> Result<String, String> {
            self.asked.push(request.to_owned());
            if self.down {
                return Err("channel corrupt".into());
            }
            Ok(match request {
                "quit" => "bye".into(),
                "prime 3" => "prime 3 = 5".into(),
                _ => "error: K in `prime K` must be 1 to 3".into(),
            })
        }
    }

    fn fake() -> Fake {
        Fake {
            asked: Vec::new(),
            down: false,
        }
    }

    /// A connection: what the client sent, what the server wrote.
    struct Conn {
        input: io::Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl Read for Conn {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            // One byte at a time: the head must be found across reads.
            let n = buf.len().min(1);
            self.input.read(&mut buf[..n])
        }
    }

    impl Write for Conn {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn exchange(request: &str, backend: &mut Fake, number: u64) -> (Served, String) {
        let mut conn = Conn {
            input: io::Cursor::new(request.as_bytes().to_vec()),
            output: Vec::new(),
        };
        let served = serve(&mut conn, backend, number).expect("serves");
        (served, String::from_utf8(conn.output).unwrap())
    }

    const CURL: &str =
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";

    #[test]
    fn the_page_holds_the_table_and_the_request_number() {
        let mut b = fake();
        let (served, out) = exchange(CURL, &mut b, 7);
        assert_eq!(served, Served::Status(200));
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Content-Type: text/html"), "{head}");
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert!(head.contains("Connection: close"));
        assert!(body.contains("<pre id=\"primes\">first 3 primes (sum 10): 2 3 5</pre>"));
        assert!(body.contains("<p>request 7</p>"), "{body}");
        assert!(b.asked.is_empty(), "the page needs no hop");
    }

    #[test]
    fn prime_and_quit_cross_the_hop() {
        let mut b = fake();
        let (served, out) = exchange("GET /prime/3 HTTP/1.0\r\n\r\n", &mut b, 1);
        assert_eq!(served, Served::Status(200));
        assert!(out.ends_with("\r\n\r\nprime 3 = 5\n"), "{out}");
        let (served, out) = exchange("GET /prime/0 HTTP/1.1\r\n\r\n", &mut b, 2);
        assert_eq!(served, Served::Status(404));
        assert!(out.contains("error: K"), "{out}");
        let (served, out) = exchange("GET /quit HTTP/1.1\r\n\r\n", &mut b, 3);
        assert_eq!(served, Served::Quit);
        assert!(out.ends_with("bye\n"), "{out}");
        assert_eq!(b.asked, ["prime 3", "prime 0", "quit"]);
        // The same answer from the table, without the hop.
        let (served, out) = exchange("GET /local/3 HTTP/1.1\r\n\r\n", &mut b, 4);
        assert_eq!(served, Served::Status(200));
        assert!(out.ends_with("\r\n\r\nprime 3 = 5\n"), "{out}");
        for bad in ["/local/4", "/local/0", "/local/x", "/local/"] {
            let (served, _) = exchange(&format!("GET {bad} HTTP/1.1\r\n\r\n"), &mut b, 5);
            assert_eq!(served, Served::Status(404), "{bad}");
        }
        assert_eq!(b.asked.len(), 3, "no hop for /local");
        b.down = true;
        let (served, out) = exchange("GET /prime/3 HTTP/1.1\r\n\r\n", &mut b, 4);
        assert_eq!(served, Served::Status(502));
        assert!(out.contains("channel corrupt"), "{out}");
    }

    #[test]
    fn bad_requests_get_errors_not_panics() {
        let mut b = fake();
        for (request, status) in [
            ("POST / HTTP/1.1\r\n\r\n", 405),
            ("GET /nothing HTTP/1.1\r\n\r\n", 404),
            ("GET /prime/x HTTP/1.1\r\n\r\n", 404),
            ("GET /prime/ HTTP/1.1\r\n\r\n", 404),
            ("GET / SPDY/3\r\n\r\n", 400),
            ("GET\r\n\r\n", 400),
            ("GET  / HTTP/1.1\r\n\r\n", 400),
            ("\r\n\r\n", 400),
            ("GET nothing HTTP/1.1\r\n\r\n", 400),
        ] {
            let (served, out) = exchange(request, &mut b, 1);
            assert_eq!(served, Served::Status(status), "{request:?}: {out}");
            assert!(out.starts_with(&format!("HTTP/1.1 {status} ")), "{out}");
        }
        assert!(b.asked.is_empty());
        // Closed early, or a head that never ends.
        assert_eq!(exchange("GET / HTTP/1.1\r\n", &mut b, 1).0, Served::Nothing);
        let mut conn = Conn {
            input: io::Cursor::new(vec![b'a'; MAX_HEAD + 600]),
            output: Vec::new(),
        };
        assert!(serve(&mut conn, &mut b, 1).is_err());
        // The query string is ignored.
        assert_eq!(
            exchange("GET /?x=1 HTTP/1.1\r\n\r\n", &mut b, 1).0,
            Served::Status(200)
        );
    }
}
