//! The operating endpoint (`mechanism-y --http ADDR`): a small HTTP/1.1 server on `std::net`
//! that serves the run's [`Telemetry`] on fixed routes ([`routes`]).
//!
//! It cannot hurt the run: it runs on threads of its own (an accept thread and one thread per
//! connection), only reads the telemetry, and bounds everything a client can make it do:
//! - GET and HEAD only (405 otherwise); fixed routes only (404 otherwise: no file is served);
//! - at most [`MAX_CONNECTIONS`] open connections: one more is closed at once;
//! - a request head of at most [`MAX_HEAD`] bytes (431 beyond), read within
//!   [`REQUEST_TIMEOUT`] (408 after it; an idle connection is closed);
//! - one request per connection (`Connection: close`).
//!
//! A bare port (`9464`) binds the loopback interface; another interface must be named.

pub mod routes;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::http::routes::{route, Response};
use crate::telemetry::Telemetry;

/// The most connections served at once.
pub const MAX_CONNECTIONS: usize = 32;

/// The longest request head (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;

/// The time a client has to send its request head (and for an idle connection).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// After a refusal, how long and how much of the client's rest is read before closing.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;

/// The time a client has to take the response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// A running endpoint; dropping it stops accepting (connections in flight finish alone).
pub struct HttpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// `PORT` = loopback; `HOST:PORT` or `[V6]:PORT` as given.
pub fn parse_addr(text: &str) -> Result<SocketAddr> {
    let bad = |why: String| Error::configuration(format!("--http {text:?}: {why}"));
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.to_socket_addrs()
        .map_err(|e| bad(format!("not an address (PORT or HOST:PORT): {e}")))?
        .next()
        .ok_or_else(|| bad("the host has no address".into()))
}

impl HttpServer {
    /// Binds `addr` and serves `telemetry` from a thread of its own.
    pub fn start(addr: SocketAddr, telemetry: Arc<Telemetry>) -> Result<HttpServer> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| Error::configuration(format!("--http {addr}: cannot listen: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::internal(format!("--http {addr}: {e}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || accept_all(&listener, &telemetry, &stopped))
            .map_err(|e| Error::internal(format!("starting the HTTP thread: {e}")))?;
        tracing::info!(%addr, "operating endpoint listening (/metrics, /api/status, /healthz, /readyz)");
        Ok(HttpServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on (with the port chosen when `:0` was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept call; it sees the flag and returns.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Counts an open connection until dropped.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn accept_all(listener: &TcpListener, telemetry: &Arc<Telemetry>, stop: &AtomicBool) {
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else {
            // Out of descriptors, say: do not spin.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        if open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::SeqCst);
            let _ = stream.shutdown(Shutdown::Both);
            continue;
        }
        let slot = Slot(open.clone());
        let telemetry = telemetry.clone();
        let spawned = std::thread::Builder::new()
            .name("http-conn".into())
            .spawn(move || {
                let _slot = slot;
                serve(stream, &telemetry);
            });
        if let Err(e) = spawned {
            tracing::warn!("HTTP endpoint: cannot start a connection thread: {e}");
        }
    }
}

/// What reading a request head gave.
enum Head {
    Complete(Vec<u8>),
    TooLarge,
    TimedOut,
    /// Closed, or idle until the timeout: nothing to answer.
    Gone,
}

/// Reads up to the blank line ending the head, within [`REQUEST_TIMEOUT`] and [`MAX_HEAD`].
fn read_head(stream: &mut TcpStream) -> Head {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return if head.is_empty() {
                Head::Gone
            } else {
                Head::TimedOut
            };
        }
        let n = match stream.read(&mut buf) {
            Ok(0) => return Head::Gone,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return if head.is_empty() {
                    Head::Gone
                } else {
                    Head::TimedOut
                };
            }
            Err(_) => return Head::Gone,
        };
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = find_end(&head) {
            head.truncate(end);
            return Head::Complete(head);
        }
        if head.len() > MAX_HEAD {
            return Head::TooLarge;
        }
    }
}

/// Where the head ends (after its blank line), if it does.
fn find_end(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    crlf.into_iter()
        .chain(lf)
        .min()
        .filter(|end| *end <= MAX_HEAD)
}

/// A request line: `METHOD SP TARGET SP HTTP/1.x`; `None` when malformed.
fn request_line(head: &[u8]) -> Option<(&str, &str)> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let token = !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase());
    let target_ok = target.starts_with('/') && target.bytes().all(|b| b.is_ascii_graphic());
    let version_ok = matches!(version, "HTTP/1.0" | "HTTP/1.1");
    (parts.next().is_none() && token && target_ok && version_ok).then_some((method, target))
}

/// Serves one request on `stream`, then closes it.
fn serve(mut stream: TcpStream, telemetry: &Telemetry) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let (response, head_only) = match read_head(&mut stream) {
        Head::Gone => return,
        Head::TimedOut => (
            Response::text(408, "request head not received in time"),
            false,
        ),
        Head::TooLarge => (Response::text(431, "request head too large"), false),
        Head::Complete(head) => match request_line(&head) {
            None => (Response::text(400, "malformed request line"), false),
            Some(("GET", target)) => (route(telemetry, target), false),
            Some(("HEAD", target)) => (route(telemetry, target), true),
            Some(_) => (Response::text(405, "only GET and HEAD"), false),
        },
    };
    let _ = write_response(&mut stream, &response, head_only);
    let _ = stream.shutdown(Shutdown::Write);
    // Refused before its end was read: the client may still be sending.
    if matches!(response.status, 400 | 405 | 408 | 431) {
        linger(&mut stream);
    }
}

/// After refusing a request: reads (bounded) what the client still sends, so that closing
/// does not reset the connection before the client has read the answer.
fn linger(stream: &mut TcpStream) {
    let deadline = Instant::now() + LINGER;
    let mut buf = [0u8; 4096];
    let mut left = LINGER_BYTES;
    while left > 0 {
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait.is_zero() || stream.set_read_timeout(Some(wait)).is_err() {
            return;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

fn write_response(
    stream: &mut TcpStream,
    response: &Response,
    head_only: bool,
) -> std::io::Result<()> {
    let allow = match response.status {
        405 => "Allow: GET, HEAD\r\n",
        _ => "",
    };
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        response.status,
        response.reason(),
        response.content_type,
        response.body.len()
    );
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(&response.body)?;
    }
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_strict() {
        assert_eq!(
            request_line(b"GET /metrics HTTP/1.1\r\n"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(request_line(b"HEAD / HTTP/1.0\r\n"), Some(("HEAD", "/")));
        assert_eq!(request_line(b"POST /x HTTP/1.1\r\n"), Some(("POST", "/x")));
        for bad in [
            &b"GET /metrics\r\n"[..],
            b"GET  /metrics HTTP/1.1\r\n",
            b"get /metrics HTTP/1.1\r\n",
            b"GET metrics HTTP/1.1\r\n",
            b"GET /metrics HTTP/2\r\n",
            b"GET /a b HTTP/1.1\r\n",
            b"\xff\xfe / HTTP/1.1\r\n",
        ] {
            assert_eq!(
                request_line(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_head_ends_at_its_blank_line() {
        assert_eq!(find_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nrest"), Some(27));
        assert_eq!(find_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(find_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }

    #[test]
    fn a_bare_port_is_loopback() {
        assert_eq!(
            parse_addr("9464").unwrap(),
            "127.0.0.1:9464".parse().unwrap()
        );
        assert_eq!(
            parse_addr("0.0.0.0:80").unwrap(),
            "0.0.0.0:80".parse().unwrap()
        );
        assert!(parse_addr("nonsense").is_err());
    }
}
