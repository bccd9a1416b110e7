//! A real S3 endpoint inside the tests: s3s + s3s-fs (a filesystem-backed S3 server with
//! SigV4 authentication) served over hyper on `127.0.0.1:0`, plus [`FaultyProxy`], an HTTP
//! proxy that fails every Nth request.
//!
//! # Credentials
//! The client side (the real aws-sdk-s3 through `txflow::objectstore::s3`) takes its
//! credentials from the standard AWS chain, i.e. from `AWS_ACCESS_KEY_ID` /
//! `AWS_SECRET_ACCESS_KEY`. [`init_env`] sets them — with the fixed test values
//! [`ACCESS_KEY`] / [`SECRET_KEY`] — once per process, inside a `OnceLock` initializer, and
//! every fixture constructor calls it first. Changing the environment while other threads read
//! it is racy, so nothing changes it afterwards: a test that needs *wrong* credentials starts
//! a server that expects different ones ([`S3Server::start_with_credentials`]). Tests that
//! read the AWS variables themselves must call [`init_env`] before starting threads.
//!
//! s3s-fs differs from AWS S3 in ways the tests must respect: `If-None-Match: *` is checked,
//! not atomic; with `a/x` present, `a/x/child` cannot be stored; an unknown access key is
//! answered `NotSignedUp` (AWS: `InvalidAccessKeyId`). GET/HEAD/PUT of an object in a missing
//! bucket are answered `NoSuchBucket` as on AWS, thanks to an access hook of this fixture
//! (s3s-fs alone says `NoSuchKey`, or creates the bucket directory on PUT).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use txflow::objectstore::S3Options;

/// The access key the test servers accept and [`init_env`] exports.
pub const ACCESS_KEY: &str = "txflowtest";
/// The secret key the test servers accept and [`init_env`] exports.
pub const SECRET_KEY: &str = "txflowtestsecret";
/// The region [`init_env`] exports and [`S3Server::options`] names.
pub const REGION: &str = "us-east-1";

/// Sets, once per process, the AWS environment the SDK reads: the test credentials and
/// region, IMDS disabled, and no shared config files, profile or session token, so that a
/// developer's `~/.aws` cannot leak in.
pub fn init_env() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
        std::env::set_var("AWS_REGION", REGION);
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        // Empty shared config and credentials files.
        std::env::set_var("AWS_CONFIG_FILE", "/dev/null");
        std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
        std::env::remove_var("AWS_SESSION_TOKEN");
        std::env::remove_var("AWS_PROFILE");
        std::env::remove_var("AWS_ENDPOINT_URL");
        std::env::remove_var("AWS_ENDPOINT_URL_S3");
    });
}

/// Returns the same `S3Error` for every request on an object of a bucket that does not exist
/// (as AWS S3 does), and refuses anonymous requests (s3s's default check).
struct BucketMustExist {
    root: PathBuf,
}

impl s3s::access::S3Access for BucketMustExist {
    // The expansion of `#[async_trait] async fn check(..)` (async-trait is not a direct
    // dependency of this crate).
    fn check<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        cx: &'life1 mut s3s::access::S3AccessContext<'life2>,
    ) -> Pin<Box<dyn Future<Output = s3s::S3Result<()>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        let result = if cx.credentials().is_none() {
            Err(s3s::S3Error::with_message(
                s3s::S3ErrorCode::AccessDenied,
                "Signature is required",
            ))
        } else {
            match cx.s3_path() {
                s3s::path::S3Path::Object { bucket, .. } if !self.root.join(&**bucket).is_dir() => {
                    Err(s3s::S3Error::with_message(
                        s3s::S3ErrorCode::NoSuchBucket,
                        "The specified bucket does not exist",
                    ))
                }
                _ => Ok(()),
            }
        };
        Box::pin(std::future::ready(result))
    }
}

/// A running background server; stopped when dropped.
struct Background {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Binds `127.0.0.1:0` and runs `serve(listener, stop)` on a fresh runtime in a thread.
fn spawn_background<F, Fut>(name: &str, serve: F) -> (SocketAddr, Background)
where
    F: FnOnce(tokio::net::TcpListener, tokio::sync::oneshot::Receiver<()>) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.set_nonblocking(true).expect("set_nonblocking");
    let addr = listener.local_addr().expect("local_addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("test server runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                serve(listener, stop_rx).await;
            });
            runtime.shutdown_background();
        })
        .expect("spawn test server thread");
    (
        addr,
        Background {
            stop: Some(stop_tx),
            thread: Some(thread),
        },
    )
}

/// An in-process S3 server (s3s + s3s-fs) on `127.0.0.1:<ephemeral>`, storing buckets as
/// directories of a temporary directory. Stopped, and its data deleted, when dropped.
pub struct S3Server {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    pub addr: SocketAddr,
    dir: TempDir,
    _server: Background,
}

impl S3Server {
    /// A server accepting the credentials [`init_env`] exports.
    pub fn start() -> S3Server {
        S3Server::start_with_credentials(ACCESS_KEY, SECRET_KEY)
    }

    /// A server accepting only `access_key`/`secret_key`: with anything else than the test
    /// credentials, clients of this process are "misconfigured".
    pub fn start_with_credentials(access_key: &str, secret_key: &str) -> S3Server {
        init_env();
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_path_buf();
        let fs = s3s_fs::FileSystem::new(&root).expect("s3s-fs root");
        let service = {
            let mut builder = s3s::service::S3ServiceBuilder::new(fs);
            builder.set_auth(s3s::auth::SimpleAuth::from_single(access_key, secret_key));
            builder.set_access(BucketMustExist { root: root.clone() });
            builder.build()
        };
        let (addr, server) = spawn_background("s3s-test-server", move |listener, stop| {
            serve_s3(listener, stop, service)
        });
        S3Server {
            endpoint: format!("http://{addr}"),
            addr,
            dir,
            _server: server,
        }
    }

    /// Creates a bucket (a directory of the server's root).
    pub fn create_bucket(&self, name: &str) {
        std::fs::create_dir_all(self.dir.path().join(name)).expect("create bucket directory");
    }

    /// The server's root directory (one sub-directory per bucket).
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Client options for this server: its endpoint (path-style) and [`REGION`].
    pub fn options(&self) -> S3Options {
        S3Options {
            endpoint: Some(self.endpoint.clone()),
            region: Some(REGION.to_string()),
            ..S3Options::default()
        }
    }
}

async fn serve_s3(
    listener: tokio::net::TcpListener,
    mut stop: tokio::sync::oneshot::Receiver<()>,
    service: s3s::service::S3Service,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        let socket = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(_) => continue,
            },
            _ = &mut stop => return,
        };
        let connection = http
            .serve_connection(TokioIo::new(socket), service.clone())
            .into_owned();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}

/// What [`FaultyProxy`] does to the requests it fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `503 Slow Down` with an S3 `SlowDown` error body (S3's throttling answer).
    SlowDown,
    /// `500 Internal Server Error` with an S3 `InternalError` error body.
    InternalError,
    /// The connection is closed (reset) without an answer.
    Reset,
}

/// An HTTP/1.1 proxy on `127.0.0.1:<ephemeral>` in front of an S3 endpoint that fails every
/// Nth request (the Nth, 2Nth, ... counted from 1).
///
/// It forwards one request per connection: it adds `Connection: close` to every request and
/// response it passes on, so the client opens a fresh connection for each request and every
/// request is seen (and counted) here, although the SDK keeps connections alive. A failed
/// request gets [`Fault`] instead of reaching the server.
pub struct FaultyProxy {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    pub addr: SocketAddr,
    requests: Arc<AtomicU64>,
    faults: Arc<AtomicU64>,
    _server: Background,
}

impl FaultyProxy {
    /// A proxy to `upstream` (an `http://host:port` endpoint) failing every `every_nth`
    /// request with `fault` (`every_nth == 0`: never).
    pub fn start(upstream: &str, every_nth: u64, fault: Fault) -> FaultyProxy {
        init_env();
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("upstream must be http://ip:port");
        let requests = Arc::new(AtomicU64::new(0));
        let faults = Arc::new(AtomicU64::new(0));
        let (req, flt) = (requests.clone(), faults.clone());
        let (addr, server) =
            spawn_background("faulty-proxy", move |listener, mut stop| async move {
                loop {
                    let socket = tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok((socket, _)) => socket,
                            Err(_) => continue,
                        },
                        _ = &mut stop => return,
                    };
                    let (req, flt) = (req.clone(), flt.clone());
                    tokio::spawn(async move {
                        let _ =
                            proxy_connection(socket, upstream, every_nth, fault, req, flt).await;
                    });
                }
            });
        FaultyProxy {
            endpoint: format!("http://{addr}"),
            addr,
            requests,
            faults,
            _server: server,
        }
    }

    /// Requests seen so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Requests failed so far.
    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::SeqCst)
    }

    /// Client options sending everything through the proxy.
    pub fn options(&self) -> S3Options {
        S3Options {
            endpoint: Some(self.endpoint.clone()),
            region: Some(REGION.to_string()),
            ..S3Options::default()
        }
    }
}

/// Bytes of an HTTP head (request or status line plus headers) are bounded by this.
const MAX_HEAD: usize = 1 << 20;

/// Reads from `stream` into `buf` until `buf` holds a whole HTTP head; returns the head's
/// length (up to and including the blank line), or `None` at end of stream.
async fn read_head<R: AsyncRead + Unpin>(
    stream: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<usize>> {
    loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some(pos + 4));
        }
        if buf.len() > MAX_HEAD {
            return Err(std::io::Error::other("HTTP head too large"));
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The value of header `name` in `head`, if present.
fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// `head` with its `Connection`/`Keep-Alive` headers replaced by `Connection: close`.
fn close_after(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::with_capacity(text.len() + 20);
    for line in text.trim_end_matches("\r\n").split("\r\n") {
        let name = line.split(':').next().unwrap_or("").trim();
        if name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("keep-alive") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

async fn proxy_connection(
    mut client: TcpStream,
    upstream: SocketAddr,
    every_nth: u64,
    fault: Fault,
    requests: Arc<AtomicU64>,
    faults: Arc<AtomicU64>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let Some(head_len) = read_head(&mut client, &mut buf).await? else {
        return Ok(());
    };
    let n = requests.fetch_add(1, Ordering::SeqCst) + 1;
    if every_nth > 0 && n.is_multiple_of(every_nth) {
        faults.fetch_add(1, Ordering::SeqCst);
        let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
        return fail_request(client, &head, buf.len() - head_len, fault).await;
    }

    let mut server = TcpStream::connect(upstream).await?;
    server.write_all(&close_after(&buf[..head_len])).await?;
    server.write_all(&buf[head_len..]).await?;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // The rest of the request body, as it comes.
    let upload = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    });
    // Response heads (1xx interim ones, then the final one) get `Connection: close`.
    let mut buf = Vec::new();
    while let Some(head_len) = read_head(&mut server_read, &mut buf).await? {
        let head = buf[..head_len].to_vec();
        buf.drain(..head_len);
        let status: u16 = String::from_utf8_lossy(&head)
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if (100..200).contains(&status) {
            client_write.write_all(&head).await?;
            continue;
        }
        client_write.write_all(&close_after(&head)).await?;
        client_write.write_all(&buf).await?;
        tokio::io::copy(&mut server_read, &mut client_write).await?;
        break;
    }
    let _ = client_write.shutdown().await;
    upload.abort();
    Ok(())
}

/// Answers (or drops) a request that is to fail, after consuming its body unless the
/// client waits for `100 Continue`.
async fn fail_request(
    mut client: TcpStream,
    head: &str,
    body_buffered: usize,
    fault: Fault,
) -> std::io::Result<()> {
    let expects_continue = header(head, "expect").is_some_and(|v| v.starts_with("100"));
    if !expects_continue {
        if let Some(len) = header(head, "content-length").and_then(|v| v.parse::<u64>().ok()) {
            let rest = len.saturating_sub(body_buffered as u64);
            tokio::io::copy(&mut (&mut client).take(rest), &mut tokio::io::sink()).await?;
        } else if header(head, "transfer-encoding").is_some() {
            // Chunked: drain until the client pauses.
            let mut chunk = [0u8; 16 * 1024];
            while let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(200), client.read(&mut chunk)).await
            {
                if n == 0 {
                    break;
                }
            }
        }
    }
    let (status, code, message) = match fault {
        Fault::SlowDown => (
            "503 Slow Down",
            "SlowDown",
            "Please reduce your request rate.",
        ),
        Fault::InternalError => (
            "500 Internal Server Error",
            "InternalError",
            "We encountered an internal error. Please try again.",
        ),
        Fault::Reset => {
            // Linger 0: the close sends RST instead of FIN.
            let _ = client.set_zero_linger();
            drop(client);
            return Ok(());
        }
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>{message}</Message><RequestId>faulty-proxy</RequestId></Error>"
    );
    let is_head = head.starts_with("HEAD ");
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
         x-amz-request-id: faulty-proxy\r\nConnection: close\r\n\r\n{}",
        body.len(),
        if is_head { "" } else { body.as_str() }
    );
    client.write_all(response.as_bytes()).await?;
    client.shutdown().await?;
    Ok(())
}
