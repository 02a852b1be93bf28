//! Calling users home: when a peer says it serves ([`PeerFrame::Serving`], once it is linked
//! and accepts clients), every session here whose user that peer should serve now (their home,
//! or the first server of their ring order that is up) is told to move there with
//! [`ServerFrame::GoHome`].
//!
//! The pushes are spread over a window that grows with the number of users, up to
//! [`MAX_WINDOW`], each at a random point of its own slot, so that a server taking thousands of
//! users back gets their logins over a second or two rather than in one millisecond. One task
//! per call-back walks the schedule; a newer call-back for the same peer (its link dropped and
//! came back) replaces the older one. Just before each push the user is checked again against
//! the farm as it is then, so a peer that went away meanwhile is not sent anyone.
//!
//! [`PeerFrame::Serving`]: chat_proto::PeerFrame::Serving

use super::LinkContext;
use crate::farm::FarmView;
use chat_proto::ServerFrame;
use rand_core::{OsRng, RngCore};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How much of the window each user moving home adds.
pub const WINDOW_PER_USER: Duration = Duration::from_millis(1);
/// The longest window over which one call-back spreads its pushes.
pub const MAX_WINDOW: Duration = Duration::from_millis(1500);
/// How long a call-back waits for this server's view of the registry to have the peer live.
const LIVE_WAIT: Duration = Duration::from_secs(5);

/// The window for `n_users` moving at once.
pub fn window(n_users: usize) -> Duration {
    let n_users = u32::try_from(n_users).unwrap_or(u32::MAX);
    WINDOW_PER_USER.saturating_mul(n_users).min(MAX_WINDOW)
}

/// When to tell each of `n_users` to move, counted from the start of the call-back, in
/// order: the window is cut into one slot per user, and each push falls at a point of its
/// slot that `random` (a fraction in `[0, 1)`) picks.
pub fn schedule(n_users: usize, mut random: impl FnMut() -> f64) -> Vec<Duration> {
    let slot = window(n_users).as_secs_f64() / n_users.max(1) as f64;
    (0..n_users)
        .map(|idx| Duration::from_secs_f64(slot * (idx as f64 + random().clamp(0.0, 0.999))))
        .collect()
}

/// A fraction in `[0, 1)` from the system's randomness.
fn random_fraction() -> f64 {
    (OsRng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Starts calling home the users here whom `peer` should serve, replacing a call-back to
/// `peer` that is still under way.
pub fn call_back(ctx: &Arc<LinkContext>, peer: &str) {
    let task = ctx.tracker.spawn(push_home(ctx.clone(), peer.to_owned()));
    let older = ctx
        .links
        .lock()
        .calling_back
        .insert(peer.to_owned(), task.abort_handle());
    if let Some(older) = older {
        older.abort();
    }
}

/// Tells the sessions of the users here whom `peer` should serve to go home there, at the
/// times of the schedule.
async fn push_home(ctx: Arc<LinkContext>, peer: String) {
    let Some(view) = live_view(&ctx, &peer).await else {
        tracing::warn!(%peer, "a peer serves but the registry does not have it live; nobody is called home");
        return;
    };
    let Some(addr) = view.server(&peer).map(|server| server.client_addr.clone()) else {
        return;
    };
    let users: Vec<String> = ctx
        .hub
        .users_after(None, usize::MAX)
        .into_iter()
        .filter(|user| ctx.links.serving(&view, user) == peer)
        .collect();
    if users.is_empty() {
        return;
    }
    tracing::info!(
        %peer,
        users = users.len(),
        window_ms = window(users.len()).as_millis() as u64,
        "calling users home"
    );
    let start = Instant::now();
    let offsets = schedule(users.len(), random_fraction);
    let mut n_told = 0;
    for (user, offset) in users.iter().zip(offsets) {
        tokio::select! {
            () = tokio::time::sleep_until(start + offset) => {}
            () = ctx.shutdown.cancelled() => return,
        }
        if ctx.links.serving(&ctx.farm.view(), user) != peer {
            continue;
        }
        for session in ctx.hub.sessions_of(user) {
            let frame = ServerFrame::GoHome {
                server: peer.clone(),
                addr: addr.clone(),
            };
            if session.push(frame) {
                n_told += 1;
            }
        }
    }
    tracing::info!(%peer, sessions = n_told, "called users home");
}

/// The farm as this server sees it once `peer` is live there. A link may come up before this
/// server's last reading of the registry has seen the peer return (a dial that began before
/// the peer was counted down, say), so the registry is read again at once, and then the
/// heartbeat's readings are awaited for up to [`LIVE_WAIT`].
async fn live_view(ctx: &LinkContext, peer: &str) -> Option<Arc<FarmView>> {
    let is_live = |view: &Arc<FarmView>| view.server(peer).is_some_and(|server| server.live);
    let mut views = ctx.farm.subscribe();
    let view = views.borrow_and_update().clone();
    if is_live(&view) {
        return Some(view);
    }
    if let Err(err) = ctx.farm.refresh(&ctx.store).await {
        tracing::warn!(%err, "cannot read the registry to call users home");
    }
    let live = tokio::time::timeout(LIVE_WAIT, views.wait_for(is_live)).await;
    match live {
        Ok(Ok(view)) => Some(view.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_grows_with_the_users_up_to_its_cap() {
        assert_eq!(window(0), Duration::ZERO);
        assert_eq!(window(5), Duration::from_millis(5));
        assert_eq!(window(1000), Duration::from_millis(1000));
        assert_eq!(window(3000), MAX_WINDOW);
        assert_eq!(window(usize::MAX), MAX_WINDOW);
    }

    /// The most pushes that fall in any span of `span`.
    fn busiest(offsets: &[Duration], span: Duration) -> usize {
        (0..offsets.len())
            .map(|first| {
                offsets[first..]
                    .iter()
                    .take_while(|offset| **offset < offsets[first] + span)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn three_thousand_users_are_spread_over_the_window() {
        let offsets = schedule(3000, random_fraction);
        assert_eq!(offsets.len(), 3000);
        assert!(offsets.windows(2).all(|pair| pair[0] <= pair[1]));
        assert!(offsets.iter().all(|offset| *offset < MAX_WINDOW));
        // The last ones go near the end of the window, not all at the start.
        assert!(offsets[2999] > MAX_WINDOW * 9 / 10, "{:?}", offsets[2999]);
        // A slot is half a millisecond: no millisecond gets more than a handful.
        let most = busiest(&offsets, Duration::from_millis(1));
        assert!(most <= 3, "{most} pushes in one millisecond");
        // A tenth of the window holds about a tenth of the pushes.
        let most = busiest(&offsets, MAX_WINDOW / 10);
        assert!((290..=310).contains(&most), "{most} pushes in a tenth");
    }

    #[test]
    fn each_push_falls_at_random_within_its_slot() {
        let at_start = schedule(4, || 0.0);
        let at_end = schedule(4, || 0.999_999);
        let slot = Duration::from_millis(1);
        for idx in 0..4 {
            let start = slot * idx as u32;
            assert!((at_start[idx].as_secs_f64() - start.as_secs_f64()).abs() < 1e-9);
            assert!(at_end[idx] < start + slot && at_end[idx] > start + slot * 99 / 100);
        }
        // Two call-backs of the same size do not push in step.
        assert_ne!(
            schedule(100, random_fraction),
            schedule(100, random_fraction)
        );
    }

    #[test]
    fn no_users_no_schedule() {
        assert!(schedule(0, random_fraction).is_empty());
        assert_eq!(schedule(1, || 0.5), vec![Duration::from_micros(500)]);
    }
}
