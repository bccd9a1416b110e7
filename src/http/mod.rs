//! The operating endpoint (`mechanism-y --http ADDR`): an HTTP/1.1 server (hyper) that serves
//! the run's [`Telemetry`] on fixed routes ([`routes`]).
//!
//! It cannot hurt the run: it runs on a thread of its own with a single-threaded runtime of its
//! own (never the workers' threads), only reads the telemetry, and bounds everything a client
//! can make it do:
//! - GET and HEAD only (405 otherwise); fixed routes only (404 otherwise: no file is served);
//! - a request head of at most [`MAX_HEAD`] bytes (431 beyond), read within
//!   [`REQUEST_TIMEOUT`] (408 after it; an idle connection is closed);
//! - at most [`MAX_CONNECTIONS`] open connections (fewer when the process may open few
//!   files); one more closes the oldest connection still waiting for its head, so idle or
//!   slow clients can never keep a probe out;
//! - one request per connection (`Connection: close`), its response taken within
//!   [`WRITE_TIMEOUT`].
//!
//! A bare port (`9464`) binds the loopback interface; another interface must be named.

pub mod routes;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{oneshot, Notify};
use tokio::time::{timeout, Instant};

use crate::error::{Error, Result};
use crate::http::routes::{route, Response};
use crate::telemetry::Telemetry;

/// The most connections served at once.
pub const MAX_CONNECTIONS: usize = 1024;

/// Connections the kernel queues before the endpoint accepts them.
const BACKLOG: u32 = 1024;

/// The longest request head (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;

/// The time a client has to send its request head (and for an idle connection).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The time a client has to take the response.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// After the answer, how long and how much of the client's rest is read before closing.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;

/// A running endpoint; dropping it stops it (connections in flight are closed).
pub struct HttpServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
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
        let internal = |e: std::io::Error| Error::internal(format!("--http {addr}: {e}"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(internal)?;
        let listener = {
            let _context = runtime.enter();
            listen(addr)
                .map_err(|e| Error::configuration(format!("--http {addr}: cannot listen: {e}")))?
        };
        let addr = listener.local_addr().map_err(internal)?;
        let (stop, stopped) = oneshot::channel();
        let cap = connection_cap();
        let thread = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                runtime.block_on(accept_all(listener, telemetry, stopped, cap));
            })
            .map_err(|e| Error::internal(format!("starting the HTTP thread: {e}")))?;
        tracing::info!(%addr, "operating endpoint listening (/metrics, /api/status, /healthz, /readyz)");
        Ok(HttpServer {
            addr,
            stop: Some(stop),
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
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A listening socket on `addr` (as `std::net::TcpListener::bind`, with a backlog that holds a
/// burst of connections while the endpoint's thread waits for a core).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// [`MAX_CONNECTIONS`], or a quarter of the descriptors the process may open if fewer: the
/// run's own files must never be refused for the endpoint's connections.
fn connection_cap() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct it is given, which lives for the call.
    #[allow(unsafe_code)]
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    let soft = usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX);
    match read {
        true => MAX_CONNECTIONS.min(soft / 4).max(1),
        false => MAX_CONNECTIONS,
    }
}

/// The open connections: their count, and those still waiting for their request head, oldest
/// first (the ones a new connection may close when the cap is reached).
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
}

#[derive(Default)]
struct GateState {
    open: usize,
    next: u64,
    waiting: VecDeque<(u64, Arc<Notify>)>,
}

/// One open connection's place at the [`Gate`]; dropping it frees the place.
struct Ticket {
    gate: Arc<Gate>,
    id: u64,
    evict: Arc<Notify>,
    headed: AtomicBool,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for a new connection: at the cap, the oldest one still waiting for its head is
    /// told to close; with none waiting, `None` (the new one is refused).
    fn admit(self: &Arc<Gate>, cap: usize) -> Option<Ticket> {
        let mut state = self.lock();
        if state.open >= cap {
            let (_, oldest) = state.waiting.pop_front()?;
            oldest.notify_one();
        }
        state.open += 1;
        state.next += 1;
        let (id, evict) = (state.next, Arc::new(Notify::new()));
        state.waiting.push_back((id, evict.clone()));
        Some(Ticket {
            gate: self.clone(),
            id,
            evict,
            headed: AtomicBool::new(false),
        })
    }

    /// Out of descriptors: the oldest connection waiting for its head gives its back.
    fn evict_oldest(&self) {
        if let Some((_, oldest)) = self.lock().waiting.pop_front() {
            oldest.notify_one();
        }
    }
}

impl GateState {
    fn leave_waiting(&mut self, id: u64) {
        if let Ok(at) = self.waiting.binary_search_by_key(&id, |(id, _)| *id) {
            self.waiting.remove(at);
        }
    }
}

impl Ticket {
    /// Its request head arrived: it is no longer one that may be closed for another.
    fn headed(&self) {
        self.headed.store(true, Ordering::SeqCst);
        self.gate.lock().leave_waiting(self.id);
    }

    fn is_headed(&self) -> bool {
        self.headed.load(Ordering::SeqCst)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.gate.lock();
        state.open -= 1;
        state.leave_waiting(self.id);
    }
}

async fn accept_all(
    listener: TcpListener,
    telemetry: Arc<Telemetry>,
    mut stop: oneshot::Receiver<()>,
    cap: usize,
) {
    let gate = Arc::new(Gate::default());
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            // Out of descriptors, say: free one, and do not spin.
            gate.evict_oldest();
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Some(ticket) = gate.admit(cap) else {
            continue;
        };
        tokio::spawn(serve(stream, telemetry.clone(), Arc::new(ticket)));
    }
}

/// How waiting for a connection's head ended.
enum Waited {
    Done(hyper::Result<()>),
    /// Closed for a newer connection (the cap was reached).
    Evicted,
    /// Its head did not arrive within [`REQUEST_TIMEOUT`].
    Late,
}

/// Serves one request on `stream`, then closes it.
async fn serve(stream: TcpStream, telemetry: Arc<Telemetry>, ticket: Arc<Ticket>) {
    let seen = ticket.clone();
    let service = service_fn(move |request: hyper::Request<Incoming>| {
        seen.headed();
        std::future::ready(Ok::<_, Infallible>(respond(&telemetry, &request)))
    });
    let mut conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        // A client may close its sending side once its request is sent: still answer it.
        .half_close(true)
        .title_case_headers(true)
        .max_header_size(MAX_HEAD)
        // (hyper's buffer holds at least 8 KiB.)
        .max_buf_size(MAX_HEAD.max(8 * 1024))
        // The head's deadline is kept below (it answers 408, which hyper's does not).
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(stream), service);
    let head_by = Instant::now() + REQUEST_TIMEOUT;
    let waited = tokio::select! {
        biased;
        done = &mut conn => Waited::Done(done),
        () = ticket.evict.notified() => Waited::Evicted,
        () = tokio::time::sleep_until(head_by) => Waited::Late,
    };
    let done = match waited {
        Waited::Done(done) => done,
        // Its head arrived meanwhile: it has its answer's time.
        _ if ticket.is_headed() => match timeout(WRITE_TIMEOUT, &mut conn).await {
            Ok(done) => done,
            Err(_) => return,
        },
        Waited::Evicted => return,
        Waited::Late => {
            let parts = conn.into_parts();
            // Nothing sent: an idle connection, closed without a word.
            if !parts.read_buf.is_empty() {
                let late = Response::text(408, "request head not received in time");
                refuse(parts.io.into_inner(), &late).await;
            }
            return;
        }
    };
    // Answered, or refused by hyper (400, 431) before the request's end was read.
    if ticket.is_headed() || done.as_ref().is_err_and(hyper::Error::is_parse) {
        linger(conn.into_parts().io.into_inner()).await;
    }
}

/// The HTTP response of `request` (its route's, or 405).
fn respond(
    telemetry: &Telemetry,
    request: &hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let response = match *request.method() {
        hyper::Method::GET | hyper::Method::HEAD => route(telemetry, target),
        _ => Response::text(405, "only GET and HEAD"),
    };
    let mut reply = hyper::Response::new(Full::new(Bytes::new()));
    *reply.status_mut() = hyper::StatusCode::from_u16(response.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = reply.headers_mut();
    let content_type = HeaderValue::from_static(response.content_type);
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CONTENT_LENGTH, response.body.len().into());
    if response.status == 405 {
        headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    *reply.body_mut() = Full::new(response.body);
    reply
}

/// Writes `response` on a connection hyper gave back (its head never completed), then closes.
async fn refuse(mut stream: TcpStream, response: &Response) {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        response.status,
        response.reason(),
        response.content_type,
        response.body.len()
    );
    let written = timeout(WRITE_TIMEOUT, async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&response.body).await?;
        stream.flush().await
    })
    .await;
    if matches!(written, Ok(Ok(()))) {
        linger(stream).await;
    }
}

/// After the answer: closes the sending side, then reads (bounded) what the client still
/// sends, so that closing does not reset the connection before the client has read it.
async fn linger(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let _ = timeout(LINGER, async {
        let mut buf = [0u8; 4096];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn at_the_cap_the_oldest_waiting_connection_makes_room() {
        let gate = Arc::new(Gate::default());
        let first = gate.admit(2).unwrap();
        let second = gate.admit(2).unwrap();
        second.headed();
        // The first is told to close; the third gets its place.
        let third = gate.admit(2).unwrap();
        assert_eq!(gate.lock().waiting.len(), 1, "only the third still waits");
        drop(first);
        assert_eq!(gate.lock().open, 2);
        // Both remaining are headed: nothing left to close, a fourth is refused.
        third.headed();
        assert!(gate.admit(2).is_none());
        drop((second, third));
        assert_eq!(gate.lock().open, 0);
    }
}
