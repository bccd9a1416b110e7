//! TLS for the PostgreSQL store: libpq's TLS options in the URL that tokio-postgres does not
//! take (`sslrootcert`, `sslmode=verify-ca|verify-full`), and the rustls connector.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::StateError;
use crate::redact;

/// Takes libpq's TLS options that tokio-postgres rejects out of a URL: `sslrootcert=PATH`
/// becomes the CA file, `sslmode=verify-ca|verify-full` becomes `require` (rustls always
/// verifies chain and host name). Client-certificate options are refused.
pub(super) fn split_libpq_options(url: &str) -> Result<(String, Option<PathBuf>), StateError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None));
    };
    if !url.contains("://") {
        return Ok((url.to_string(), None));
    }
    let mut kept = Vec::new();
    let mut ca_file = None;
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
        match key {
            "sslrootcert" => {
                let path = percent_decode(value);
                if path != "system" {
                    ca_file = Some(PathBuf::from(path));
                }
            }
            "sslmode" if matches!(value, "verify-ca" | "verify-full") => {
                kept.push("sslmode=require".to_string())
            }
            "sslcert" | "sslkey" | "sslpassword" | "sslcrl" | "sslcrldir" => {
                return Err(StateError::BadUrl {
                    url: redact::url(url),
                    reason: format!("{key}: TLS client certificates are not supported"),
                })
            }
            _ => kept.push(kv.to_string()),
        }
    }
    let clean = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((clean, ca_file))
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The rustls connector: roots from the CA file, else the Mozilla roots; ring provider.
pub(super) fn tls_connector(ca_file: Option<&Path>) -> Result<MakeRustlsConnect, StateError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let io_err = |source| StateError::Io {
                op: "reading TLS CA certificates from",
                path: path.display().to_string(),
                source,
            };
            let pem = std::fs::read(path).map_err(io_err)?;
            let certs = rustls_pemfile::certs(&mut pem.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(io_err)?;
            let (added, _ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(io_err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "no usable PEM certificate found",
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StateError::Inconsistent(format!("TLS configuration: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_libpq_tls_options() {
        let (url, ca) = split_libpq_options(
            "postgres://u:pw@h/db?sslmode=verify-full&sslrootcert=%2Fetc%2Frds.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://u:pw@h/db?sslmode=require&application_name=x"
        );
        assert_eq!(ca, Some(PathBuf::from("/etc/rds.pem")));
        let (url, ca) = split_libpq_options("postgres://h/db?sslrootcert=system").unwrap();
        assert_eq!((url.as_str(), ca), ("postgres://h/db", None));
        assert!(split_libpq_options("postgres://h/db?sslcert=a.pem").is_err());
        assert_eq!(
            split_libpq_options("postgres://h/db").unwrap().0,
            "postgres://h/db"
        );
    }

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("%2Ftmp%2Fa b%"), "/tmp/a b%");
        assert_eq!(percent_decode("x%4"), "x%4");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn builds_tls_config_with_default_roots() {
        assert!(tls_connector(None).is_ok());
        let missing = tls_connector(Some(Path::new("/nonexistent/ca.pem")));
        assert!(matches!(missing, Err(StateError::Io { .. })));
    }
}
