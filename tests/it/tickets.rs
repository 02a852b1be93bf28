//! Resume tickets: logins after a failover or a return home cost no password hash; logout and
//! `passwd` revoke them; a forged ticket is refused; a full home sends its user to the backup.

use chat_proto::{Credential, ErrorCode, Request, Response, Ticket};
use chat_tests::{Client, Farm, RawConn, Server, TestDb};
use serde_json::Value;

/// A server's login counters, from the admin `logins` command.
#[derive(Debug, PartialEq, Eq)]
struct Logins {
    argon2: u64,
    ticket_logins: u64,
    tickets_refused: u64,
    tickets_renewed: u64,
}

async fn logins(server: &Server) -> Logins {
    let line = server.admin("logins").await;
    let field = |key: &str| -> u64 {
        line.split_whitespace()
            .find_map(|field| field.strip_prefix(key))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {line:?}"))
    };
    Logins {
        argon2: field("argon2="),
        ticket_logins: field("ticket_logins="),
        tickets_refused: field("tickets_refused="),
        tickets_renewed: field("tickets_renewed="),
    }
}

/// Waits until `server`'s counters satisfy `done`, asking again every 100 ms.
async fn logins_until(server: &Server, done: impl Fn(&Logins) -> bool) -> Logins {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let counts = logins(server).await;
        if done(&counts) {
            return counts;
        }
        assert!(tokio::time::Instant::now() < deadline, "{counts:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn connected_to(server: &str) -> impl Fn(&Value) -> bool + '_ {
    move |event| event["type"] == "connected" && event["server"] == server
}

#[tokio::test]
async fn failover_and_the_way_home_log_in_by_ticket_without_the_password() {
    let mut farm = Farm::start(2).await;
    let user = farm.users_homed_on("s1", "resumer", 1).remove(0);
    let mut client = Client::spawn(&farm.addrs());
    client.event(|event| event["type"] == "connected").await;
    client.ok(&format!("login {user} pw-{user}")).await;
    assert_eq!(client.ok("whoami").await["server"], "s1");

    farm.server_mut("s1").kill().await;
    client.event(connected_to("s2")).await;
    assert_eq!(client.ok("whoami").await["server"], "s2");
    let backup = logins(farm.server("s2")).await;
    assert_eq!(backup.argon2, 0, "the backup hashed a password: {backup:?}");
    assert!(backup.ticket_logins >= 1, "{backup:?}");

    // Home again, with the ticket the backup gave.
    farm.start_again("s1").await;
    client.event(connected_to("s1")).await;
    assert_eq!(client.ok("whoami").await["server"], "s1");
    let home = logins(farm.server("s1")).await;
    assert_eq!(home.argon2, 0, "home hashed a password: {home:?}");
    assert!(home.ticket_logins >= 1, "{home:?}");
}

#[tokio::test]
async fn a_session_in_use_renews_its_ticket_and_outlives_the_first_one() {
    let mut farm = Farm::start_with(2, &["--ticket-lifetime-secs", "10"]).await;
    let user = farm.users_homed_on("s1", "renewer", 1).remove(0);
    let mut client = Client::spawn(&farm.addrs());
    client.event(|event| event["type"] == "connected").await;
    client.ok(&format!("login {user} pw-{user}")).await;
    // Renewed past half its life, twice: by then the ticket of the login has expired.
    logins_until(farm.server("s1"), |counts| counts.tickets_renewed >= 2).await;

    farm.server_mut("s1").kill().await;
    client.event(connected_to("s2")).await;
    let backup = logins(farm.server("s2")).await;
    assert_eq!(
        (backup.argon2, backup.tickets_refused),
        (0, 0),
        "{backup:?}"
    );
    assert!(backup.ticket_logins >= 1, "{backup:?}");
}

#[tokio::test]
async fn logout_and_passwd_revoke_tickets_and_the_client_falls_back_to_its_password() {
    let mut farm = Farm::start(2).await;
    let user = farm.users_homed_on("s1", "revoked", 1).remove(0);
    let mut phone = Client::spawn(&farm.addrs());
    phone.event(|event| event["type"] == "connected").await;
    phone.ok(&format!("login {user} pw-{user}")).await;
    // A logout on another device revokes the phone's ticket too.
    let (mut laptop, _) = farm.login_via("s1", &user).await;
    laptop.ok("logout").await;

    farm.server_mut("s1").kill().await;
    phone.event(connected_to("s2")).await;
    assert_eq!(phone.ok("whoami").await["user"], user.as_str());
    let backup = logins(farm.server("s2")).await;
    assert_eq!(
        (backup.tickets_refused, backup.argon2),
        (1, 1),
        "{backup:?}"
    );

    // A third device, logged in with the old password, before the phone changes it.
    let mut tablet = Client::spawn(&[&farm.server("s2").addr]);
    tablet.event(|event| event["type"] == "connected").await;
    tablet.ok(&format!("login {user} pw-{user}")).await;
    phone.ok(&format!("passwd pw-{user} new-{user}")).await;
    let mut stranger = Client::connect(farm.server("s2")).await;
    assert_eq!(
        stranger.error(&format!("login {user} pw-{user}")).await,
        format!("wrong password for {user}")
    );

    // Home returns. The phone moves there by its fresh ticket; the tablet's ticket and
    // password are both refused there, so it stays on s2 (and stops trying), and is told once
    // it must move.
    farm.start_again("s1").await;
    phone.event(connected_to("s1")).await;
    farm.server_mut("s2").kill().await;
    let told = tablet
        .event(|event| event["type"] == "error" && event["command"] == "connection")
        .await;
    let message = told["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("cannot log in as {user} again: wrong password")),
        "{message}"
    );
    assert_eq!(phone.ok("whoami").await["server"], "s1");
    let mut fresh = Client::connect(farm.server("s1")).await;
    fresh.ok(&format!("login {user} new-{user}")).await;
}

#[tokio::test]
async fn passwd_with_a_wrong_old_password_changes_nothing() {
    let db = TestDb::new().await;
    let server = Server::start(&db, "s1").await;
    let mut client = Client::login(&server, "alice").await;
    assert_eq!(
        client.error("passwd wrong better").await,
        "the old password is wrong; the password is unchanged"
    );
    assert!(client
        .error("passwd onlyone")
        .await
        .contains("usage: passwd"));
    let mut again = Client::connect(&server).await;
    again.ok("login alice pw-alice").await;
    let mut logged_out = Client::connect(&server).await;
    assert_eq!(logged_out.error("passwd a b").await, "log in first");
}

#[tokio::test]
async fn a_forged_or_altered_ticket_is_refused_and_feeds_no_throttle() {
    let db = TestDb::new().await;
    let server = Server::start(&db, "s1").await;
    let mut first = RawConn::connect(&server.addr).await;
    let reply = first
        .request(Request::password_login("alice", "pw-alice"))
        .await;
    let Ok(Response::LoggedIn { ticket, .. }) = reply else {
        panic!("no ticket: {reply:?}");
    };
    let genuine = ticket.ticket;
    let by_ticket = |user: &str, ticket: &Ticket| Request::Login {
        user: user.into(),
        credential: Credential::Ticket(ticket.clone()),
        refused_by: None,
    };
    let mut altered = genuine.clone();
    let last = altered.0.len() - 1;
    altered.0[last] ^= 1;
    let forged = [
        by_ticket("alice", &altered),
        by_ticket("alice", &Ticket(vec![1; 80])),
        by_ticket("alice", &Ticket(Vec::new())),
        by_ticket("bob", &genuine),
    ];
    let mut attacker = RawConn::connect(&server.addr).await;
    for (idx, login) in forged.into_iter().enumerate() {
        let err = attacker.request(login).await.expect_err("refused");
        assert_eq!(err.code, ErrorCode::BadTicket, "forgery {idx}: {err:?}");
    }
    // More refusals than the throttle allows failed logins, yet the password works at once.
    let mut honest = RawConn::connect(&server.addr).await;
    honest.login("alice").await;
    let mut resumed = RawConn::connect(&server.addr).await;
    let reply = resumed.request(by_ticket("alice", &genuine)).await;
    assert!(
        matches!(&reply, Ok(Response::LoggedIn { waiting: None, .. })),
        "{reply:?}"
    );
    let counts = logins(&server).await;
    assert_eq!((counts.tickets_refused, counts.ticket_logins), (4, 1));
    assert_eq!(counts.argon2, 2, "the registration and the honest login");
}

#[tokio::test]
async fn a_full_home_sends_its_user_to_the_backup_until_there_is_room() {
    let farm = Farm::start_with(2, &["--max-connections", "1"]).await;
    let user = farm.users_homed_on("s1", "crowded", 1).remove(0);
    let filler = RawConn::connect(&farm.server("s1").addr).await;
    // Nothing pushes the user home when room is made: the look at home finds it, here sooner
    // than its 30 s default.
    let mut client = Client::spawn_trusting(&[&farm.server("s2").addr], &["--home-poll-ms", "500"]);
    client.event(connected_to("s2")).await;
    client.ok(&format!("login {user} pw-{user}")).await;
    let me = client.ok("whoami").await;
    assert_eq!(me["server"], "s2");
    assert_eq!(me["home"], "s1");

    drop(filler);
    client.event(connected_to("s1")).await;
    assert_eq!(client.ok("whoami").await["server"], "s1");
}
