//! Trust on first use: the farm keys this client has seen, per server address, as SSH keeps
//! `known_hosts`.
//!
//! The file holds one line per server address: `host:port <key in hex>`; blank lines and lines
//! that start with `#` are skipped. A server not in it is trusted the first time and recorded
//! (like SSH's `StrictHostKeyChecking=accept-new`); a server whose key differs from the
//! recorded one is refused, loudly, every time, until the user removes its line. A recorded
//! key that cannot be read counts as a different key.
//!
//! A new line is appended under an exclusive lock on the file, after reading it again, so that
//! two connections (or two clients) meeting the same new server record it once.

use chat_proto::{key_from_hex, key_to_hex};
use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// What the file said about a server's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The key was recorded before and matches.
    Known,
    /// The server was not known; its key is now recorded.
    FirstUse,
}

#[derive(Debug, Error)]
pub enum KnownServersError {
    #[error(
        "the key of {addr} has changed: {path} records {recorded}, the server presented \
         {presented}. Someone may be intercepting the connection, or the farm's key was \
         replaced; if you trust the new key, delete the line for {addr} from {path}"
    )]
    Changed {
        addr: String,
        path: String,
        recorded: String,
        presented: String,
    },
    #[error("cannot use the known-servers file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// The known-servers file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownServers {
    path: PathBuf,
}

impl KnownServers {
    pub fn new(path: PathBuf) -> KnownServers {
        KnownServers { path }
    }

    /// The default place: `$XDG_CONFIG_HOME/chat-client/known_servers`, or
    /// `~/.config/chat-client/known_servers`. `None` when neither variable gives a place.
    pub fn default_path() -> Option<PathBuf> {
        Some(crate::config_dir::config_dir()?.join("known_servers"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks `key` for `addr` against the file, recording it if `addr` is new. Blocks on the
    /// file system.
    pub fn check(&self, addr: &str, key: &[u8; 32]) -> Result<Trust, KnownServersError> {
        let io_error = |source| KnownServersError::Io {
            path: self.path.display().to_string(),
            source,
        };
        let contents = match fs::read_to_string(&self.path) {
            Ok(contents) => contents,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(err) => return Err(io_error(err)),
        };
        if let Some(recorded) = recorded_key(&contents, addr) {
            return self.compare(addr, recorded, key);
        }
        let mut file = self.open_locked().map_err(io_error)?;
        let mut contents = String::new();
        file.read_to_string(&mut contents).map_err(io_error)?;
        // Someone may have recorded it since the first read.
        if let Some(recorded) = recorded_key(&contents, addr) {
            return self.compare(addr, recorded, key);
        }
        let newline = if contents.is_empty() || contents.ends_with('\n') {
            ""
        } else {
            "\n"
        };
        file.seek(SeekFrom::End(0)).map_err(io_error)?;
        let line = format!("{newline}{addr} {}\n", key_to_hex(key));
        file.write_all(line.as_bytes()).map_err(io_error)?;
        Ok(Trust::FirstUse)
    }

    fn compare(
        &self,
        addr: &str,
        recorded: &str,
        key: &[u8; 32],
    ) -> Result<Trust, KnownServersError> {
        if key_from_hex(recorded) == Some(*key) {
            return Ok(Trust::Known);
        }
        Err(KnownServersError::Changed {
            addr: addr.to_owned(),
            path: self.path.display().to_string(),
            recorded: recorded.to_owned(),
            presented: key_to_hex(key),
        })
    }

    /// The file, created with its folder if need be, open to read and append, and locked
    /// until it is dropped.
    fn open_locked(&self) -> std::io::Result<File> {
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)?;
        file.lock()?;
        Ok(file)
    }
}

/// The key recorded for `addr` (the first line that names it), as written.
fn recorded_key<'a>(contents: &'a str, addr: &str) -> Option<&'a str> {
    contents
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next() == Some(addr)).then(|| fields.next().unwrap_or_default())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file in a folder of its own, which goes when this is dropped.
    struct TempFile {
        dir: PathBuf,
        path: PathBuf,
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    fn temp_file(name: &str) -> TempFile {
        let dir =
            std::env::temp_dir().join(format!("known-servers-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let path = dir.join("sub").join("known_servers");
        TempFile { dir, path }
    }

    fn key(byte: u8) -> [u8; 32] {
        [byte; 32]
    }

    #[test]
    fn first_use_records_then_the_same_key_is_known() {
        let file = temp_file("first");
        let known = KnownServers::new(file.path.clone());
        assert_eq!(known.check("h:1", &key(0xaa)).unwrap(), Trust::FirstUse);
        assert_eq!(known.check("h:1", &key(0xaa)).unwrap(), Trust::Known);
        assert_eq!(known.check("h:2", &key(0xbb)).unwrap(), Trust::FirstUse);
        let contents = fs::read_to_string(known.path()).unwrap();
        let expected = format!("h:1 {}\nh:2 {}\n", "aa".repeat(32), "bb".repeat(32));
        assert_eq!(contents, expected);
    }

    #[test]
    fn a_changed_key_is_refused_every_time() {
        let file = temp_file("changed");
        let known = KnownServers::new(file.path.clone());
        known.check("h:1", &key(0xaa)).unwrap();
        for _ in 0..2 {
            let err = known.check("h:1", &key(0xcc)).unwrap_err().to_string();
            assert!(err.starts_with("the key of h:1 has changed"), "{err}");
            let (recorded, presented) = ("aa".repeat(32), "cc".repeat(32));
            let records = format!("records {recorded}, the server presented {presented}");
            assert!(err.contains(&records), "{err}");
        }
    }

    #[test]
    fn lines_written_by_hand_are_read() {
        let file = temp_file("by-hand");
        let path = &file.path;
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let upper = "AA".repeat(32);
        let text = format!("# servers\n\n  h:1   {upper}  \nh:2 not-a-key\nh:3 {upper}");
        fs::write(path, text).unwrap();
        let known = KnownServers::new(path.clone());
        assert_eq!(known.check("h:1", &key(0xaa)).unwrap(), Trust::Known);
        // A line that does not read as a key never matches.
        let err = known.check("h:2", &key(0xaa)).unwrap_err().to_string();
        assert!(err.contains("records not-a-key"), "{err}");
        // A file without a last newline gets one before the new line.
        assert_eq!(known.check("h:4", &key(0xdd)).unwrap(), Trust::FirstUse);
        let contents = fs::read_to_string(path).unwrap();
        assert!(
            contents.ends_with(&format!("h:3 {upper}\nh:4 {}\n", "dd".repeat(32))),
            "{contents}"
        );
    }

    #[test]
    fn an_unusable_file_is_an_error() {
        let file = temp_file("unusable");
        // The file's folder is a file.
        fs::create_dir_all(&file.dir).unwrap();
        fs::write(file.path.parent().unwrap(), "").unwrap();
        let known = KnownServers::new(file.path.clone());
        let err = known.check("h:1", &key(1)).unwrap_err().to_string();
        assert!(
            err.starts_with("cannot use the known-servers file "),
            "{err}"
        );
    }
}
