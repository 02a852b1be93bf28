//! `login` (which registers a new name, or resumes with a ticket) and `logout`.

use super::tickets::Resume;
use super::{hash_failed, invalid, may_register, seconds, Session};
use crate::limits::Attempt;
use crate::telemetry::{self, Limit, LoginKind};
use chat_proto::{validate_user, Credential, ErrorCode, ErrorReply, Forwarded, Response};
use std::net::SocketAddr;
use std::time::Instant;

/// The longest password accepted, in bytes.
const MAX_PASSWORD_LEN: usize = 1024;

impl Session {
    pub(super) async fn login(
        &mut self,
        user: String,
        credential: Credential,
        refused_by: Option<String>,
    ) -> Result<Response, ErrorReply> {
        if let Some(current) = &self.user {
            return Err(ErrorReply::new(
                ErrorCode::AlreadyLoggedIn,
                format!("already logged in as {current}; log out first"),
            ));
        }
        validate_user(&user).map_err(invalid)?;
        let serving = self.ctx.serving(&user);
        if serving != self.ctx.name {
            let view = self.ctx.farm.view();
            match view.server(&serving) {
                // The client tried there, and was refused at the hello for lack of room: it is
                // served here until its look at home finds room there.
                Some(_) if refused_by.as_deref() == Some(serving.as_str()) => {
                    tracing::info!(%user, full = %serving, "serving a user whose server is full");
                }
                Some(server) => {
                    tracing::debug!(%user, to = %serving, "login redirected");
                    return Ok(Response::Redirect {
                        server: serving,
                        addr: server.client_addr.clone(),
                    });
                }
                None => {}
            }
        }
        let kind = match credential {
            Credential::Password(_) => LoginKind::Password,
            Credential::Ticket(_) => LoginKind::Ticket,
        };
        let checked = self.check_credential(&user, credential).await;
        let issued = checked.and_then(|(registered, waiting, resume)| {
            let ticket = self.ctx.tickets.issue(&user, resume)?;
            Ok((registered, waiting, resume, ticket))
        });
        telemetry::login(kind, issued.is_ok());
        let (registered, waiting, resume, ticket) = issued?;
        if self.ctx.farm.view().placement(&user).0 != self.ctx.name {
            telemetry::failover_login();
        }
        self.ctx.known_users.insert(&user);
        self.ctx.hub.add(&user, self.outbound.clone());
        let by_ticket = waiting.is_none();
        tracing::info!(%user, peer = %self.peer, registered, by_ticket, "logged in");
        self.user = Some(user.clone());
        self.resume = Some(resume);
        Ok(Response::LoggedIn {
            user,
            registered,
            waiting,
            ticket,
        })
    }

    /// A front end's user, before the login: the per-address limits count `forwarded.addr`
    /// from now on, if the farm vouched for it (see `forwarding`).
    pub(super) fn forwarded(&mut self, forwarded: Forwarded) -> Result<Response, ErrorReply> {
        if self.user.is_some() {
            return Err(ErrorReply::new(
                ErrorCode::AlreadyLoggedIn,
                "a forwarded address comes before the login",
            ));
        }
        if !self.ctx.forwarding.check(&forwarded) {
            tracing::info!(peer = %self.peer, "a forwarded address the farm did not vouch for");
            return Err(ErrorReply::new(
                ErrorCode::Invalid,
                "a forwarded address the farm did not vouch for",
            ));
        }
        tracing::debug!(peer = %self.peer, forwarded = %forwarded.addr, "a front end's user");
        self.peer = SocketAddr::new(forwarded.addr, self.peer.port());
        Ok(Response::Done)
    }

    /// Checks the credential of a login: whether this call registered the user, the messages
    /// waiting (for a password login), and the ticket's resume state.
    async fn check_credential(
        &self,
        user: &str,
        credential: Credential,
    ) -> Result<(bool, Option<u64>, Resume), ErrorReply> {
        match credential {
            Credential::Password(password) => {
                let registered = self.password_login(user, password).await?;
                let waiting = self.ctx.store.count_inbox(user).await?;
                let epoch = self.ctx.tickets.epoch(user).await?;
                Ok((registered, Some(waiting), Resume::new_device(epoch)))
            }
            // No throttle: a ticket cannot be guessed, and one that is refused is no reason to
            // slow the user's password logins.
            Credential::Ticket(ticket) => {
                Ok((false, None, self.ticket_login(user, &ticket).await?))
            }
        }
    }

    /// Checks `password` (under the login throttle), or registers the name with it. Returns
    /// true if this call registered the user.
    async fn password_login(&self, user: &str, password: String) -> Result<bool, ErrorReply> {
        check_password_len(&password)?;
        let attempt = self.begin_attempt(user)?;
        self.check_or_register(user, password, attempt).await
    }

    /// Starts a password check for `user`, counted against the login throttle while it runs;
    /// refused while failed ones delay it.
    pub(super) fn begin_attempt(&self, user: &str) -> Result<Attempt<'_>, ErrorReply> {
        let now = Instant::now();
        self.ctx
            .login_throttle
            .begin(user, self.peer.ip(), now)
            .map_err(|wait| {
                telemetry::rate_limited(Limit::FailedLogins);
                tracing::info!(%user, peer = %self.peer, "login refused: too many failed logins");
                ErrorReply::new(
                    ErrorCode::TooFast,
                    format!(
                        "too many failed logins for {user}; try again in {}",
                        seconds(wait)
                    ),
                )
            })
    }

    /// Returns true if this call registered the user. The `attempt` ends as a success or a
    /// failure once the password was checked.
    async fn check_or_register(
        &self,
        user: &str,
        password: String,
        attempt: Attempt<'_>,
    ) -> Result<bool, ErrorReply> {
        let (store, hasher) = (&self.ctx.store, &self.ctx.hasher);
        let stored = match store.password_hash(user).await? {
            Some(stored) => stored,
            None => {
                may_register(&self.ctx, user, self.peer)?;
                self.ctx.logins.count_argon2();
                let hash = hasher.hash(password.clone()).await.map_err(hash_failed)?;
                if store.create_user(user, &hash).await? {
                    attempt.succeeded();
                    return Ok(true);
                }
                // Someone registered the name a moment ago: check against theirs.
                store.password_hash(user).await?.unwrap_or_default()
            }
        };
        self.ctx.logins.count_argon2();
        if hasher
            .verify(password, &stored)
            .await
            .map_err(hash_failed)?
        {
            attempt.succeeded();
            Ok(false)
        } else {
            tracing::info!(%user, peer = %self.peer, "login refused: wrong password");
            attempt.failed(Instant::now());
            Err(ErrorReply::new(
                ErrorCode::WrongPassword,
                format!("wrong password for {user}"),
            ))
        }
    }

    /// Logs out after revoking every ticket of the user: a client that keeps one, on any
    /// device, must log in with its password next time.
    pub(super) async fn logout_command(&mut self) -> Result<Response, ErrorReply> {
        let user = self.require_user()?;
        self.revoke_tickets(&user).await?;
        self.logout();
        Ok(Response::Done)
    }

    /// Takes the session's user off the hub, if logged in.
    pub fn logout(&mut self) {
        self.resume = None;
        if let Some(user) = self.user.take() {
            self.ctx.hub.remove(&user, self.outbound.id());
            tracing::info!(%user, peer = %self.peer, "logged out");
        }
    }
}

/// Refuses an empty password or one longer than [`MAX_PASSWORD_LEN`].
pub(super) fn check_password_len(password: &str) -> Result<(), ErrorReply> {
    if password.is_empty() || password.len() > MAX_PASSWORD_LEN {
        return Err(ErrorReply::new(
            ErrorCode::Invalid,
            format!("password must be 1 to {MAX_PASSWORD_LEN} bytes"),
        ));
    }
    Ok(())
}
