//! The server's Prometheus metrics: their names, and handles on the counters of the hot path.
//!
//! Every metric is named here once (README's "Monitoring" lists them). Counters that move per
//! message are registered once, at their first use, and kept in [`hot`], so that counting a
//! message is one atomic add: no key is built, hashed or looked up, and nothing is allocated.
//! Labels are of small fixed sets (a kind, a reason, a limit) or a peer server's name, never a
//! user's name or anything a message says. Gauges and the per-link counters are read from the
//! server's own state when the metrics are scraped (see `monitor`), so they cost the hot path
//! nothing at all.
//!
//! Without `--metrics-listen` no recorder is installed and every handle is a no-op.

use metrics::{counter, histogram, Counter, Histogram};
use std::sync::LazyLock;
use std::time::Duration;

pub const CONNECTIONS_OPEN: &str = "chat_connections_open";
pub const CONNECTIONS_ACCEPTED: &str = "chat_connections_accepted_total";
pub const CONNECTIONS_REFUSED: &str = "chat_connections_refused_total";
pub const LOGINS: &str = "chat_logins_total";
pub const FAILOVER_LOGINS: &str = "chat_failover_logins_total";
pub const MESSAGES_ACCEPTED: &str = "chat_messages_accepted_total";
pub const MESSAGES_DELIVERED: &str = "chat_messages_delivered_total";
pub const MESSAGES_RELAYED: &str = "chat_messages_relayed_total";
pub const MESSAGES_STORED: &str = "chat_messages_stored_total";
pub const MESSAGES_PENDING: &str = "chat_messages_pending";
pub const DELIVERIES_UNACKNOWLEDGED: &str = "chat_deliveries_unacknowledged";
pub const INBOX_BATCH_ROWS: &str = "chat_inbox_batch_rows";
pub const INBOX_COMMIT_SECONDS: &str = "chat_inbox_commit_seconds";
pub const DATABASE_ERRORS: &str = "chat_database_errors_total";
pub const LINK_UP: &str = "chat_link_up";
pub const LINK_HANDSHAKE_SECONDS: &str = "chat_link_handshake_seconds";
pub const RATE_LIMITED: &str = "chat_rate_limited_total";

/// The buckets of [`INBOX_BATCH_ROWS`]: one row up to the largest batch's default, 4096.
pub const BATCH_ROWS_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];
/// The buckets of [`INBOX_COMMIT_SECONDS`]: from a fast local commit to a database in trouble.
pub const COMMIT_SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The counters and histograms that move per message or per batch, registered once.
pub struct Hot {
    pub messages_accepted: Counter,
    pub messages_delivered: Counter,
    pub messages_stored: Counter,
    pub batch_rows: Histogram,
    pub commit_seconds: Histogram,
}

static HOT: LazyLock<Hot> = LazyLock::new(|| Hot {
    messages_accepted: counter!(MESSAGES_ACCEPTED),
    messages_delivered: counter!(MESSAGES_DELIVERED),
    messages_stored: counter!(MESSAGES_STORED),
    batch_rows: histogram!(INBOX_BATCH_ROWS),
    commit_seconds: histogram!(INBOX_COMMIT_SECONDS),
});

/// The handles of the hot path. The recorder must be installed before the first call, or they
/// stay no-ops (`server::run` installs it before anything counts).
pub fn hot() -> &'static Hot {
    &HOT
}

/// A batch of inbox rows and deletes committed: its size, how long the commit took, and the
/// rows it stored.
pub fn batch_committed(n_rows: usize, n_deletes: usize, took: Duration) {
    let hot = hot();
    hot.batch_rows.record(count_f64(n_rows + n_deletes));
    hot.commit_seconds.record(took.as_secs_f64());
    hot.messages_stored.increment(count_u64(n_rows));
}

/// Makes a fixed-label enum: its variants, each with its label value, and `ALL` of them.
macro_rules! labels {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $label:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant,)+];

            pub fn label(self) -> &'static str {
                match self {
                    $($name::$variant => $label,)+
                }
            }
        }
    };
}

labels!(
    /// Why a client connection was refused before it could log in.
    Refusal {
        /// `--max-connections` were open.
        MaxConnections => "max_connections",
        /// `--max-connections-per-address` were open from its address.
        PerAddress => "per_address",
        /// The handshake or the hello failed, was too slow, or spoke another protocol version.
        Handshake => "handshake",
    }
);

labels!(
    /// How a user logged in, or tried to.
    LoginKind {
        Password => "password",
        Ticket => "ticket",
    }
);

labels!(
    /// What failed to reach or use the database.
    DbWork {
        /// A client's request (a login, a group send, `readlog`, ...).
        Request => "request",
        /// The heartbeat and the read of the registry.
        Heartbeat => "heartbeat",
        /// A batch of inbox rows and deletes.
        InboxBatch => "inbox_batch",
    }
);

labels!(
    /// A limit that refused something a client asked for.
    Limit {
        /// Frames faster than `--max-frames-per-sec`: the request is refused.
        Frames => "frames",
        /// Frames faster than twice that, sustained: the connection is closed.
        Flood => "flood",
        /// New accounts from one address beyond `--max-registrations-per-hour`.
        Registrations => "registrations",
        /// Logins delayed after failed ones.
        FailedLogins => "failed_logins",
        /// The password hashing queue was full or its wait too long.
        HashQueue => "hash_queue",
    }
);

const LOGIN_RESULTS: [&str; 2] = ["ok", "failed"];

pub fn connection_accepted() {
    counter!(CONNECTIONS_ACCEPTED).increment(1);
}

pub fn connection_refused(refusal: Refusal) {
    counter!(CONNECTIONS_REFUSED, "reason" => refusal.label()).increment(1);
}

pub fn login(kind: LoginKind, ok: bool) {
    let result = LOGIN_RESULTS[usize::from(!ok)];
    counter!(LOGINS, "kind" => kind.label(), "result" => result).increment(1);
}

/// A user logged in here whose home, in this server's view of the ring, is another server.
pub fn failover_login() {
    counter!(FAILOVER_LOGINS).increment(1);
}

pub fn database_error(work: DbWork) {
    counter!(DATABASE_ERRORS, "work" => work.label()).increment(1);
}

pub fn rate_limited(limit: Limit) {
    counter!(RATE_LIMITED, "limit" => limit.label()).increment(1);
}

/// Registers every counter of fixed labels at zero, so that a scrape shows each series from
/// the start (a rate over a series that appears only at its first event misses that event).
pub fn register_all() {
    let _ = hot();
    for name in [CONNECTIONS_ACCEPTED, FAILOVER_LOGINS] {
        counter!(name).absolute(0);
    }
    for refusal in Refusal::ALL {
        counter!(CONNECTIONS_REFUSED, "reason" => refusal.label()).absolute(0);
    }
    for kind in LoginKind::ALL {
        for result in LOGIN_RESULTS {
            counter!(LOGINS, "kind" => kind.label(), "result" => result).absolute(0);
        }
    }
    for work in DbWork::ALL {
        counter!(DATABASE_ERRORS, "work" => work.label()).absolute(0);
    }
    for limit in Limit::ALL {
        counter!(RATE_LIMITED, "limit" => limit.label()).absolute(0);
    }
}

/// A count as a metric value; counts beyond 2^53 lose precision, which no batch reaches.
#[allow(clippy::cast_precision_loss)]
fn count_f64(count: usize) -> f64 {
    count as f64
}

fn count_u64(count: usize) -> u64 {
    u64::try_from(count).unwrap_or(u64::MAX)
}
