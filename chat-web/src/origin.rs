//! The Origin check of every WebSocket: a browser says which page opens it, and only the
//! farm's own web origins (any server's, live or not: a page stays open after its server
//! died) and the operator's `--web-origin` ones may. Without it any site a user visits could
//! open a socket to the farm in their browser. A request without an Origin header is not a
//! browser's (browsers always send one on a WebSocket) and passes: bots use the socket too.

/// The origin of a URL or an Origin header, as browsers write it: lower-case scheme and host,
/// the port only when it is not the scheme's default, no path. `None` for anything but
/// `http` and `https`.
pub(crate) fn origin_of(url: &str) -> Option<String> {
    let url = url.trim().to_ascii_lowercase();
    let (scheme, rest) = url.split_once("://")?;
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let authority = authority.strip_suffix(default_port).unwrap_or(authority);
    Some(format!("{scheme}://{authority}"))
}

/// Whether a WebSocket whose request said `origin` (`None`: no header) may open, given the
/// allowed origins' URLs.
pub(crate) fn allowed<'a>(
    origin: Option<&str>,
    mut allowed: impl Iterator<Item = &'a str>,
) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let Some(origin) = origin_of(origin) else {
        return false;
    };
    allowed.any(|url| origin_of(url).as_deref() == Some(origin.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_as_browsers_write_them() {
        let check = |url: &str, expected: Option<&str>| {
            assert_eq!(origin_of(url).as_deref(), expected, "{url}");
        };
        check("http://127.0.0.1:8080", Some("http://127.0.0.1:8080"));
        check("HTTPS://Chat.Example:443/", Some("https://chat.example"));
        check("http://chat.example:80/path?q", Some("http://chat.example"));
        check("https://[::1]:8443", Some("https://[::1]:8443"));
        check("null", None);
        check("file:///tmp/x.html", None);
        check("http://user@evil.example", None);
        check("http://", None);
    }

    #[test]
    fn only_the_farm_and_the_operators_origins_pass() {
        let farm = ["http://127.0.0.1:8080", "https://chat.example"];
        let check = |origin: Option<&str>| allowed(origin, farm.iter().copied());
        assert!(check(Some("http://127.0.0.1:8080")));
        assert!(check(Some("https://chat.example:443")));
        assert!(check(None));
        assert!(!check(Some("http://127.0.0.1:8081")));
        assert!(!check(Some("https://evil.example")));
        assert!(!check(Some("http://chat.example")));
        assert!(!check(Some("null")));
    }
}
