//! The prompt's line history, kept across runs in the client's folder (`config_dir`), as irssi
//! keeps its own.
//!
//! Every line typed at the prompt is kept, in memory and appended to the file at once (mode
//! 600, rustyline's format, the last [`MAX_LINES`] lines), except blank lines and **any line
//! that carries a password** ([`keep`]): `login NAME PASSWORD` and `passwd OLD NEW`, with or
//! without a `/`, in any case. `login NAME` alone is kept; its password is asked for without
//! echo and never reaches the history. Two clients at once both append to the file, under
//! rustyline's lock.

use std::path::PathBuf;

/// How many lines the history keeps.
pub const MAX_LINES: usize = 1000;

/// The default history file: `history` in the client's folder.
pub fn default_path() -> Option<PathBuf> {
    Some(crate::config_dir::config_dir()?.join("history"))
}

/// What to keep of a typed line: nothing for a blank line or one with a password, else the
/// line without the whitespace around it.
pub fn keep(line: &str) -> Option<&str> {
    let line = line.trim();
    let mut words = line.split_whitespace();
    let word = words.next()?;
    let word = word.strip_prefix('/').unwrap_or(word).to_ascii_lowercase();
    let n_arguments = words.count();
    let carries_password = match word.as_str() {
        "login" => n_arguments >= 2,
        "passwd" => n_arguments >= 1,
        _ => false,
    };
    (!carries_password).then_some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_with_passwords_are_never_kept() {
        assert_eq!(keep("  "), None);
        assert_eq!(keep("login alice secret"), None);
        assert_eq!(keep("/login alice two words"), None);
        // A command typed in capitals is refused, but its password stays out all the same.
        assert_eq!(keep("LOGIN alice secret"), None);
        assert_eq!(keep("passwd old new"), None);
        assert_eq!(keep("/passwd old"), None);
        assert_eq!(keep("login alice"), Some("login alice"));
        assert_eq!(keep(" passwd "), Some("passwd"));
        assert_eq!(keep(" send bob hi "), Some("send bob hi"));
        assert_eq!(
            keep("send bob login alice secret"),
            Some("send bob login alice secret")
        );
    }
}
