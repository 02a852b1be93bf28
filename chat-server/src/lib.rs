//! A stateless chat server of the farm.
//!
//! Clients log in, chat and read their offline messages here; all durable state lives in the
//! shared PostgreSQL database, so any server can die without taking anything with it.
//!
//! The modules, from the bottom up: each imports only modules listed before it (the first
//! eight import none), so that nothing below `server` knows the whole server. The `layers`
//! test checks it.
//!
//! - `config`: the command-line flags.
//! - `keys`: the farm and cluster keys, this process's link key, and `chat-server keygen`.
//! - `password`: argon2id hashing off the async threads, a bounded number at once, in reused
//!   buffers.
//! - `limits`: the request rate per connection, connections and registrations per source
//!   address, and delays after failed logins.
//! - `outbound`: a connection's bounded outbound queue, the only way to write to its socket.
//! - `paging`: the keyset rule of every paged list: the first names after a cursor.
//! - `telemetry`: the Prometheus metrics' names, and the handles of the hot path's counters.
//! - `tickets`: resume tickets sealed and opened with a key derived from the cluster key.
//! - `forwarding`: the tag with which a front end (the web gateway) vouches for its user's
//!   address, so that per-address limits count that address.
//! - `connection`: what sessions and links share: the handshake driver, the writer task, and
//!   their timeouts.
//! - `store`: the PostgreSQL store and its migrations; the only module that speaks SQL.
//! - `farm`: the registry (heartbeats, live servers), the ring, and who serves which user.
//! - `cache`: the cache under `members` and `revocation`, kept only while coherent.
//! - `members`: the groups' members, cached for sends; joins, leaves and the links invalidate
//!   them.
//! - `revocation`: the users' ticket revocation epochs, cached the same way.
//! - `hub`, `presence`: who is logged in here; who is logged in on the other servers, as their
//!   links report it.
//! - `links`: the persistent links to the other servers.
//! - `delivery`: pending messages, acknowledgements, and the group-commit writer.
//! - `commands`: what each client request does, one file per family of commands.
//! - `session`: one client connection: hello, read loop (which answers pings while a login
//!   waits), writer task.
//! - `console`: admin commands, on standard input and through `admin`.
//! - `admin`: the admin socket, local and owner-only, and the `chat-server admin` client.
//! - `monitor`: `--metrics-listen`: /metrics, /healthz and /readyz over HTTP.
//! - `server`: start-up, the accept loops and graceful shutdown; it makes each kind of task's
//!   context.
//!
//! The server must never panic on anything a client sends, and never log a password.

pub mod admin;
pub mod cache;
pub mod commands;
pub mod config;
pub mod connection;
pub mod console;
pub mod delivery;
pub mod farm;
pub mod forwarding;
pub mod hub;
pub mod keys;
#[cfg(test)]
mod layers;
pub mod limits;
pub mod links;
pub mod members;
pub mod monitor;
pub mod outbound;
pub mod paging;
pub mod password;
pub mod presence;
pub mod revocation;
pub mod server;
pub mod session;
pub mod store;
pub mod telemetry;
pub mod tickets;

pub use config::Config;
pub use server::run;
