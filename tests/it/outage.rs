//! The database going away: servers stay up, serve what they can, say clearly what they
//! cannot, lose nothing, and recover by themselves.

use chat_tests::{Client, Proxy, Server, TestDb};

#[tokio::test]
async fn servers_ride_out_a_database_outage() {
    let db = TestDb::new().await;
    let proxy = Proxy::start(db.host_port()).await;
    let server = Server::start_on(&db, &db.url_via(&proxy.addr), "s1", &[]).await;
    let mut alice = Client::login(&server, "alice").await;
    let mut bob = Client::login(&server, "bob").await;
    for member in [&mut alice, &mut bob] {
        member.ok("join ops").await;
    }
    let mut carol = Client::login(&server, "carol").await;
    carol.ok("quit").await;

    proxy.cut();
    // Live users keep chatting: a message acknowledged by its online recipient needs no write.
    alice.ok("send bob still here").await;
    bob.message("still here").await;
    // What needs the database fails with a clear error, and the session goes on. (A send to
    // #ops would not: the joins read its members into the cache, for their notices.)
    let join = alice.error("join #elsewhere").await;
    assert!(join.contains("cannot reach its database"), "{join}");
    let offline = alice.error("send carol for later").await;
    assert!(offline.contains("not stored yet"), "{offline}");
    let mut dave = Client::connect(&server).await;
    let login = dave.error("login dave pw-dave").await;
    assert!(login.contains("cannot reach its database"), "{login}");

    // Back: it all works again without a restart, and the message that waited is stored.
    proxy.restore();
    dave.ok_until("login dave pw-dave", |_| true).await;
    let mut carol = Client::login(&server, "carol").await;
    carol.ok_until("readlog", |log| log["count"] == 1).await;
    let message = carol.message("for later").await;
    assert_eq!(message["from"], "alice");
    alice.ok("send #ops back to the group").await;
    bob.message("back to the group").await;
}
