//! `--metrics-listen`: Prometheus metrics and the health checks, over HTTP on a port of their
//! own.
//!
//! - `GET /metrics`: every metric in Prometheus's text format. The gauges and the per-link
//!   counters are read from the server's state at that moment (see `telemetry`).
//! - `GET /healthz`: 200 while the process answers at all.
//! - `GET /readyz`: 200 when this server is registered and serving, linked with every live
//!   server, and able to reach the database; otherwise 503 with a short reason in plain text.
//!
//! hyper's HTTP/1 server alone does it: three fixed paths need no router. Each connection is a
//! task of its own, bounded by [`MAX_CONNECTIONS`], and each has [`REQUEST_TIMEOUT`] to send its
//! request.

use crate::delivery::Delivery;
use crate::farm::{Farm, HEARTBEAT_INTERVAL};
use crate::links::Links;
use crate::telemetry::{self, BATCH_ROWS_BUCKETS, COMMIT_SECONDS_BUCKETS};
use anyhow::Context;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics::{counter, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Scrapes and probes served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 64;
/// How long a connection may take to send its request headers.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A heartbeat older than this means the database does not answer: three missed beats.
const DATABASE_STALE: Duration = Duration::from_secs(3 * HEARTBEAT_INTERVAL.as_secs());

/// Installs the process's Prometheus recorder, before anything counts, and returns the
/// handle that renders it.
pub fn install_recorder() -> anyhow::Result<PrometheusHandle> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(telemetry::INBOX_BATCH_ROWS.into()),
            BATCH_ROWS_BUCKETS,
        )
        .and_then(|builder| {
            builder.set_buckets_for_metric(
                Matcher::Full(telemetry::INBOX_COMMIT_SECONDS.into()),
                COMMIT_SECONDS_BUCKETS,
            )
        })
        .context("bad histogram buckets")?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|_| anyhow::anyhow!("a metrics recorder is already installed"))?;
    describe();
    telemetry::register_all();
    Ok(handle)
}

/// Binds `--metrics-listen`; a bad address or a port in use is an error at start.
pub async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr}"))
}

/// What the metrics endpoint reads.
pub struct MonitorContext {
    pub prometheus: PrometheusHandle,
    pub farm: Arc<Farm>,
    pub links: Arc<Links>,
    pub delivery: Arc<Delivery>,
    /// One permit per client connection; those taken are the connections open.
    pub connections: Arc<Semaphore>,
    pub max_connections: usize,
    /// Cancelled when the server starts to shut down: it is no longer ready.
    pub shutdown: CancellationToken,
}

/// Serves the metrics and the health checks on `listener` until the process exits. It runs
/// through shutdown (answering /readyz with 503), so it is not tracked.
pub async fn serve(listener: TcpListener, ctx: Arc<MonitorContext>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::warn!(%err, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let ctx = ctx.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&ctx, &request)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(REQUEST_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(err) = connection.await {
                tracing::debug!(%err, "metrics connection failed");
            }
            drop(permit);
        });
    }
}

/// The answer to one request.
fn answer(ctx: &MonitorContext, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    match request.uri().path() {
        "/metrics" => {
            sample(ctx);
            let mut response = text(StatusCode::OK, ctx.prometheus.render());
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            response
        }
        "/healthz" => text(StatusCode::OK, "alive\n".into()),
        "/readyz" => match readiness(ctx) {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: /metrics, /healthz or /readyz\n".into(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

/// Ready: registered and serving, linked with every live server, and able to reach the
/// database; otherwise why not.
fn readiness(ctx: &MonitorContext) -> Result<(), String> {
    if ctx.shutdown.is_cancelled() {
        return Err("not ready: shutting down".into());
    }
    if !ctx.links.is_serving() {
        return Err("not ready: starting, not serving clients yet".into());
    }
    let since_heartbeat = ctx.farm.since_heartbeat();
    check_database(since_heartbeat)?;
    check_links(&ctx.links.unlinked(&ctx.farm.view()))
}

/// The database is reachable while the last heartbeat succeeded, recently.
fn check_database(since_heartbeat: Option<Duration>) -> Result<(), String> {
    match since_heartbeat {
        None => Err("not ready: cannot reach the database (the last heartbeat failed)".into()),
        Some(age) if age > DATABASE_STALE => Err(format!(
            "not ready: cannot reach the database (no heartbeat for {} ms)",
            age.as_millis()
        )),
        Some(_) => Ok(()),
    }
}

fn check_links(unlinked: &[String]) -> Result<(), String> {
    if unlinked.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "not ready: not linked with {}",
            unlinked.join(", ")
        ))
    }
}

/// Reads the gauges and the per-link counters from the server's state.
fn sample(ctx: &MonitorContext) {
    let open = ctx
        .max_connections
        .saturating_sub(ctx.connections.available_permits());
    gauge!(telemetry::CONNECTIONS_OPEN).set(count(open));
    let (n_pending, n_unacknowledged) = ctx.delivery.backlog();
    gauge!(telemetry::MESSAGES_PENDING).set(count(n_pending));
    gauge!(telemetry::DELIVERIES_UNACKNOWLEDGED).set(count(n_unacknowledged));
    let view = ctx.farm.view();
    let live: Vec<&str> = view.live_peers().map(|peer| peer.name.as_str()).collect();
    for (peer, up, stats) in ctx.links.report() {
        use std::sync::atomic::Ordering::Relaxed;
        let relayed = stats.delivers_out.load(Relaxed);
        counter!(telemetry::MESSAGES_RELAYED, "peer" => peer.clone()).absolute(relayed);
        let handshake = Duration::from_micros(stats.handshake_us.load(Relaxed));
        gauge!(telemetry::LINK_HANDSHAKE_SECONDS, "peer" => peer.clone())
            .set(handshake.as_secs_f64());
        gauge!(telemetry::LINK_UP, "peer" => peer).set(if up { 1.0 } else { 0.0 });
    }
    // A live peer never linked yet has no counters: it is down all the same.
    for peer in live {
        if !ctx.links.is_up(peer) {
            gauge!(telemetry::LINK_UP, "peer" => peer.to_owned()).set(0.0);
        }
    }
}

/// A count as a gauge's value.
#[allow(clippy::cast_precision_loss)]
fn count(count: usize) -> f64 {
    count as f64
}

/// The HELP line of every metric.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    use telemetry::*;
    describe_gauge!(CONNECTIONS_OPEN, "Client connections open");
    describe_counter!(CONNECTIONS_ACCEPTED, "Client connections past the hello");
    describe_counter!(
        CONNECTIONS_REFUSED,
        "Client connections refused at the hello"
    );
    describe_counter!(LOGINS, "Logins, by kind (password, ticket) and result");
    describe_counter!(
        FAILOVER_LOGINS,
        "Logins here of users whose home on the ring is another server"
    );
    describe_counter!(MESSAGES_ACCEPTED, "Messages taken from senders here");
    describe_counter!(
        MESSAGES_DELIVERED,
        "Messages pushed to client sessions here"
    );
    describe_counter!(MESSAGES_RELAYED, "Messages relayed to a peer server");
    describe_counter!(MESSAGES_STORED, "Inbox rows committed");
    describe_gauge!(MESSAGES_PENDING, "Messages owned here and not yet sent");
    describe_gauge!(
        DELIVERIES_UNACKNOWLEDGED,
        "Deliveries of pending messages neither acknowledged nor stored"
    );
    describe_histogram!(
        INBOX_BATCH_ROWS,
        "Rows inserted and deleted per inbox batch"
    );
    describe_histogram!(
        INBOX_COMMIT_SECONDS,
        Unit::Seconds,
        "Time to commit one inbox batch"
    );
    describe_counter!(DATABASE_ERRORS, "Database failures, by work");
    describe_gauge!(LINK_UP, "1 while the link to a peer is up, else 0");
    describe_gauge!(
        LINK_HANDSHAKE_SECONDS,
        Unit::Seconds,
        "Duration of the last link handshake with a peer: one round trip"
    );
    describe_counter!(RATE_LIMITED, "Requests and connections refused by a limit");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_reachable_while_heartbeats_succeed() {
        assert_eq!(check_database(Some(Duration::from_millis(900))), Ok(()));
        let failed = check_database(None).unwrap_err();
        assert!(failed.contains("last heartbeat failed"), "{failed}");
        let stale = check_database(Some(Duration::from_millis(3500))).unwrap_err();
        assert!(stale.contains("no heartbeat for 3500 ms"), "{stale}");
    }

    #[test]
    fn counters_are_named_total_and_start_at_zero() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            telemetry::register_all();
            telemetry::login(telemetry::LoginKind::Ticket, false);
        });
        let text = handle.render();
        let mut n_counters = 0;
        for line in text.lines() {
            if let Some(typed) = line.strip_prefix("# TYPE ") {
                let (name, kind) = typed.split_once(' ').unwrap();
                assert!(name.starts_with("chat_"), "{line}");
                assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
                n_counters += usize::from(kind == "counter");
            }
        }
        assert!(n_counters >= 6, "{text}");
        assert!(
            text.contains("chat_rate_limited_total{limit=\"hash_queue\"} 0"),
            "{text}"
        );
        let failed = "chat_logins_total{kind=\"ticket\",result=\"failed\"} 1";
        assert!(text.contains(failed), "{text}");
    }

    #[test]
    fn every_unlinked_server_is_named() {
        assert_eq!(check_links(&[]), Ok(()));
        assert_eq!(
            check_links(&["s2".into(), "s3".into()]),
            Err("not ready: not linked with s2, s3".into())
        );
    }
}
