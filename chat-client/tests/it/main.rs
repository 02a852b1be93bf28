//! Integration tests of the chat client against a scripted fake server on loopback.

mod binary;
mod failover;
mod fake_server;
mod farm;
mod keys;
mod session;
mod support;
