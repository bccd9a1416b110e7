//! A blocking PostgreSQL client whose every round trip has a deadline.
//!
//! The `postgres` crate's blocking client waits for an answer without bound, and even
//! dropping it waits (it says goodbye and awaits the end of the connection), so a frozen
//! server (`SIGSTOP`, a paused VM, a peer whose kernel still acknowledges our packets) holds
//! the store forever, without a log line. This client runs tokio-postgres on a
//! current-thread runtime of its own: every call is driven together with the connection and
//! given up after the deadline ([`CallError::TimedOut`]), and dropping the client drops the
//! runtime, which closes the socket without waiting for the server.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Duration;

use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::types::{FromSqlOwned, ToSql};
use tokio_postgres::{Config, GenericClient, IsolationLevel, Row, Socket, Statement, ToStatement};

/// Why one call failed.
#[derive(Debug)]
pub(super) enum CallError {
    /// PostgreSQL's error, or the connection's.
    Pg(tokio_postgres::Error),
    /// No answer within the deadline: the server (or the path to it) is stuck.
    TimedOut(Duration),
}

impl From<tokio_postgres::Error> for CallError {
    fn from(e: tokio_postgres::Error) -> Self {
        CallError::Pg(e)
    }
}

/// The connection's messages (server notices, errors, the end of the stream) as one future.
type Connection = Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send>>;

/// The runtime and the connection a call is driven on, and the calls' deadline.
pub(super) struct Io {
    /// `None` once the connection has ended (its error, if any, went to the call that saw it).
    connection: RefCell<Option<Connection>>,
    deadline: Duration,
    /// Last, so that it is dropped last (tasks and socket with it).
    runtime: tokio::runtime::Runtime,
}

impl Io {
    /// Runs `call` to its end, driving the connection meanwhile, for at most the deadline.
    fn wait<T>(
        &self,
        call: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, CallError> {
        let mut connection = self.connection.borrow_mut();
        let mut call = pin!(call);
        let driven = poll_fn(|cx| {
            if let Some(conn) = connection.as_mut() {
                match conn.as_mut().poll(cx) {
                    Poll::Ready(Err(e)) => {
                        *connection = None;
                        return Poll::Ready(Err(e));
                    }
                    // Ended: the call's answer can no longer come; it fails as closed.
                    Poll::Ready(Ok(())) => *connection = None,
                    Poll::Pending => {}
                }
            }
            call.as_mut().poll(cx)
        });
        let deadline = self.deadline;
        match self
            .runtime
            .block_on(async { tokio::time::timeout(deadline, driven).await })
        {
            Ok(answer) => answer.map_err(CallError::Pg),
            Err(_) => Err(CallError::TimedOut(deadline)),
        }
    }
}

/// A connection to PostgreSQL.
pub(super) struct Client {
    client: tokio_postgres::Client,
    io: Io,
}

/// An open transaction: rolled back when dropped without [`Transaction::commit`] (the
/// ROLLBACK is queued, not awaited).
pub(super) struct Transaction<'a> {
    tx: tokio_postgres::Transaction<'a>,
    io: &'a Io,
}

impl Client {
    /// Connects (TCP, TLS, authentication) within `bound`; the calls that follow each have
    /// `deadline`.
    pub(super) fn connect<T>(
        config: &Config,
        tls: T,
        bound: Duration,
        deadline: Duration,
    ) -> Result<Client, ConnectError>
    where
        T: MakeTlsConnect<Socket> + Send + 'static,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as tokio_postgres::tls::TlsConnect<Socket>>::Future: Send,
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ConnectError::Runtime)?;
        let connecting =
            runtime.block_on(async { tokio::time::timeout(bound, config.connect(tls)).await });
        let (client, connection) = match connecting {
            Ok(connected) => connected.map_err(|e| ConnectError::Call(CallError::Pg(e)))?,
            Err(_) => return Err(ConnectError::Call(CallError::TimedOut(bound))),
        };
        Ok(Client {
            client,
            io: Io {
                connection: RefCell::new(Some(Box::pin(connection))),
                deadline,
                runtime,
            },
        })
    }

    pub(super) fn transaction(&mut self) -> Result<Transaction<'_>, CallError> {
        let io = &self.io;
        let tx = io.wait(self.client.transaction())?;
        Ok(Transaction { tx, io })
    }

    /// A read-only transaction on one snapshot (REPEATABLE READ).
    pub(super) fn snapshot(&mut self) -> Result<Transaction<'_>, CallError> {
        let io = &self.io;
        let start = self
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start();
        let tx = io.wait(start)?;
        Ok(Transaction { tx, io })
    }
}

impl Transaction<'_> {
    pub(super) fn commit(self) -> Result<(), CallError> {
        self.io.wait(self.tx.commit())
    }
}

/// Why [`Client::connect`] failed.
#[derive(Debug)]
pub(super) enum ConnectError {
    /// The client's runtime could not be started (out of threads or file descriptors).
    Runtime(std::io::Error),
    Call(CallError),
}

/// The calls the store makes, on a connection or inside a transaction alike.
pub(super) trait Queries {
    type Inner: GenericClient + Sync;

    fn parts(&self) -> (&Self::Inner, &Io);

    fn query<T>(&mut self, query: &T, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, CallError>
    where
        T: ?Sized + ToStatement + Sync + Send,
    {
        let (client, io) = self.parts();
        io.wait(client.query(query, params))
    }

    fn query_one<T>(&mut self, query: &T, params: &[&(dyn ToSql + Sync)]) -> Result<Row, CallError>
    where
        T: ?Sized + ToStatement + Sync + Send,
    {
        let (client, io) = self.parts();
        io.wait(client.query_one(query, params))
    }

    /// The first column of the one row `query` returns.
    fn query_value<T, V>(
        &mut self,
        query: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<V, CallError>
    where
        T: ?Sized + ToStatement + Sync + Send,
        V: FromSqlOwned,
    {
        Ok(self.query_one(query, params)?.try_get(0)?)
    }

    fn execute<T>(&mut self, query: &T, params: &[&(dyn ToSql + Sync)]) -> Result<u64, CallError>
    where
        T: ?Sized + ToStatement + Sync + Send,
    {
        let (client, io) = self.parts();
        io.wait(client.execute(query, params))
    }

    fn batch_execute(&mut self, sql: &str) -> Result<(), CallError> {
        let (client, io) = self.parts();
        io.wait(client.batch_execute(sql))
    }

    fn prepare(&mut self, sql: &str) -> Result<Statement, CallError> {
        let (client, io) = self.parts();
        io.wait(client.prepare(sql))
    }
}

impl Queries for Client {
    type Inner = tokio_postgres::Client;

    fn parts(&self) -> (&tokio_postgres::Client, &Io) {
        (&self.client, &self.io)
    }
}

impl<'a> Queries for Transaction<'a> {
    type Inner = tokio_postgres::Transaction<'a>;

    fn parts(&self) -> (&tokio_postgres::Transaction<'a>, &Io) {
        (&self.tx, self.io)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// A peer whose kernel accepts the connection but which never answers (a frozen
    /// server): connecting is given up at the bound instead of waiting forever.
    #[test]
    fn a_server_that_never_answers_is_given_up_at_the_bound() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut config = Config::new();
        config
            .host("127.0.0.1")
            .port(listener.local_addr().unwrap().port())
            .user("txflow")
            .ssl_mode(tokio_postgres::config::SslMode::Disable);
        let started = Instant::now();
        let bound = Duration::from_millis(300);
        let outcome = Client::connect(&config, tokio_postgres::NoTls, bound, bound);
        assert!(
            matches!(outcome, Err(ConnectError::Call(CallError::TimedOut(b))) if b == bound),
            "{:?}",
            outcome.err()
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }
}
