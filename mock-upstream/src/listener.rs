//! The main port's listening socket, closed for an `outage: refuse` and bound again when
//! the outage ends.
//!
//! Closing the socket is what makes the outage real: the kernel then answers new
//! connection attempts with RST, so clients see "connection refused" at connect time, as
//! with an upstream that is down, instead of a connection that opens and then dies.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::faults::Outage;
use crate::server::State;

/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_RETRY: Duration = Duration::from_millis(10);
/// Pause between attempts to bind the port again after an outage.
const REBIND_RETRY: Duration = Duration::from_millis(100);

/// The main listener; `accept` hides the outage's close and rebind.
pub(crate) struct MainListener {
    /// The bound address (the real port, also when `--listen` asked for port 0).
    addr: SocketAddr,
    /// `None` while an `outage: refuse` holds the port closed.
    listener: Option<TcpListener>,
    outage: watch::Receiver<Outage>,
    state: Arc<State>,
}

impl MainListener {
    /// Takes over `listener`; publishes "listening" in `state`.
    pub(crate) fn new(listener: TcpListener, state: Arc<State>) -> io::Result<MainListener> {
        let addr = listener.local_addr()?;
        state.listening.send_replace(true);
        Ok(MainListener {
            addr,
            listener: Some(listener),
            outage: state.faults.subscribe_outage(),
            state,
        })
    }

    /// The next accepted connection. While an `outage: refuse` is on the port is closed
    /// and this waits for the outage to end.
    pub(crate) async fn accept(&mut self) -> TcpStream {
        loop {
            let Some(listener) = &self.listener else {
                self.reopen().await;
                continue;
            };
            let refuse = tokio::select! {
                () = until_refusing(&mut self.outage, true) => true,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => return stream,
                    Err(err) => {
                        eprintln!("mock-upstream: accept failed: {err}");
                        false
                    }
                },
            };
            if refuse {
                // Dropping the socket closes it; connections still in its backlog get RST.
                self.listener = None;
                self.state.listening.send_replace(false);
            } else {
                tokio::time::sleep(ACCEPT_RETRY).await;
            }
        }
    }

    /// Waits for the refuse outage to end, then binds the same address again (retrying
    /// while something else holds it).
    async fn reopen(&mut self) {
        until_refusing(&mut self.outage, false).await;
        loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => {
                    self.listener = Some(listener);
                    self.state.listening.send_replace(true);
                    return;
                }
                Err(err) => {
                    eprintln!(
                        "mock-upstream: cannot listen on {} again after the outage: {err}; retrying",
                        self.addr
                    );
                    tokio::time::sleep(REBIND_RETRY).await;
                }
            }
        }
    }
}

/// Resolves once an `outage: refuse` is on (`refusing`) or off (`!refusing`).
async fn until_refusing(outage: &mut watch::Receiver<Outage>, refusing: bool) {
    let seen = outage
        .wait_for(|o| (*o == Outage::Refuse) == refusing)
        .await
        .is_ok();
    if !seen {
        // The sender lives in the server state, which outlives this loop: unreachable in
        // practice, and "never" is the right answer if it happens.
        std::future::pending::<()>().await;
    }
}
