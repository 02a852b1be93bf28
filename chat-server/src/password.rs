//! Password hashing with argon2id, off the async worker threads and bounded.
//!
//! A [`Hasher`] runs at most `slots` hashes at once (by default one per core), each on a
//! hashing thread of its own, below the event loop's priority, with a memory buffer of its own:
//! argon2id's 19 MiB of blocks, allocated on the thread's first hash and kept for the next. Hashing memory is therefore `slots` buffers
//! whatever the storm, and is not left to the allocator, which handed freed buffers of that
//! size back to the system only rarely. The rest wait in a bounded queue: past
//! [`HashLimits::max_waiting`] waiting, or after [`HashLimits::max_wait`] in it, a request is
//! refused as [`HashError::Busy`] rather than held.
//!
//! The stored form is the usual PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`);
//! verifying parses it, hashes with its parameters into the slot's buffer, and compares the
//! outputs in constant time (`password_hash::Output`'s equality).

use argon2::password_hash::{rand_core::OsRng, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use zeroize::Zeroizing;

/// The nice value of the hashing threads (0 is normal, 19 the lowest). A waking event loop
/// thread then preempts a hash at once, and a hash still gets about a tenth of a core that
/// the event loop keeps busy.
const HASH_NICE: i32 = 10;

/// How many hashes may run, and how many may wait.
#[derive(Debug, Clone, Copy)]
pub struct HashLimits {
    /// Hashes at once; each holds one memory buffer.
    pub slots: usize,
    /// Requests that may wait for a slot; more are refused at once.
    pub max_waiting: usize,
    /// How long a request may wait for a slot before it is refused.
    pub max_wait: Duration,
}

impl HashLimits {
    /// One slot per core, as `std::thread::available_parallelism` counts them.
    pub fn default_slots() -> usize {
        std::thread::available_parallelism().map_or(1, usize::from)
    }
}

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every slot is busy and the queue is full, or the wait was too long.
    #[error("the server is busy checking passwords")]
    Busy,
    /// The stored hash does not parse, or argon2 refused its parameters.
    #[error("{0}")]
    Failed(String),
}

/// The bounded pool of argon2id hashing slots; one per server.
pub struct Hasher {
    limits: HashLimits,
    slots: Arc<Semaphore>,
    /// Work for the hashing threads. A job carries its slot's permit, so at most
    /// `limits.slots` jobs exist and the queue, of that capacity, is never full.
    jobs: mpsc::SyncSender<Job>,
    /// Requests waiting for a slot.
    waiting: AtomicUsize,
    /// Memory buffers the threads have made; at most one each.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "the tests check with it that the buffers stay bounded"
        )
    )]
    buffers_made: Arc<AtomicUsize>,
}

/// One hash for a hashing thread.
struct Job {
    password: Zeroizing<String>,
    salt_b64: String,
    params: Params,
    waited: Duration,
    /// Held until the hash is done, whether or not anyone still waits for it.
    permit: OwnedSemaphorePermit,
    reply: oneshot::Sender<Result<Output, HashError>>,
}

impl Hasher {
    /// Starts `limits.slots` hashing threads (at least one).
    pub fn new(limits: HashLimits) -> std::io::Result<Hasher> {
        let limits = HashLimits {
            slots: limits.slots.max(1),
            ..limits
        };
        let (jobs, queue) = mpsc::sync_channel(limits.slots);
        let queue = Arc::new(Mutex::new(queue));
        let buffers_made = Arc::new(AtomicUsize::new(0));
        for idx in 0..limits.slots {
            let (queue, buffers_made) = (queue.clone(), buffers_made.clone());
            std::thread::Builder::new()
                .name(format!("argon2-{idx}"))
                .spawn(move || hash_thread(&queue, &buffers_made))?;
        }
        Ok(Hasher {
            limits,
            slots: Arc::new(Semaphore::new(limits.slots)),
            jobs,
            waiting: AtomicUsize::new(0),
            buffers_made,
        })
    }

    /// Hashes `password` into a PHC string with a fresh salt and the default parameters.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let password = Zeroizing::new(password);
        let salt = SaltString::generate(&mut OsRng);
        let params = Params::default();
        let output = self
            .run(password, salt.as_str().to_owned(), params.clone())
            .await?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params).map_err(failed)?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        };
        Ok(phc.to_string())
    }

    /// Checks `password` against a stored PHC string of argon2id.
    pub async fn verify(&self, password: String, stored: &str) -> Result<bool, HashError> {
        let password = Zeroizing::new(password);
        let parsed = PasswordHash::new(stored)
            .map_err(|err| failed(format!("stored password hash does not parse: {err}")))?;
        if parsed.algorithm != Algorithm::Argon2id.ident()
            || parsed
                .version
                .is_some_and(|v| v != u32::from(Version::V0x13))
        {
            return Err(failed("stored password hash is not argon2id version 19"));
        }
        let params = Params::try_from(&parsed).map_err(failed)?;
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return Err(failed("stored password hash has no salt or no hash"));
        };
        if params.block_count() > Params::default().block_count() {
            return Err(failed(
                "stored password hash asks for more memory than a slot has",
            ));
        }
        let got = self.run(password, salt.as_str().to_owned(), params).await?;
        Ok(got == expected)
    }

    /// Hashes in a slot: waits for one within the limits, then hands the hash to a hashing
    /// thread with the slot's permit, which the thread gives back when it is done: a caller
    /// that stops waiting never lets more than `slots` run.
    async fn run(
        &self,
        password: Zeroizing<String>,
        salt_b64: String,
        params: Params,
    ) -> Result<Output, HashError> {
        let queued_at = Instant::now();
        let permit = self.acquire().await?;
        let (reply, hashed) = oneshot::channel();
        let job = Job {
            password,
            salt_b64,
            params,
            waited: queued_at.elapsed(),
            permit,
            reply,
        };
        self.jobs
            .try_send(job)
            .map_err(|_| failed("the hashing threads are gone"))?;
        hashed
            .await
            .map_err(|_| failed("a hashing thread ended without an answer"))?
    }

    /// A slot, after waiting in the bounded queue.
    async fn acquire(&self) -> Result<OwnedSemaphorePermit, HashError> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let queued = self.waiting.fetch_add(1, Ordering::Relaxed);
        let _leave = LeaveQueue(&self.waiting);
        if queued >= self.limits.max_waiting {
            return Err(HashError::Busy);
        }
        match tokio::time::timeout(self.limits.max_wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; a timeout is the one way here.
            Ok(Err(_)) | Err(_) => Err(HashError::Busy),
        }
    }
}

/// Takes a request off the queue's count when it stops waiting, however it stops.
struct LeaveQueue<'a>(&'a AtomicUsize);

impl Drop for LeaveQueue<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A hashing thread: below the event loop's priority, so that pings, messages and every other
/// request are answered on time while it works; it makes its memory buffer on its first hash
/// and keeps it. It ends when the [`Hasher`] is dropped.
fn hash_thread(queue: &Mutex<mpsc::Receiver<Job>>, buffers_made: &AtomicUsize) {
    lower_priority();
    let mut blocks: Option<Vec<Block>> = None;
    loop {
        // The lock is held while this thread waits for work; the others wait for the lock.
        let job = queue
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .recv();
        let Ok(job) = job else { return };
        let blocks = blocks.get_or_insert_with(|| {
            buffers_made.fetch_add(1, Ordering::Relaxed);
            vec![Block::new(); Params::default().block_count()]
        });
        let started = Instant::now();
        let hashed = hash_with(&job.password, &job.salt_b64, job.params, blocks);
        drop(job.permit);
        tracing::debug!(waited = ?job.waited, took = ?started.elapsed(), "password hashed");
        // The caller may have stopped waiting; its slot is free either way.
        let _ = job.reply.send(hashed);
    }
}

/// Gives the calling thread the nice value [`HASH_NICE`]. Failing that, it hashes at the
/// normal priority, which is slower for everyone else but correct.
fn lower_priority() {
    let thread = rustix::thread::gettid();
    if let Err(err) = rustix::process::setpriority_process(Some(thread), HASH_NICE) {
        tracing::warn!(%err, "cannot lower the priority of a password hashing thread");
    }
}

/// Argon2id of `password` with `params`, in `blocks`.
fn hash_with(
    password: &str,
    salt_b64: &str,
    params: Params,
    blocks: &mut [Block],
) -> Result<Output, HashError> {
    let output_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let mut salt = [0u8; 64];
    let salt = argon2::password_hash::Salt::from_b64(salt_b64)
        .and_then(|salt_ref| salt_ref.decode_b64(&mut salt))
        .map_err(failed)?;
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    Output::init_with(output_len, |out| {
        argon2
            .hash_password_into_with_memory(password.as_bytes(), salt, out, &mut *blocks)
            .map_err(|_| argon2::password_hash::Error::Crypto)
    })
    .map_err(failed)
}

fn failed(err: impl std::fmt::Display) -> HashError {
    HashError::Failed(format!("password hashing failed: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordVerifier;

    fn hasher(slots: usize, max_waiting: usize) -> Hasher {
        Hasher::new(HashLimits {
            slots,
            max_waiting,
            max_wait: Duration::from_secs(30),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn hash_then_verify_and_agree_with_the_argon2_crate() {
        let hasher = hasher(1, 8);
        let stored = hasher.hash("secret".into()).await.unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert!(hasher.verify("secret".into(), &stored).await.unwrap());
        assert!(!hasher.verify("Secret".into(), &stored).await.unwrap());
        // The argon2 crate's own verifier accepts what this one made, and the other way
        // round: hashes stored before this module reused its buffers still verify.
        let parsed = PasswordHash::new(&stored).unwrap();
        assert!(Argon2::default()
            .verify_password(b"secret", &parsed)
            .is_ok());
        let salt = SaltString::generate(&mut OsRng);
        let theirs = argon2::PasswordHasher::hash_password(&Argon2::default(), b"old", &salt)
            .unwrap()
            .to_string();
        assert!(hasher.verify("old".into(), &theirs).await.unwrap());
    }

    #[tokio::test]
    async fn a_stored_hash_that_is_not_argon2id_is_an_error_not_a_panic() {
        let hasher = hasher(1, 8);
        for stored in [
            "",
            "not a hash",
            "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=4000000,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        ] {
            let result = hasher.verify("pw".into(), stored).await;
            assert!(
                matches!(result, Err(HashError::Failed(_))),
                "{stored}: {result:?}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_refuses_and_slots_bound_the_buffers() {
        let hasher = Arc::new(hasher(1, 2));
        let stored = hasher.hash("pw".into()).await.unwrap();
        let attempts = (0..8).map(|_| {
            let (hasher, stored) = (hasher.clone(), stored.clone());
            tokio::spawn(async move { hasher.verify("pw".into(), &stored).await })
        });
        let mut busy = 0;
        for attempt in attempts.collect::<Vec<_>>() {
            match attempt.await.unwrap() {
                Ok(ok) => assert!(ok),
                Err(HashError::Busy) => busy += 1,
                Err(err) => panic!("{err}"),
            }
        }
        // One runs and two wait at most at any time: of eight at once, some were refused.
        assert!(busy >= 1, "nobody was refused");
        assert_eq!(hasher.buffers_made.load(Ordering::Relaxed), 1);
        assert_eq!(hasher.waiting.load(Ordering::Relaxed), 0);
    }
}
