//! `login` (which registers a new name) and `logout`.

use super::{hash_failed, invalid, may_register, seconds, Session};
use crate::limits::Attempt;
use chat_proto::{validate_user, ErrorCode, ErrorReply, Response};
use std::time::Instant;

/// The longest password accepted, in bytes.
const MAX_PASSWORD_LEN: usize = 1024;

impl Session {
    pub(super) async fn login(
        &mut self,
        user: String,
        password: String,
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
            if let Some(server) = view.server(&serving) {
                tracing::debug!(%user, to = %serving, "login redirected");
                return Ok(Response::Redirect {
                    server: serving,
                    addr: server.client_addr.clone(),
                });
            }
        }
        if password.is_empty() || password.len() > MAX_PASSWORD_LEN {
            return Err(ErrorReply::new(
                ErrorCode::Invalid,
                format!("password must be 1 to {MAX_PASSWORD_LEN} bytes"),
            ));
        }
        let now = Instant::now();
        let attempt = match self.ctx.login_throttle.begin(&user, self.peer.ip(), now) {
            Ok(attempt) => attempt,
            Err(wait) => {
                tracing::info!(%user, peer = %self.peer, "login refused: too many failed logins");
                return Err(ErrorReply::new(
                    ErrorCode::TooFast,
                    format!(
                        "too many failed logins for {user}; try again in {}",
                        seconds(wait)
                    ),
                ));
            }
        };
        let registered = self.check_or_register(&user, password, attempt).await?;
        let store = &self.ctx.store;
        let waiting = store.count_inbox(&user).await?;
        self.ctx.known_users.insert(&user);
        self.ctx.hub.add(&user, self.outbound.clone());
        tracing::info!(%user, peer = %self.peer, registered, "logged in");
        self.user = Some(user.clone());
        Ok(Response::LoggedIn {
            user,
            registered,
            waiting,
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
                let hash = hasher.hash(password.clone()).await.map_err(hash_failed)?;
                if store.create_user(user, &hash).await? {
                    attempt.succeeded();
                    return Ok(true);
                }
                // Someone registered the name a moment ago: check against theirs.
                store.password_hash(user).await?.unwrap_or_default()
            }
        };
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

    pub(super) fn logout_command(&mut self) -> Result<Response, ErrorReply> {
        self.require_user()?;
        self.logout();
        Ok(Response::Done)
    }

    /// Takes the session's user off the hub, if logged in.
    pub fn logout(&mut self) {
        if let Some(user) = self.user.take() {
            self.ctx.hub.remove(&user, self.outbound.id());
            tracing::info!(%user, peer = %self.peer, "logged out");
        }
    }
}
