//! S3 (and S3-compatible servers) as an object store, with aws-sdk-s3 on a private tokio runtime.
//!
//! # Blocking calls on a private runtime
//! [`ObjectStore`] is blocking; the SDK is async. Every [`S3Store`] of the process shares one
//! small multi-threaded tokio runtime (2 workers, threads named `txflow-s3`) that drives the
//! SDK's I/O and timers; a call runs its future with `Runtime::block_on` on the caller's
//! thread, so any number of threads can call concurrently. Callers are plain threads. Should a
//! call come from inside some tokio runtime anyway, it is run on a short-lived helper thread
//! (blocking the caller, never panicking).
//!
//! # Configuration
//! The standard AWS chain (environment, shared profile, web identity, IMDS) supplies the
//! credentials; the region is [`S3Options::region`], else the chain's, else `us-east-1`. An
//! endpoint override ([`S3Options::endpoint`], else `AWS_ENDPOINT_URL_S3`, else
//! `AWS_ENDPOINT_URL`) switches to path-style addressing. Request checksums are only computed
//! and response checksums only validated when an operation requires it: S3-compatible servers
//! reject the SDK's newer CRC defaults. Credentials are never logged nor shown by
//! [`ObjectStore::describe`].
//!
//! # Failures
//! The SDK's own retries are disabled; this module retries transient failures itself (5xx,
//! 429 and throttling codes, timeouts, refused or reset connections, truncated responses) with
//! bounded exponential backoff and jitter ([`S3Tuning`]), logging each retry with
//! `tracing::warn!`. When the attempts run out the error is [`StoreError::S3Exhausted`].
//! Failures that retrying cannot fix (missing bucket, rejected credentials, access denied,
//! other 4xx) are [`StoreError::S3Permanent`], with a message saying what to fix.
//!
//! A GET or HEAD of a missing key is `Ok(None)`. S3 answers it with 404 only to callers that
//! may list the bucket and with 403 otherwise, so a 403 on GET/HEAD is also "not there yet" —
//! except when the error code says the credentials themselves were rejected (only a GET's
//! error body carries a code; HEAD responses have none). Call [`ObjectStore::check`] at start-up:
//! it turns a missing bucket or bad credentials into a clear error before the first GET.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};

use crate::error::StoreError;
use crate::objectstore::store::{Object, ObjectMeta, ObjectStore, PutOutcome};
use crate::redact;
use crate::retry_count::Retries;

/// S3 client settings shared by every S3 location of a process (`Debug` redacts the
/// endpoint).
#[derive(Clone, Default)]
pub struct S3Options {
    /// Endpoint override (`--s3-endpoint`); `AWS_ENDPOINT_URL[_S3]` are honoured when unset.
    /// An override switches to path-style addressing.
    pub endpoint: Option<String>,
    /// Region override; otherwise the AWS configuration chain decides (default `us-east-1`).
    pub region: Option<String>,
    /// Told of every retried request (the run's telemetry).
    pub retries: Retries,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint.as_deref().map(redact::url))
            .field("region", &self.region)
            .finish()
    }
}

/// Default number of attempts per operation (the first try included).
pub(crate) const DEFAULT_MAX_ATTEMPTS: u32 = 8;
/// Default delay before the first retry; it doubles on every further retry.
pub(crate) const DEFAULT_BASE_DELAY: Duration = Duration::from_millis(50);
/// Default cap of the delay between two attempts.
pub(crate) const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(2);
/// Default TCP (and TLS) connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time allowed between sending a request and the first byte of the response.
pub(crate) const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default bound of one whole attempt, response body included.
pub(crate) const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(120);

/// The region used when neither the options nor the AWS configuration chain name one.
pub(crate) const DEFAULT_REGION: &str = "us-east-1";

/// ListObjectsV2 returns at most this many keys per page.
const MAX_KEYS_PER_PAGE: usize = 1000;

/// Retry and timeout settings of an [`S3Store`].
///
/// The worst-case time an operation keeps retrying is roughly the sum of the delays (with the
/// defaults 50 ms doubling to a 2 s cap over 7 retries: about 4–5 s) plus the attempts'
/// own durations, each bounded by the timeouts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Tuning {
    /// Attempts per operation, the first one included (at least 1).
    pub max_attempts: u32,
    /// Delay before the first retry; doubled for each further retry, up to `max_delay`. The
    /// actual delay is drawn uniformly from the upper half of that value (jitter).
    pub base_delay: Duration,
    /// Cap of the delay between two attempts.
    pub max_delay: Duration,
    /// TCP/TLS connect timeout of one attempt.
    pub connect_timeout: Duration,
    /// Time allowed from sending a request to the first byte of the response.
    pub read_timeout: Duration,
    /// Bound of one whole attempt, reading the response body included.
    pub attempt_timeout: Duration,
}

impl Default for S3Tuning {
    fn default() -> S3Tuning {
        S3Tuning {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            base_delay: DEFAULT_BASE_DELAY,
            max_delay: DEFAULT_MAX_DELAY,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
        }
    }
}

impl S3Tuning {
    /// The delay before attempt `attempt + 1`, after `attempt` (1-based) failed attempts.
    fn delay_after(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        let full = self
            .base_delay
            .saturating_mul(1u32 << doublings)
            .min(self.max_delay);
        // "Equal jitter": half fixed, half random, so retries of many callers spread out
        // without ever collapsing to zero.
        let half = full / 2;
        let nanos = half.as_nanos() as u64;
        let jitter = if nanos == 0 { 0 } else { random_u64() % nanos };
        half + Duration::from_nanos(jitter)
    }
}

/// A random number from the standard library's per-instance random hasher keys (no extra
/// dependency; good enough for jitter).
fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    hasher.finish()
}

/// The runtime shared by every S3 store of the process: process-wide on purpose, it holds
/// I/O threads, not figures of a run (a runtime per store would multiply the threads and
/// could not be dropped from inside its own tasks). Building it fails only when the OS
/// refuses threads or an event loop; the failure is kept (by kind and message: an
/// `io::Error` cannot be cloned) and reported to every caller.
fn runtime() -> std::io::Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, (std::io::ErrorKind, String)>> =
        OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("txflow-s3")
                .enable_all()
                .build()
                .map_err(|e| (e.kind(), e.to_string()))
        })
        .as_ref()
        .map_err(|(kind, message)| std::io::Error::new(*kind, message.clone()))
}

/// An S3 bucket and key prefix as an [`ObjectStore`].
pub struct S3Store {
    bucket: String,
    /// Without leading or trailing '/'; empty for the bucket root.
    prefix: String,
    client: aws_sdk_s3::Client,
    tuning: S3Tuning,
    runtime: &'static tokio::runtime::Runtime,
    retries: Retries,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("tuning", &self.tuning)
            .finish_non_exhaustive()
    }
}

/// How one failed attempt is to be handled.
enum Failure {
    /// Retrying may help.
    Transient(String),
    /// Retrying will not help.
    Permanent(String),
}

/// What an SDK error means for the operation that got it.
enum Class {
    /// The key is not there (404, or 403 on GET/HEAD without a credentials error code).
    Missing,
    /// 412: a condition (`If-None-Match: *`) failed.
    PreconditionFailed,
    Failed(Failure),
}

/// The operations, for messages and for classifying their errors.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Check,
    Get,
    Head,
    Put,
    PutIfAbsent,
    List,
    Delete,
}

/// The names of the operations (the `op` label of the run's S3 retry counters).
pub(crate) fn op_names() -> impl Iterator<Item = &'static str> {
    [
        Op::Check,
        Op::Get,
        Op::Head,
        Op::Put,
        Op::PutIfAbsent,
        Op::List,
        Op::Delete,
    ]
    .into_iter()
    .map(Op::name)
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Check => "check",
            Op::Get => "get",
            Op::Head => "head",
            Op::Put => "put",
            Op::PutIfAbsent => "put_if_absent",
            Op::List => "list",
            Op::Delete => "delete",
        }
    }

    /// The IAM action the operation needs, for access-denied messages.
    fn permission(self) -> &'static str {
        match self {
            Op::Check | Op::List => "s3:ListBucket",
            Op::Get | Op::Head => "s3:GetObject",
            Op::Put | Op::PutIfAbsent => "s3:PutObject",
            Op::Delete => "s3:DeleteObject",
        }
    }
}

/// Error codes meaning the credentials themselves were rejected.
const CREDENTIAL_CODES: &[&str] = &[
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "NotSignedUp",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "InvalidSecurity",
];

/// Error codes of transient conditions, whatever their status.
const TRANSIENT_CODES: &[&str] = &[
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "ServiceUnavailable",
    "OperationAborted",
    "ConditionalRequestConflict",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

impl S3Store {
    /// A store for `s3://bucket/prefix` with the default [`S3Tuning`].
    ///
    /// Builds the client without network I/O (except that, when neither the options nor the
    /// environment/profile name a region, the AWS chain may ask the instance metadata service).
    /// Call [`ObjectStore::check`] to verify the bucket and credentials.
    pub fn connect(
        bucket: String,
        prefix: String,
        options: &S3Options,
    ) -> Result<S3Store, StoreError> {
        S3Store::connect_with(bucket, prefix, options, S3Tuning::default())
    }

    /// [`S3Store::connect`] with explicit retry and timeout settings.
    pub fn connect_with(
        bucket: String,
        prefix: String,
        options: &S3Options,
        tuning: S3Tuning,
    ) -> Result<S3Store, StoreError> {
        let prefix = prefix.trim_matches('/').to_string();
        let fail = |message: String| StoreError::S3Permanent {
            op: "connect",
            bucket: bucket.clone(),
            key: prefix.clone(),
            message,
        };
        if bucket.is_empty() {
            return Err(fail("empty bucket name".into()));
        }
        let runtime =
            runtime().map_err(|e| fail(format!("cannot start the S3 I/O runtime: {e}")))?;
        let endpoint =
            resolve_endpoint(options.endpoint.as_deref(), |name| std::env::var(name).ok());
        if let Some(endpoint) = &endpoint {
            check_endpoint(endpoint).map_err(fail)?;
        }

        let sdk_config = block_on(runtime, sdk_loader(options, &tuning).load());
        let client = client(&sdk_config, endpoint.as_deref());
        tracing::debug!(
            bucket = %bucket,
            prefix = %prefix,
            region = %sdk_config.region().map(|r| r.as_ref()).unwrap_or(DEFAULT_REGION),
            endpoint = ?endpoint.as_deref().map(redact::url),
            "S3 store configured"
        );
        Ok(S3Store {
            bucket,
            prefix,
            client,
            tuning,
            runtime,
            retries: options.retries.clone(),
        })
    }

    /// The retry and timeout settings in force.
    pub fn tuning(&self) -> &S3Tuning {
        &self.tuning
    }

    /// The key in the bucket of the store-relative `key`.
    fn full_key(&self, key: &str) -> String {
        let key = key.trim_start_matches('/');
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{}", self.prefix, key)
        }
    }

    /// The list prefix in the bucket of the store-relative `prefix`: under a non-empty store
    /// prefix `p` it starts with `p/`, so `s3://b/p` never lists `s3://b/px...`.
    fn full_prefix(&self, prefix: &str) -> String {
        let prefix = prefix.trim_start_matches('/');
        if self.prefix.is_empty() {
            prefix.to_string()
        } else {
            format!("{}/{}", self.prefix, prefix)
        }
    }

    /// The store-relative key of a key in the bucket.
    fn relative_key<'k>(&self, full: &'k str) -> Option<&'k str> {
        if self.prefix.is_empty() {
            Some(full)
        } else {
            full.strip_prefix(self.prefix.as_str())?.strip_prefix('/')
        }
    }

    /// The metadata of a listed object, `None` for what is not an object of the listing.
    fn listed(
        &self,
        object: &aws_sdk_s3::types::Object,
        list_prefix: &str,
        start_after: Option<&str>,
    ) -> Option<ObjectMeta> {
        let full = object.key()?;
        // "Folder" markers (`dir/`, made by consoles) are not objects to read, and the local
        // store has no equivalent.
        if full.ends_with('/') {
            return None;
        }
        let key = self.relative_key(full)?;
        // Defensive: servers must honour prefix and start-after, but a key outside them would
        // break the callers' ordering assumptions.
        if !full.starts_with(list_prefix) || start_after.is_some_and(|s| full <= s) {
            return None;
        }
        Some(ObjectMeta {
            key: key.to_string(),
            size: object.size().unwrap_or(0).max(0) as u64,
            last_modified_ms: millis(object.last_modified().copied()),
        })
    }

    /// Runs `future` to completion on the store's runtime, from a plain thread (or, when
    /// called from inside a tokio runtime, from a helper thread).
    fn block<F>(&self, future: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        block_on(self.runtime, future)
    }

    /// Runs `attempt` until it succeeds, fails permanently, or the attempts run out.
    async fn run<T, F, Fut>(&self, op: Op, key: &str, mut attempt: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let max_attempts = self.tuning.max_attempts.max(1);
        let mut n = 1;
        loop {
            let outcome = match tokio::time::timeout(self.tuning.attempt_timeout, attempt()).await {
                Ok(outcome) => outcome,
                Err(_) => Err(Failure::Transient(format!(
                    "attempt timed out after {:?}",
                    self.tuning.attempt_timeout
                ))),
            };
            match outcome {
                Ok(value) => return Ok(value),
                Err(Failure::Permanent(message)) => {
                    return Err(StoreError::S3Permanent {
                        op: op.name(),
                        bucket: self.bucket.clone(),
                        key: key.to_string(),
                        message,
                    })
                }
                Err(Failure::Transient(message)) if n >= max_attempts => {
                    return Err(StoreError::S3Exhausted {
                        op: op.name(),
                        bucket: self.bucket.clone(),
                        key: key.to_string(),
                        attempts: n,
                        message,
                    })
                }
                Err(Failure::Transient(message)) => {
                    let delay = self.tuning.delay_after(n);
                    self.retrying(op, key, n, &message, delay);
                    tokio::time::sleep(delay).await;
                    n += 1;
                }
            }
        }
    }

    /// The one place a retry is reported (counted and logged): attempt `n` of `op` on `key`
    /// failed transiently with `message`; the next one follows after `delay`.
    fn retrying(&self, op: Op, key: &str, n: u32, message: &str, delay: Duration) {
        self.retries.retried(op.name());
        tracing::warn!(
            op = op.name(),
            bucket = %self.bucket,
            key = %key,
            attempt = n,
            max_attempts = self.tuning.max_attempts.max(1),
            retry_in_ms = delay.as_millis() as u64,
            error = %message,
            "S3 request failed; retrying"
        );
    }

    /// Classifies an SDK error of `op`; see the module documentation.
    fn classify<E>(&self, op: Op, err: &SdkError<E, HttpResponse>) -> Class
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        if !matches!(err, SdkError::ServiceError(_)) {
            return Class::Failed(transport_failure(err));
        }
        let reply = Reply::of(err);
        if let Some(message) = self.misconfiguration(op, &reply) {
            return Class::Failed(Failure::Permanent(message));
        }
        self.by_status(op, reply)
    }

    /// A service answer that says the configuration is wrong (credentials, clock, region,
    /// bucket): retrying cannot help; the message says what to fix.
    fn misconfiguration(&self, op: Op, reply: &Reply) -> Option<String> {
        let Reply {
            status,
            code,
            detail,
            bucket_region,
        } = reply;
        let code = code.as_str();
        if CREDENTIAL_CODES.contains(&code) {
            return Some(format!(
                "the credentials were rejected: check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY \
                 (or AWS_PROFILE, or the instance role) and that they belong to the account \
                 of the bucket ({detail})"
            ));
        }
        if code == "RequestTimeTooSkewed" {
            return Some(format!(
                "the system clock is too far from S3's: synchronise it (NTP) ({detail})"
            ));
        }
        if *status == 301 || code == "PermanentRedirect" || code == "AuthorizationHeaderMalformed" {
            let region = bucket_region
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            return Some(format!(
                "the bucket is in another region{region}: set --s3-region or AWS_REGION to \
                 the bucket's region ({detail})"
            ));
        }
        if code == "NoSuchBucket" || (*status == 404 && matches!(op, Op::Check | Op::List)) {
            return Some(format!(
                "bucket {:?} does not exist: create it, or fix the s3:// URL (--landing, \
                 --output, --importance) or the endpoint ({detail})",
                self.bucket
            ));
        }
        None
    }

    /// Any other service answer, by status: a missing key, a failed condition, a transient
    /// condition, or a permanent refusal.
    fn by_status(&self, op: Op, reply: Reply) -> Class {
        let transient = |m: String| Class::Failed(Failure::Transient(m));
        let permanent = |m: String| Class::Failed(Failure::Permanent(m));
        let Reply {
            status,
            code,
            detail,
            ..
        } = reply;
        if status == 404 {
            return match op {
                Op::Get | Op::Head | Op::Delete => Class::Missing,
                // A PUT answered 404 without NoSuchBucket: treat like a missing bucket.
                _ => permanent(format!(
                    "bucket {:?} not found: create it, or fix the s3:// URL or the endpoint \
                     ({detail})",
                    self.bucket
                )),
            };
        }
        if status == 412 || code == "PreconditionFailed" {
            return Class::PreconditionFailed;
        }
        if status >= 500 || status == 429 || TRANSIENT_CODES.contains(&code.as_str()) {
            return transient(detail);
        }
        if status == 403 {
            return self.forbidden(op, detail);
        }
        if (400..500).contains(&status) {
            return permanent(format!("rejected by S3 ({detail})"));
        }
        // No status (should not happen for a service error) or an odd 1xx/3xx.
        transient(detail)
    }

    /// 403 without a credentials error code.
    fn forbidden(&self, op: Op, detail: String) -> Class {
        match op {
            // Without list permission S3 answers a missing key with 403: "not yet".
            Op::Get | Op::Head => {
                tracing::debug!(
                    op = op.name(),
                    bucket = %self.bucket,
                    detail = %detail,
                    "403 on a read: treated as a key that does not exist (yet)"
                );
                Class::Missing
            }
            _ => Class::Failed(Failure::Permanent(format!(
                "access denied: check the credentials (AWS_ACCESS_KEY_ID/AWS_PROFILE) and \
                 the bucket policy ({} on s3://{}/{}) ({detail})",
                op.permission(),
                self.bucket,
                if self.prefix.is_empty() {
                    "*".to_string()
                } else {
                    format!("{}/*", self.prefix)
                }
            ))),
        }
    }

    /// [`S3Store::classify`] for operations that treat neither 404 nor 412 specially.
    fn failure<E>(&self, op: Op, err: &SdkError<E, HttpResponse>) -> Failure
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match self.classify(op, err) {
            Class::Failed(failure) => failure,
            Class::Missing => Failure::Permanent(format!("not found ({})", chain(err))),
            Class::PreconditionFailed => {
                Failure::Permanent(format!("precondition failed ({})", chain(err)))
            }
        }
    }
}

/// What the service answered, for classifying a service error.
struct Reply {
    /// HTTP status; 0 when there is no response.
    status: u16,
    /// S3 error code; empty when the answer has none (HEAD).
    code: String,
    /// `HTTP <status> <code>: <message>`, for messages.
    detail: String,
    /// The `x-amz-bucket-region` header, if any.
    bucket_region: Option<String>,
}

impl Reply {
    fn of<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Reply {
        let status = err.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
        let code = err.code().unwrap_or("");
        let detail = match (code.is_empty(), err.message()) {
            (true, _) => format!("HTTP {status}"),
            (false, Some(m)) if !m.is_empty() => format!("HTTP {status} {code}: {m}"),
            (false, _) => format!("HTTP {status} {code}"),
        };
        let bucket_region = err
            .raw_response()
            .and_then(|r| r.headers().get("x-amz-bucket-region"))
            .map(str::to_string);
        Reply {
            status,
            code: code.to_string(),
            detail,
            bucket_region,
        }
    }
}

/// Classifies an SDK error that is no answer of the service: a timeout, an unreadable
/// response, a request that could not be sent or built.
fn transport_failure<E>(err: &SdkError<E, HttpResponse>) -> Failure
where
    E: std::error::Error + Send + Sync + 'static,
{
    match err {
        SdkError::TimeoutError(_) => Failure::Transient(format!("timed out: {}", chain(err))),
        SdkError::ResponseError(_) => {
            Failure::Transient(format!("unreadable response: {}", chain(err)))
        }
        SdkError::DispatchFailure(failure) => {
            if failure.is_io() || failure.is_timeout() {
                return Failure::Transient(format!("connection failed: {}", chain(err)));
            }
            dispatch_failure(chain(err), failure.is_user())
        }
        SdkError::ConstructionFailure(_) => {
            Failure::Permanent(format!("request could not be built: {}", chain(err)))
        }
        _ => Failure::Transient(chain(err)),
    }
}

/// A request that could not be sent, for another reason than I/O or a timeout (`text`: the
/// error chain): missing credentials, a bad request (`user`), or something else.
fn dispatch_failure(text: String, user: bool) -> Failure {
    let lower = text.to_ascii_lowercase();
    if lower.contains("credential") {
        if lower.contains("timed out") {
            return Failure::Transient(format!("loading credentials timed out: {text}"));
        }
        return Failure::Permanent(format!(
            "no usable AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
             AWS_PROFILE, or run with an instance or web-identity role ({text})"
        ));
    }
    if user {
        return Failure::Permanent(format!("request could not be sent: {text}"));
    }
    Failure::Transient(format!("request could not be sent: {text}"))
}

/// The AWS configuration loader: our HTTP client (rustls) and timeouts, no SDK retries, and
/// the region of `options` if given.
fn sdk_loader(options: &S3Options, tuning: &S3Tuning) -> aws_config::ConfigLoader {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(tuning.connect_timeout)
        .read_timeout(tuning.read_timeout)
        .build();
    let loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        // Our own retry loop is the policy; the SDK's would multiply the attempts.
        .retry_config(RetryConfig::disabled())
        .timeout_config(timeouts);
    // Without an explicit region the loader runs the default region chain (environment,
    // profile, IMDS) itself, with the HTTP client above; a chain built here would not have it.
    match options.region.clone().filter(|r| !r.trim().is_empty()) {
        Some(region) => loader.region(Region::new(region)),
        None => loader,
    }
}

/// The S3 client: checksums only where required, [`DEFAULT_REGION`] when the chain names
/// none, path-style addressing with an endpoint override.
fn client(sdk_config: &aws_config::SdkConfig, endpoint: Option<&str>) -> aws_sdk_s3::Client {
    let mut builder = aws_sdk_s3::config::Builder::from(sdk_config)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if sdk_config.region().is_none() {
        builder = builder.region(Region::new(DEFAULT_REGION));
    }
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint_url(endpoint).force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// The error and its sources, on one line (without the SDK's Debug dump).
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !cause_text.is_empty() && !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    // Some SDK messages span lines (e.g. the credential chain's report).
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Refuses an endpoint that is no http(s) URL, or that carries credentials (a user name,
/// a password, a secret query parameter): the SDK would echo it in its errors and debug
/// logs, and credentials come from the AWS configuration chain.
fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let shown = redact::url(endpoint);
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(format!(
            "invalid S3 endpoint {shown:?}: expected an http:// or https:// URL"
        ));
    }
    if endpoint.contains('@') || shown != endpoint {
        return Err(format!(
            "invalid S3 endpoint {shown:?}: it takes no credentials; give them through the AWS \
             configuration chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an \
             instance role)"
        ));
    }
    Ok(())
}

/// The endpoint override: the option, else `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`
/// (empty values count as unset; `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true` disables the
/// variables, as in the SDKs).
fn resolve_endpoint(option: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Option<String> {
    let set = |v: &String| !v.trim().is_empty();
    let ignore_env = env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let from_env = |name: &str| {
        if ignore_env {
            None
        } else {
            env(name).filter(set)
        }
    };
    option
        .map(str::to_string)
        .filter(set)
        .or_else(|| from_env("AWS_ENDPOINT_URL_S3"))
        .or_else(|| from_env("AWS_ENDPOINT_URL"))
        .map(|v| v.trim().to_string())
}

/// `LastModified` in milliseconds, truncated to whole seconds: GET and HEAD carry it as an
/// HTTP date (whole seconds), while some servers (MinIO, s3s) list it with milliseconds
/// (AWS lists `.000`). Truncating everywhere makes every call report the same time for an
/// object, so a backtest's `YStartTime` (from the listing) and `detectionTime` (from the GET)
/// of the same chunk agree.
fn millis(time: Option<aws_smithy_types::DateTime>) -> i64 {
    time.and_then(|t| t.to_millis().ok())
        .unwrap_or(0)
        .div_euclid(1000)
        * 1000
}

/// Runs `future` on `runtime`, from a plain thread directly, or from a helper thread when the
/// caller is itself inside a tokio runtime (where `block_on` would panic).
fn block_on<F>(runtime: &'static tokio::runtime::Runtime, future: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return runtime.block_on(future);
    }
    std::thread::scope(
        |scope| match scope.spawn(move || runtime.block_on(future)).join() {
            Ok(output) => output,
            Err(panic) => std::panic::resume_unwind(panic),
        },
    )
}

impl ObjectStore for S3Store {
    /// An S3 object appears whole or not at all.
    fn atomic_puts(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        redact::url(&if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        })
    }

    /// Start-up health check: lists at most one key under the prefix (ListObjectsV2), so a
    /// missing bucket, rejected credentials, a wrong region or a missing `s3:ListBucket`
    /// permission surface as a clear [`StoreError::S3Permanent`] now rather than as keys that
    /// never appear. Transient failures are retried like any operation.
    fn check(&self) -> Result<(), StoreError> {
        let list_prefix = self.full_prefix("");
        let this = self;
        let lp = &list_prefix;
        self.block(self.run(Op::Check, &list_prefix, move || async move {
            let mut request = this
                .client
                .list_objects_v2()
                .bucket(&this.bucket)
                .max_keys(1);
            if !lp.is_empty() {
                request = request.prefix(lp);
            }
            match request.send().await {
                Ok(_) => Ok(()),
                Err(err) => Err(this.failure(Op::Check, &err)),
            }
        }))
    }

    fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        let full = self.full_key(key);
        let this = self;
        let full_ref = &full;
        self.block(self.run(Op::Get, &full, move || async move {
            let response = this
                .client
                .get_object()
                .bucket(&this.bucket)
                .key(full_ref)
                .send()
                .await;
            match response {
                Ok(output) => {
                    let last_modified_ms = millis(output.last_modified);
                    let body = output
                        .body
                        .collect()
                        .await
                        .map_err(|e| {
                            Failure::Transient(format!("reading the body failed: {}", chain(&e)))
                        })?
                        .into_bytes();
                    Ok(Some(Object {
                        meta: ObjectMeta {
                            key: key.to_string(),
                            size: body.len() as u64,
                            last_modified_ms,
                        },
                        body,
                    }))
                }
                Err(err) => match this.classify(Op::Get, &err) {
                    Class::Missing => Ok(None),
                    Class::PreconditionFailed => Err(this.failure(Op::Get, &err)),
                    Class::Failed(failure) => Err(failure),
                },
            }
        }))
    }

    fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        let full = self.full_key(key);
        let this = self;
        let full_ref = &full;
        self.block(self.run(Op::Head, &full, move || async move {
            let response = this
                .client
                .head_object()
                .bucket(&this.bucket)
                .key(full_ref)
                .send()
                .await;
            match response {
                Ok(output) => Ok(Some(ObjectMeta {
                    key: key.to_string(),
                    size: output.content_length.unwrap_or(0).max(0) as u64,
                    last_modified_ms: millis(output.last_modified),
                })),
                Err(err) => match this.classify(Op::Head, &err) {
                    Class::Missing => Ok(None),
                    Class::PreconditionFailed => Err(this.failure(Op::Head, &err)),
                    Class::Failed(failure) => Err(failure),
                },
            }
        }))
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let full = self.full_key(key);
        let this = self;
        let full_ref = &full;
        self.block(self.run(Op::Delete, &full, move || async move {
            let response = this
                .client
                .delete_object()
                .bucket(&this.bucket)
                .key(full_ref)
                .send()
                .await;
            match response {
                Ok(_) => Ok(()),
                Err(err) => match this.classify(Op::Delete, &err) {
                    Class::Missing => Ok(()),
                    Class::PreconditionFailed => Err(this.failure(Op::Delete, &err)),
                    Class::Failed(failure) => Err(failure),
                },
            }
        }))
    }

    fn put(&self, key: &str, body: &[u8]) -> Result<(), StoreError> {
        let full = self.full_key(key);
        let body = bytes::Bytes::copy_from_slice(body);
        let this = self;
        let (full_ref, body_ref) = (&full, &body);
        self.block(self.run(Op::Put, &full, move || async move {
            let response = this
                .client
                .put_object()
                .bucket(&this.bucket)
                .key(full_ref)
                .content_length(body_ref.len() as i64)
                .body(ByteStream::from(body_ref.clone()))
                .send()
                .await;
            match response {
                Ok(_) => Ok(()),
                Err(err) => Err(this.failure(Op::Put, &err)),
            }
        }))
    }

    /// `PutObject` with `If-None-Match: *`: 412 means the key exists.
    ///
    /// Atomicity is the server's: AWS S3 guarantees that of concurrent conditional writers
    /// exactly one succeeds; some S3-compatible servers (s3s-fs among them) only check for
    /// an existing object before writing. A 409 `ConditionalRequestConflict` (a concurrent
    /// conditional write in flight) is retried. Note that when an attempt's response is lost
    /// (timeout, reset) after the server stored the object, the retry answers `AlreadyExists`
    /// for our own object: callers that must tell the two apart compare the stored bytes.
    fn put_if_absent(&self, key: &str, body: &[u8]) -> Result<PutOutcome, StoreError> {
        let full = self.full_key(key);
        let body = bytes::Bytes::copy_from_slice(body);
        let this = self;
        let (full_ref, body_ref) = (&full, &body);
        self.block(self.run(Op::PutIfAbsent, &full, move || async move {
            let response = this
                .client
                .put_object()
                .bucket(&this.bucket)
                .key(full_ref)
                .if_none_match("*")
                .content_length(body_ref.len() as i64)
                .body(ByteStream::from(body_ref.clone()))
                .send()
                .await;
            match response {
                Ok(_) => Ok(PutOutcome::Created),
                Err(err) => match this.classify(Op::PutIfAbsent, &err) {
                    Class::PreconditionFailed => Ok(PutOutcome::AlreadyExists),
                    Class::Missing => Err(this.failure(Op::PutIfAbsent, &err)),
                    Class::Failed(failure) => Err(failure),
                },
            }
        }))
    }

    /// `ListObjectsV2` with `prefix`, `start-after` and `max-keys`, following continuation
    /// tokens until `limit` keys are collected or the listing ends.
    ///
    /// No delimiter: every key under `prefix` at any depth (`list("", ..)` returns `a.csv`
    /// and `sub/c.csv`), as the local store lists. Keys come back relative to the store's
    /// prefix.
    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let list_prefix = self.full_prefix(prefix);
        let start_after = start_after.map(|s| self.full_key(s));
        let mut token: Option<String> = None;
        loop {
            let want = (limit - out.len()).min(MAX_KEYS_PER_PAGE) as i32;
            let this = self;
            let (lp, sa, tok) = (&list_prefix, &start_after, &token);
            let page = self.block(self.run(Op::List, &list_prefix, move || async move {
                let mut request = this
                    .client
                    .list_objects_v2()
                    .bucket(&this.bucket)
                    .max_keys(want);
                if !lp.is_empty() {
                    request = request.prefix(lp);
                }
                request = match tok {
                    Some(tok) => request.continuation_token(tok),
                    None => request.set_start_after(sa.clone()),
                };
                request
                    .send()
                    .await
                    .map_err(|err| this.failure(Op::List, &err))
            }))?;
            for object in page.contents() {
                let Some(meta) = self.listed(object, &list_prefix, start_after.as_deref()) else {
                    continue;
                };
                out.push(meta);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) && !next.is_empty() => {
                    if token.as_deref() == Some(next) {
                        // A server repeating its token would loop forever.
                        return Ok(out);
                    }
                    token = Some(next.to_string());
                }
                _ => return Ok(out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_jittered() {
        let tuning = S3Tuning::default();
        for attempt in 1..20 {
            let d = tuning.delay_after(attempt);
            assert!(d <= tuning.max_delay, "{attempt}: {d:?}");
            let full = tuning
                .base_delay
                .saturating_mul(1 << (attempt - 1).min(30))
                .min(tuning.max_delay);
            assert!(d >= full / 2, "{attempt}: {d:?}");
        }
        assert!(tuning.delay_after(1) < Duration::from_millis(50));
    }

    #[test]
    fn an_endpoint_with_credentials_is_refused_unshown() {
        assert_eq!(check_endpoint("http://127.0.0.1:9000"), Ok(()));
        assert_eq!(check_endpoint("https://s3.example/base"), Ok(()));
        for endpoint in [
            "http://AKIA:LeakMe@127.0.0.1:9000",
            "http://127.0.0.1:9000/?X-Amz-Security-Token=LeakMe",
            "http://AKIA@127.0.0.1:9000",
            "ftp://u:LeakMe@h",
        ] {
            let message = check_endpoint(endpoint).unwrap_err();
            assert!(message.contains("invalid S3 endpoint"), "{message}");
            assert!(!message.contains("LeakMe"), "{message}");
        }
    }

    #[test]
    fn endpoint_override_precedence() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let both = env(&[
            ("AWS_ENDPOINT_URL_S3", "http://s3:1"),
            ("AWS_ENDPOINT_URL", "http://any:2"),
        ]);
        assert_eq!(
            resolve_endpoint(Some("http://opt:3"), both).as_deref(),
            Some("http://opt:3")
        );
        assert_eq!(resolve_endpoint(None, both).as_deref(), Some("http://s3:1"));
        assert_eq!(
            resolve_endpoint(Some(" "), both).as_deref(),
            Some("http://s3:1")
        );
        let any = env(&[
            ("AWS_ENDPOINT_URL_S3", ""),
            ("AWS_ENDPOINT_URL", "http://any:2"),
        ]);
        assert_eq!(resolve_endpoint(None, any).as_deref(), Some("http://any:2"));
        assert_eq!(resolve_endpoint(None, env(&[])), None);
        let ignored = env(&[
            ("AWS_ENDPOINT_URL", "http://any:2"),
            ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
        ]);
        assert_eq!(resolve_endpoint(None, ignored), None);
        assert_eq!(
            resolve_endpoint(Some("http://opt:3"), ignored).as_deref(),
            Some("http://opt:3")
        );
    }
}
