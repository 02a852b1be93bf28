//! Resume tickets as the commands use them: a login by ticket, `RenewTicket`, `passwd`, and
//! the revocation that `logout` and `passwd` make.
//!
//! Every login hands out a fresh ticket (see `tickets` for its layout and why forging it is
//! hopeless). A refused ticket is answered [`ErrorCode::BadTicket`], and the client logs in
//! with its password instead; a refusal never counts against the password throttle, since a
//! guess at a MAC cannot succeed, and honest clients with an expired or revoked ticket must not
//! lock their user out.

use super::{hash_failed, unavailable, Session};
use crate::revocation::Revocations;
use crate::tickets::{Claims, TicketKey};
use chat_proto::{ErrorCode, ErrorReply, IssuedTicket, PeerFrame, Response, Ticket};
use rand_core::{OsRng, RngCore};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the commands need to make and check tickets.
pub struct TicketIssuer {
    pub key: Arc<TicketKey>,
    /// How long a fresh ticket is valid (`--ticket-lifetime-secs`).
    pub lifetime: Duration,
    pub revocations: Arc<Revocations>,
}

/// The device and revocation epoch of a session's tickets.
#[derive(Debug, Clone, Copy)]
pub(super) struct Resume {
    pub device: [u8; 16],
    pub epoch: i64,
}

impl Resume {
    /// A new device, for a login by password.
    pub fn new_device(epoch: i64) -> Resume {
        let mut device = [0u8; 16];
        OsRng.fill_bytes(&mut device);
        Resume { device, epoch }
    }
}

impl TicketIssuer {
    /// `user`'s revocation epoch now, cached or else read from the store.
    pub(super) async fn epoch(&self, user: &str) -> Result<i64, ErrorReply> {
        match self.revocations.epoch(user).await? {
            Some(epoch) => Ok(epoch),
            None => Err(ErrorReply::new(
                ErrorCode::NoSuchUser,
                format!("no such user: {user}"),
            )),
        }
    }

    /// A fresh ticket for `user` on the device and at the epoch of `resume`.
    pub(super) fn issue(&self, user: &str, resume: Resume) -> Result<IssuedTicket, ErrorReply> {
        let issued_ms = now_ms();
        let lifetime_ms = u64::try_from(self.lifetime.as_millis()).unwrap_or(u64::MAX);
        let claims = Claims {
            user: user.to_owned(),
            device: resume.device,
            issued_ms,
            expires_ms: issued_ms.saturating_add(i64::try_from(lifetime_ms).unwrap_or(i64::MAX)),
            epoch: resume.epoch,
        };
        let ticket = self
            .key
            .seal(&claims)
            .ok_or_else(|| unavailable(format!("cannot seal a ticket for {user}")))?;
        Ok(IssuedTicket {
            ticket,
            expires_in_ms: lifetime_ms,
        })
    }
}

/// The wall clock, in milliseconds since the Unix epoch, as tickets count time.
fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

impl Session {
    /// Checks a login's ticket: the farm's, not expired, for `user`, and not revoked. No
    /// argon2, and no database unless the user's epoch is not cached.
    pub(super) async fn ticket_login(
        &self,
        user: &str,
        ticket: &Ticket,
    ) -> Result<Resume, ErrorReply> {
        let tickets = &self.ctx.tickets;
        let claims = match tickets.key.open(ticket, now_ms()) {
            Ok(claims) if claims.user == user => claims,
            Ok(_) => return Err(self.ticket_refused(user, "made for another user")),
            Err(err) => return Err(self.ticket_refused(user, &err.to_string())),
        };
        if tickets.epoch(user).await? != claims.epoch {
            return Err(self.ticket_refused(user, "revoked"));
        }
        self.ctx.logins.count_ticket_login();
        Ok(Resume {
            device: claims.device,
            epoch: claims.epoch,
        })
    }

    fn ticket_refused(&self, user: &str, reason: &str) -> ErrorReply {
        self.ctx.logins.count_ticket_refused();
        tracing::info!(%user, peer = %self.peer, reason, "ticket refused");
        ErrorReply::new(
            ErrorCode::BadTicket,
            format!("the ticket was refused ({reason}); log in with the password"),
        )
    }

    /// A fresh ticket for this session, unless the user's tickets were revoked since it logged
    /// in (a logout or `passwd` elsewhere): those stay revoked.
    pub(super) async fn renew_ticket(&self) -> Result<Response, ErrorReply> {
        let (user, resume) = self.require_resume()?;
        if self.ctx.tickets.epoch(&user).await? != resume.epoch {
            return Err(self.ticket_refused(&user, "revoked"));
        }
        self.ctx.logins.count_ticket_renewed();
        Ok(Response::Ticket(self.ctx.tickets.issue(&user, resume)?))
    }

    /// Changes the password, given the old one, and revokes every ticket of the user; this
    /// session gets a fresh one. A wrong old password counts as a failed login.
    pub(super) async fn passwd(
        &mut self,
        old: String,
        new: String,
    ) -> Result<Response, ErrorReply> {
        let (user, resume) = self.require_resume()?;
        super::account::check_password_len(&new)?;
        let attempt = self.begin_attempt(&user)?;
        let (store, hasher) = (&self.ctx.store, &self.ctx.hasher);
        let stored = store.password_hash(&user).await?.unwrap_or_default();
        self.ctx.logins.count_argon2();
        if !hasher.verify(old, &stored).await.map_err(hash_failed)? {
            tracing::info!(%user, peer = %self.peer, "passwd refused: wrong old password");
            attempt.failed(Instant::now());
            return Err(ErrorReply::new(
                ErrorCode::WrongPassword,
                "the old password is wrong; the password is unchanged",
            ));
        }
        attempt.succeeded();
        self.ctx.logins.count_argon2();
        let new_hash = hasher.hash(new).await.map_err(hash_failed)?;
        let Some(epoch) = store.change_password(&user, &stored, &new_hash).await? else {
            return Err(ErrorReply::new(
                ErrorCode::Unavailable,
                "the password was changed meanwhile by another session; try again",
            ));
        };
        self.revoked(&user);
        tracing::info!(%user, peer = %self.peer, "password changed; tickets revoked");
        let resume = Resume { epoch, ..resume };
        self.resume = Some(resume);
        Ok(Response::Ticket(self.ctx.tickets.issue(&user, resume)?))
    }

    /// Revokes every ticket of `user`, on every device.
    pub(super) async fn revoke_tickets(&self, user: &str) -> Result<(), ErrorReply> {
        if self.ctx.store.revoke_tickets(user).await?.is_some() {
            self.revoked(user);
        }
        Ok(())
    }

    /// `user`'s epoch changed in the store: forgets it here and tells every other server.
    fn revoked(&self, user: &str) {
        self.ctx.tickets.revocations.invalidate(user);
        self.ctx.hub.tell_links(&PeerFrame::Revoked {
            user: user.to_owned(),
        });
    }

    fn require_resume(&self) -> Result<(String, Resume), ErrorReply> {
        let user = self.require_user()?;
        let resume = self
            .resume
            .ok_or_else(|| ErrorReply::new(ErrorCode::NotLoggedIn, "log in first"))?;
        Ok((user, resume))
    }
}
