//! Response bodies: a single precomputed buffer, or a paced SSE stream.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::metrics::{Endpoint, InFlight, OpenStream};
use crate::render::StreamParts;
use crate::server::Conn;

/// How long an injected mid-stream reset waits after the last sent piece, so the
/// client has received the partial stream before the connection dies.
const RESET_GRACE: Duration = Duration::from_millis(10);

/// Error that aborts a response body (hyper then drops the connection).
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// `x-mock-reset-rate` chose this stream to be cut.
    #[error("connection reset injected by x-mock-reset-rate")]
    InjectedReset,
}

/// Every response body the mock sends.
#[derive(Debug)]
pub enum MockBody {
    /// One buffer, sent with a content-length.
    Full(Option<Bytes>),
    /// A server-sent-event stream, sent chunked.
    Stream(Box<SseBody>),
}

impl MockBody {
    /// A body of one buffer.
    pub fn full(bytes: Bytes) -> MockBody {
        MockBody::Full(Some(bytes))
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            MockBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            MockBody::Stream(stream) => stream.poll_step(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            MockBody::Full(bytes) => bytes.is_none(),
            MockBody::Stream(stream) => matches!(stream.step, Step::Done),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            MockBody::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            MockBody::Full(None) => SizeHint::with_exact(0),
            MockBody::Stream(_) => SizeHint::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The head piece (role chunk / message_start), sent at once.
    Head,
    /// Step k < tokens sends token k; step k == tokens sends the tail.
    Piece(u32),
    /// Finished (or reset).
    Done,
}

/// A paced stream: head, then `tokens` token pieces (the first after `ttft`, the others
/// `token_delay` apart), then the tail `token_delay` after the last token. The schedule is
/// absolute (measured from the head), so sub-millisecond delays average out correctly.
#[derive(Debug)]
pub struct SseBody {
    parts: StreamParts,
    tokens: u32,
    sent: u32,
    reset_at: Option<u32>,
    ttft: Duration,
    token_delay: Duration,
    step: Step,
    due: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    conn: Arc<Conn>,
    endpoint: Endpoint,
    _in_flight: InFlight,
    _open: OpenStream,
}

/// Pacing of one stream.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Number of token pieces.
    pub tokens: u32,
    /// Delay before the first token.
    pub ttft: Duration,
    /// Delay before each later token and before the tail.
    pub token_delay: Duration,
    /// Reset the connection instead of sending piece k (a token index, or `tokens` for the tail).
    pub reset_at: Option<u32>,
}

impl SseBody {
    /// A stream of `parts` paced by `pace`; `conn` is marked for reset if the stream is cut.
    pub fn new(
        parts: StreamParts,
        pace: Pace,
        conn: Arc<Conn>,
        endpoint: Endpoint,
        in_flight: InFlight,
    ) -> SseBody {
        let open = conn.state.metrics.open_stream();
        SseBody {
            parts,
            tokens: pace.tokens,
            sent: 0,
            reset_at: pace.reset_at,
            ttft: pace.ttft,
            token_delay: pace.token_delay,
            step: Step::Head,
            due: Instant::now(),
            sleep: None,
            conn,
            endpoint,
            _in_flight: in_flight,
            _open: open,
        }
    }

    fn wait_until(&mut self, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
        if deadline <= Instant::now() {
            return Poll::Ready(());
        }
        let sleep = match &mut self.sleep {
            Some(sleep) => {
                if sleep.deadline() != deadline {
                    sleep.as_mut().reset(deadline);
                }
                sleep
            }
            None => self
                .sleep
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        sleep.as_mut().poll(cx)
    }

    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.step {
            Step::Head => {
                self.step = Step::Piece(0);
                self.due = Instant::now();
                Poll::Ready(Some(Ok(Frame::data(self.parts.head.clone()))))
            }
            Step::Piece(k) => {
                let delay = if k == 0 { self.ttft } else { self.token_delay };
                let reset_here = self.reset_at == Some(k);
                if reset_here || !delay.is_zero() {
                    let grace = if reset_here {
                        RESET_GRACE
                    } else {
                        Duration::ZERO
                    };
                    ready!(self.wait_until(self.due + delay + grace, cx));
                }
                self.due += delay;
                if reset_here {
                    self.step = Step::Done;
                    self.conn.reset.store(true, Ordering::Relaxed);
                    return Poll::Ready(Some(Err(BodyError::InjectedReset)));
                }
                if k < self.tokens {
                    self.sent += 1;
                    self.step = Step::Piece(k + 1);
                    Poll::Ready(Some(Ok(Frame::data(self.parts.token.clone()))))
                } else {
                    self.step = Step::Done;
                    Poll::Ready(Some(Ok(Frame::data(self.parts.tail.clone()))))
                }
            }
            Step::Done => Poll::Ready(None),
        }
    }
}

impl Drop for SseBody {
    fn drop(&mut self) {
        self.conn
            .state
            .metrics
            .add_tokens(self.endpoint, u64::from(self.sent));
    }
}
