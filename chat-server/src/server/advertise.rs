//! The addresses a server registers: what `--advertise` and `--advertise-peer` give, or the
//! bound address when they give nothing.

use anyhow::Context;
use std::net::SocketAddr;

/// The address to register for a listener bound at `bound`: `--advertise` may give the host,
/// or the host and the port.
pub(super) fn advertised(
    advertise: Option<&str>,
    bound: SocketAddr,
) -> anyhow::Result<(String, u16)> {
    match advertise.map(split_host_port) {
        Some((host, Some(port))) => {
            let port = port
                .parse()
                .with_context(|| format!("bad port {port:?} in --advertise"))?;
            Ok((host.to_owned(), port))
        }
        Some((host, None)) => Ok((host.to_owned(), bound.port())),
        None if bound.ip().is_unspecified() => anyhow::bail!(
            "listening on {bound}, which nobody can dial; set --advertise to this machine's \
             address"
        ),
        None => Ok((bound.ip().to_string(), bound.port())),
    }
}

/// Splits `host`, `host:port`, `[v6]` or `[v6]:port`; a bare IPv6 address is all host.
pub(super) fn split_host_port(addr: &str) -> (&str, Option<&str>) {
    if let Some(rest) = addr.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, port)) => (host, port.strip_prefix(':')),
            None => (rest, None),
        };
    }
    match addr.split_once(':') {
        Some((host, port)) if !port.contains(':') => (host, Some(port)),
        _ => (addr, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(advertise: Option<&str>, bound: &str, expected: Result<(&str, u16), &str>) {
        let bound: SocketAddr = bound.parse().unwrap();
        let got = advertised(advertise, bound).map_err(|err| err.to_string());
        let expected = expected
            .map(|(host, port)| (host.to_owned(), port))
            .map_err(str::to_owned);
        assert_eq!(got, expected);
    }

    #[test]
    fn advertised_addresses() {
        check(None, "127.0.0.1:7000", Ok(("127.0.0.1", 7000)));
        check(
            Some("chat1.example"),
            "0.0.0.0:7000",
            Ok(("chat1.example", 7000)),
        );
        check(
            Some("10.0.0.5:9000"),
            "0.0.0.0:7000",
            Ok(("10.0.0.5", 9000)),
        );
        check(
            Some("[2001:db8::5]:9000"),
            "[::]:7000",
            Ok(("2001:db8::5", 9000)),
        );
        check(Some("2001:db8::5"), "[::]:7000", Ok(("2001:db8::5", 7000)));
        check(
            Some("h:x"),
            "0.0.0.0:7000",
            Err("bad port \"x\" in --advertise"),
        );
        check(
            None,
            "0.0.0.0:7000",
            Err(
                "listening on 0.0.0.0:7000, which nobody can dial; set --advertise to this \
                 machine's address",
            ),
        );
    }
}
