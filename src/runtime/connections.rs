//! The TCP connections between the processes of a cluster, made here rather than by timely.
//!
//! timely's own set-up (`timely_communication::networking::create_sockets`) reports its
//! retries and waits with `println!`, on stdout: outside the log, its format and `--quiet`,
//! and mixed with the binaries' own output. This is the same handshake, logged through
//! `tracing`: process `i` connects to every process below it, in order, and sends its index
//! (a big-endian `u64`); it accepts one connection from every process above it, which says
//! its index the same way. The sockets then go to timely
//! (`initialize_networking_from_sockets`), which runs the dataflow over them as it would over
//! its own.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Between two attempts to connect to a process that is not listening yet.
const RETRY: Duration = Duration::from_millis(100);

/// How often the listener looks for a new connection.
const ACCEPT_POLL: Duration = Duration::from_millis(10);

/// How long a connecting peer has to say which process it is.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Waiting longer than this for the other processes is logged (once, at `info`).
const PATIENCE: Duration = Duration::from_secs(1);

/// Connects process `me` to every other process of `addresses` (one `host:port` per process;
/// several, separated by spaces, to listen on each). The sockets in process order, `None` at
/// `me`. Waits for the other processes as long as it takes: the caller bounds it.
pub(crate) fn connect_all(addresses: &[String], me: usize) -> io::Result<Vec<Option<TcpStream>>> {
    let listeners = listen(&addresses[me])?;
    let (me_, processes) = (me, addresses.len());
    let accepting = std::thread::Builder::new()
        .name("cluster-accept".into())
        .spawn(move || accept_later_processes(&listeners, me_, processes))?;
    let mut sockets = Vec::with_capacity(processes);
    for (peer, address) in addresses.iter().enumerate().take(me) {
        sockets.push(Some(connect_to(peer, address, me)?));
    }
    sockets.push(None);
    let accepted = accepting
        .join()
        .map_err(|_| io::Error::other("the thread accepting cluster connections failed"))??;
    sockets.extend(accepted.into_iter().map(Some));
    Ok(sockets)
}

fn listen(addresses: &str) -> io::Result<Vec<TcpListener>> {
    addresses
        .split_whitespace()
        .map(|address| {
            let listener = TcpListener::bind(address)
                .map_err(|e| io::Error::new(e.kind(), format!("listening on {address}: {e}")))?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        })
        .collect()
}

/// Connects to process `peer` at `address`, retrying until it listens, and says who we are.
fn connect_to(peer: usize, address: &str, me: usize) -> io::Result<TcpStream> {
    let mut attempts = 0u64;
    loop {
        match TcpStream::connect(address) {
            Ok(mut stream) => {
                stream.set_nodelay(true)?;
                stream.write_all(&(me as u64).to_be_bytes())?;
                tracing::debug!(process = peer, address, "connected to cluster process");
                return Ok(stream);
            }
            Err(e) if attempts == 0 => tracing::info!(
                process = peer,
                address,
                "waiting for cluster process {peer} at {address} to listen ({e}); retrying"
            ),
            Err(e) => tracing::debug!(process = peer, address, "connecting failed ({e}); retrying"),
        }
        attempts += 1;
        std::thread::sleep(RETRY);
    }
}

/// The connections of processes `me + 1 ..`, in process order. A connection that does not
/// say which process it is, or names one not expected (or already connected), is dropped
/// with a warning: a port scanner or a misconfigured process must not take a slot.
fn accept_later_processes(
    listeners: &[TcpListener],
    me: usize,
    processes: usize,
) -> io::Result<Vec<TcpStream>> {
    let mut slots: Vec<Option<TcpStream>> = (me + 1..processes).map(|_| None).collect();
    let started = Instant::now();
    let mut told = false;
    while slots.iter().any(Option::is_none) {
        let mut accepted = false;
        for listener in listeners {
            match listener.accept() {
                Ok((stream, from)) => {
                    accepted = true;
                    take_slot(&mut slots, stream, from, me);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if !accepted {
            if !told && started.elapsed() >= PATIENCE {
                let missing: Vec<String> = (me + 1..processes)
                    .filter(|p| slots[p - me - 1].is_none())
                    .map(|p| p.to_string())
                    .collect();
                tracing::info!(
                    "waiting for cluster processes {} to connect",
                    missing.join(", ")
                );
                told = true;
            }
            std::thread::sleep(ACCEPT_POLL);
        }
    }
    Ok(slots.into_iter().flatten().collect())
}

fn take_slot(slots: &mut [Option<TcpStream>], stream: TcpStream, from: SocketAddr, me: usize) {
    let index = match handshake(&stream) {
        Ok(index) => index,
        Err(e) => {
            tracing::warn!(%from, "a connection did not say which cluster process it is ({e}); dropped");
            return;
        }
    };
    let slot = usize::try_from(index)
        .ok()
        .and_then(|i| i.checked_sub(me + 1))
        .and_then(|i| slots.get_mut(i));
    match slot {
        Some(slot @ None) => {
            tracing::debug!(process = index, %from, "cluster process connected");
            *slot = Some(stream);
        }
        _ => tracing::warn!(
            %from,
            "a connection says it is cluster process {index}, which is not expected to connect \
             to process {me} or is already connected; dropped (every process needs its own -p)"
        ),
    }
}

/// The index the connecting process sends; leaves the stream as timely wants it (blocking,
/// no read timeout, no delay).
fn handshake(stream: &TcpStream) -> io::Result<u64> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    let mut index = [0u8; 8];
    (&*stream).read_exact(&mut index)?;
    stream.set_read_timeout(None)?;
    stream.set_nodelay(true)?;
    Ok(u64::from_be_bytes(index))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_addresses(n: usize) -> Vec<String> {
        let listeners: Vec<TcpListener> = (0..n)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        listeners
            .iter()
            .map(|l| l.local_addr().unwrap().to_string())
            .collect()
    }

    /// Three processes started in any order connect pairwise; each socket leads to the
    /// process at its position (checked by a byte each sends over it).
    #[test]
    fn processes_connect_pairwise_whatever_the_start_order() {
        let addresses = free_addresses(3);
        let threads: Vec<_> = [2usize, 0, 1]
            .into_iter()
            .map(|me| {
                let addresses = addresses.clone();
                let thread = std::thread::spawn(move || (me, connect_all(&addresses, me)));
                std::thread::sleep(Duration::from_millis(150));
                thread
            })
            .collect();
        let mut all: Vec<(usize, Vec<Option<TcpStream>>)> = threads
            .into_iter()
            .map(|t| {
                let (me, sockets) = t.join().unwrap();
                (me, sockets.unwrap())
            })
            .collect();
        all.sort_by_key(|(me, _)| *me);
        for (me, sockets) in &all {
            assert_eq!(sockets.len(), 3);
            assert!(sockets[*me].is_none());
            for socket in sockets.iter().flatten() {
                (&*socket).write_all(&[*me as u8]).unwrap();
            }
        }
        for (me, sockets) in &all {
            for (peer, socket) in sockets.iter().enumerate() {
                if let Some(socket) = socket {
                    let mut byte = [0u8];
                    (&*socket).read_exact(&mut byte).unwrap();
                    assert_eq!(byte[0] as usize, peer, "process {me}'s socket {peer}");
                }
            }
        }
    }

    /// A connection that names no expected process does not take a slot.
    #[test]
    fn a_stray_connection_is_dropped() {
        let addresses = free_addresses(2);
        let zero = {
            let addresses = addresses.clone();
            std::thread::spawn(move || connect_all(&addresses, 0))
        };
        // Says it is process 7, then process 0 (itself): neither is expected.
        for index in [7u64, 0] {
            let mut stray = loop {
                match TcpStream::connect(&addresses[0]) {
                    Ok(stream) => break stream,
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            };
            stray.write_all(&index.to_be_bytes()).unwrap();
        }
        let one = connect_all(&addresses, 1).unwrap();
        let zero = zero.join().unwrap().unwrap();
        assert!(zero[1].is_some() && one[0].is_some());
        one[0].as_ref().unwrap().write_all(b"1").unwrap();
        let mut byte = [0u8];
        zero[1].as_ref().unwrap().read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"1", "process 0's slot 1 is process 1's connection");
    }
}
