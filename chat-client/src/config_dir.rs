//! The client's folder of its own: `$XDG_CONFIG_HOME/chat-client`, or
//! `~/.config/chat-client`. It holds the known-servers file and the line history, as
//! `~/.irssi` holds irssi's.

use std::path::{Path, PathBuf};

/// The folder, or `None` when neither `XDG_CONFIG_HOME` (absolute) nor `HOME` gives a place.
pub fn config_dir() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        // The XDG specification ignores a relative path.
        .filter(|dir| dir.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|home| !home.is_empty())
                .map(|home| Path::new(&home).join(".config"))
        })?;
    Some(config.join("chat-client"))
}
