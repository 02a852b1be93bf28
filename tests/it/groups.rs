//! Groups across a farm: every server caches the groups' members for its sends, and a join or
//! a leave anywhere reaches every server's cache.

use chat_tests::{Client, Farm, EVENT_TIMEOUT};
use std::time::Duration;
use tokio::time::Instant;

/// Waits until `server` answers `users #<group>` with exactly `members`. The console reads the
/// members as the server's group sends do, through its cache, so this is what a send there
/// would reach.
async fn wait_for_members(farm: &Farm, server: &str, group: &str, members: &[&String]) {
    let mut expected: Vec<&str> = members.iter().map(|member| member.as_str()).collect();
    expected.sort_unstable();
    let expected = expected.join("\n");
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let answer = farm.server(server).admin(&format!("users #{group}")).await;
        if answer == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{server} still has #{group} as {answer:?}, not {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One user homed on each of `s1`, `s2` and `s3`, logged in there, once every server knows
/// that all three are online. A server hears of a login elsewhere a moment after it, over its
/// link; a message sent before finds the user logged in nowhere it knows of, and is stored
/// for `readlog` instead of pushed (a known limit, in the README's "Status").
pub(crate) async fn one_user_per_server(farm: &Farm, prefix: &str) -> Vec<(String, Client)> {
    let mut users = Vec::new();
    for server in ["s1", "s2", "s3"] {
        let user = farm.users_homed_on(server, prefix, 1).remove(0);
        let (client, landed) = farm.login_via(server, &user).await;
        assert_eq!(landed, server);
        users.push((user, client));
    }
    let names: Vec<&String> = users.iter().map(|(user, _)| user).collect();
    farm.wait_online(&names).await;
    users
}

#[tokio::test]
async fn joins_and_leaves_reach_the_caches_of_the_other_servers() {
    let farm = Farm::start(3).await;
    let mut users = one_user_per_server(&farm, "crew").await;
    let [(ann, ann_client), (bob, bob_client), (cat, cat_client)] = &mut users[..] else {
        unreachable!("three users");
    };
    bob_client.ok("join #crew").await;
    cat_client.ok("join #crew").await;
    // A server hears of a join elsewhere over its link, a moment after it: a group message
    // sent before may miss the new member, as it may miss one who just logged in.
    for server in ["s2", "s3"] {
        wait_for_members(&farm, server, "crew", &[bob, cat]).await;
    }
    // Each sender's server now caches #crew as bob and cat.
    bob_client.ok("send #crew before ann").await;
    cat_client.message("before ann").await;
    cat_client.ok("send #crew before ann, from s3").await;
    bob_client.message("before ann, from s3").await;

    // Ann joins on s1: s2 and s3 forget what they cached, without anything else happening.
    ann_client.ok("join #crew").await;
    for server in ["s2", "s3"] {
        wait_for_members(&farm, server, "crew", &[ann, bob, cat]).await;
    }
    bob_client.ok("send #crew welcome ann").await;
    ann_client.message("welcome ann").await;
    cat_client.message("welcome ann").await;
    cat_client.ok("send #crew welcome ann, from s3").await;
    ann_client.message("welcome ann, from s3").await;
    bob_client.message("welcome ann, from s3").await;

    // Ann leaves on s1: the other servers stop sending her the group's messages.
    ann_client.ok("leave #crew").await;
    for server in ["s2", "s3"] {
        wait_for_members(&farm, server, "crew", &[bob, cat]).await;
    }
    bob_client.ok("send #crew ann has left").await;
    cat_client.message("ann has left").await;
    cat_client.ok("send #crew ann has left, from s3").await;
    bob_client.message("ann has left, from s3").await;
    // A link keeps its frames in order: once these reach ann, a group message sent before them
    // over the same link would have.
    bob_client.ok(&format!("send {ann} sync from s2")).await;
    ann_client.message("sync from s2").await;
    cat_client.ok(&format!("send {ann} sync from s3")).await;
    ann_client.message("sync from s3").await;
    assert!(ann_client.take_messages("ann has left").is_empty());
    assert!(ann_client.take_messages("ann has left, from s3").is_empty());
    // Only the sends before her join missed her.
    assert!(ann_client.take_messages("before ann").is_empty());
}

#[tokio::test]
async fn group_sends_read_no_members_from_the_database() {
    // A long ack deadline: nothing waits on the database while the recipients acknowledge.
    let (farm, proxy) = Farm::start_behind_proxy(3, &["--ack-deadline-ms", "10000"]).await;
    let mut users = one_user_per_server(&farm, "quiet").await;
    for (_, client) in users.iter_mut() {
        client.ok("join #quiet").await;
    }
    // Sends from each server fill its cache. A load that a late word of the joins overtook is
    // not kept (the cache cannot tell it from a stale one), so the second round fills what the
    // first could not.
    for round in ["warm", "warm again", "cut"] {
        if round == "cut" {
            proxy.cut();
            // The database is out of reach indeed.
            let (_, client) = &mut users[0];
            let join = client.error("join #elsewhere").await;
            assert!(join.contains("cannot reach its database"), "{join}");
        }
        for sender in 0..users.len() {
            let text = format!("{round} from {}", users[sender].0);
            users[sender].1.ok(&format!("send #quiet {text}")).await;
            for (idx, (_, client)) in users.iter_mut().enumerate() {
                if idx != sender {
                    client.message(&text).await;
                }
            }
        }
    }
    proxy.restore();
}
