//! Paths and addresses as the binaries' command lines take them.

use std::net::TcpListener;
use std::path::Path;

/// A path as a command-line argument (the tests' temp paths are UTF-8).
pub fn s(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// The `--state` URL of the SQLite database file `path`.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// A 127.0.0.1 port nothing listens on now (bound to port 0, read, released): free for a
/// server to take, or closed for a client to be refused.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}
