//! How a connection's reader watches for the end of a run.

use futures::{Stream, StreamExt as _};
use std::pin::Pin;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// A reader's watch on the run's stop token.
///
/// What is ready on the connection comes first, and the token is polled last: a look at it
/// takes a lock and a place among its waiters, and under load nearly every frame is ready when
/// asked for. Because of that order, a connection that ends or fails once the run is stopped
/// is taken as the end, not as an error.
pub struct StopWatch<'a> {
    token: &'a CancellationToken,
    stopped: Pin<Box<WaitForCancellationFuture<'a>>>,
}

impl<'a> StopWatch<'a> {
    pub fn new(token: &'a CancellationToken) -> StopWatch<'a> {
        StopWatch {
            token,
            stopped: Box::pin(token.cancelled()),
        }
    }

    /// The next of `stream`'s items (`None` inside: the stream ended), or `None` once the run
    /// is stopped.
    pub async fn next<S, T, E>(&mut self, stream: &mut S) -> Option<Option<Result<T, E>>>
    where
        S: Stream<Item = Result<T, E>> + Unpin,
    {
        let item = tokio::select! {
            biased;
            item = stream.next() => item,
            () = &mut self.stopped => return None,
        };
        match item {
            Some(Ok(_)) => Some(item),
            _ if self.token.is_cancelled() => None,
            _ => Some(item),
        }
    }
}
