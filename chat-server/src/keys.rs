//! The farm's keys: where they come from, how they are checked, and `chat-server keygen`.
//!
//! - The **farm key** is the static key of the Noise NX handshake that every client makes.
//!   Every server of a farm has the same one, so a client can pin one public key
//!   (`chat-client --server-key`) for the whole farm.
//! - The **cluster key** is the pre-shared key of the XXpsk3 handshake between servers: a
//!   process without it cannot link with the farm.
//! - Each server process also makes a fresh **link key** when it starts and registers its
//!   public half in `server_info`; a peer's link must present the key of its row.
//! - Keys for one purpose each are derived from the cluster key with HKDF-SHA256, each under
//!   its own label ([`subkey`]): the ticket key (`tickets`), the forwarding key
//!   (`forwarding`).
//!
//! Keys are 64 hex digits, read from a file that only its owner may read (mode 600), or from
//! an environment variable. **They are never logged**, and `Debug` shows no secret.

use anyhow::{bail, Context};
use chat_proto::{key_from_hex, key_to_hex, Keypair};
use rand_core::OsRng;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use zeroize::Zeroizing;

/// The key for one purpose (named by `label`) of the farm whose cluster key is `cluster`:
/// HKDF-SHA256, so that no derived key tells anything of the cluster key or of another.
pub fn subkey(cluster: &[u8; 32], label: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut key = Zeroizing::new([0u8; 32]);
    hkdf::Hkdf::<sha2::Sha256>::new(None, cluster)
        .expand(label, key.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    key
}

pub const FARM_KEY_FILE: &str = "farm.key";
pub const FARM_PUBLIC_FILE: &str = "farm.pub";
pub const CLUSTER_KEY_FILE: &str = "cluster.key";

/// The keys a server runs with.
pub struct Keys {
    pub farm: Keypair,
    pub cluster: Zeroizing<[u8; 32]>,
    /// This process's own, for its links.
    pub link: Keypair,
}

impl Keys {
    /// Reads the farm and cluster keys (from `file`, or else the environment variable) and
    /// makes this process's link key.
    pub fn load(farm_file: Option<&Path>, cluster_file: Option<&Path>) -> anyhow::Result<Keys> {
        let farm = read_key(farm_file, "CHAT_FARM_KEY", "farm key", "--farm-key-file")?;
        let cluster = read_key(
            cluster_file,
            "CHAT_CLUSTER_KEY",
            "cluster key",
            "--cluster-key-file",
        )?;
        Ok(Keys {
            farm: Keypair::from_secret_bytes(*farm),
            cluster,
            link: Keypair::generate(&mut OsRng),
        })
    }
}

fn read_key(
    file: Option<&Path>,
    env: &str,
    what: &str,
    flag: &str,
) -> anyhow::Result<Zeroizing<[u8; 32]>> {
    let text = match file {
        Some(path) => {
            let meta = std::fs::metadata(path)
                .with_context(|| format!("cannot read the {what} file {}", path.display()))?;
            if meta.mode() & 0o077 != 0 {
                bail!(
                    "the {what} file {} may be read by others (mode {:o}); chmod 600 it",
                    path.display(),
                    meta.mode() & 0o777
                );
            }
            Zeroizing::new(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the {what} file {}", path.display()))?,
            )
        }
        None => match std::env::var(env) {
            Ok(text) => Zeroizing::new(text),
            Err(_) => {
                bail!("no {what}: give {flag} or set {env} (`chat-server keygen` makes the keys)")
            }
        },
    };
    match key_from_hex(&text) {
        Some(key) => Ok(Zeroizing::new(key)),
        None => bail!("the {what} is not 64 hex digits"),
    }
}

/// `chat-server keygen`: writes a new farm key, its public half, and a cluster key into `dir`,
/// each secret readable by its owner only. Refuses to replace existing keys.
pub fn keygen(dir: &Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let farm = Keypair::generate(&mut OsRng);
    let mut cluster = Zeroizing::new([0u8; 32]);
    rand_core::RngCore::fill_bytes(&mut OsRng, cluster.as_mut());
    let public = key_to_hex(&farm.public_key());
    write_new(
        &dir.join(FARM_KEY_FILE),
        &key_to_hex(&farm.secret_bytes()),
        0o600,
    )?;
    write_new(&dir.join(CLUSTER_KEY_FILE), &key_to_hex(&cluster), 0o600)?;
    write_new(&dir.join(FARM_PUBLIC_FILE), &public, 0o644)?;
    Ok(public)
}

fn write_new(path: &Path, contents: &str, mode: u32) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| {
            format!(
                "cannot create {} (keys are never overwritten)",
                path.display()
            )
        })?;
    writeln!(file, "{contents}").with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A fresh folder for a test's keys, removed with them when the test ends.
    struct TempDir(std::path::PathBuf);

    impl std::ops::Deref for TempDir {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn temp_dir(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("chat-keys-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }

    #[test]
    fn keygen_writes_keys_that_load_and_never_overwrites() {
        let dir = temp_dir("keygen");
        let public = keygen(&dir).unwrap();
        let keys = Keys::load(
            Some(&dir.join(FARM_KEY_FILE)),
            Some(&dir.join(CLUSTER_KEY_FILE)),
        )
        .unwrap();
        assert_eq!(key_to_hex(&keys.farm.public_key()), public);
        let on_disk = std::fs::read_to_string(dir.join(FARM_PUBLIC_FILE)).unwrap();
        assert_eq!(on_disk.trim(), public);
        let err = keygen(&dir).unwrap_err().to_string();
        assert!(err.contains("keys are never overwritten"), "{err}");
    }

    #[test]
    fn a_key_file_others_may_read_is_refused() {
        let dir = temp_dir("mode");
        keygen(&dir).unwrap();
        let farm = dir.join(FARM_KEY_FILE);
        std::fs::set_permissions(&farm, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Keys::load(Some(&farm), Some(&dir.join(CLUSTER_KEY_FILE)))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("may be read by others (mode 644); chmod 600 it"),
            "{err}"
        );
    }
}
