//! What the client tells its user, as JSON lines for scripts or as plain lines for people.
//!
//! Every line the client prints is an [`Event`] rendered by [`render`]. The JSON form is a
//! public interface: one object per line, always with a `type` field. The human form escapes
//! control characters in anything that came from the network, so that another user cannot send
//! escape sequences to your terminal, and puts the local time before each message (see
//! `clock`) unless told not to.
//!
//! [`Output`] also keeps what the printed events teach: whether the last answer was an error
//! (the exit status of a script), and the names that tab completion offers (`completion`).

use crate::clock::{iso_utc, Clock};
use crate::completion::Vocabulary;
use crate::ticket_text::TicketText;
use chat_proto::{ChatMessage, GroupChange, GroupNotice, MessageId, Recipient};
use serde::Serialize;
use std::future::Future;
use std::io::{self, Write};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

/// One thing to tell the user: exactly one JSON line, or one or more human lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The client has connected to the server with this name.
    Connected { server: String },
    /// A chat message; `offline` when `readlog` handed it over.
    Message { message: ChatMessage, offline: bool },
    /// A message the user sent from another session (another device).
    Echo { message: ChatMessage },
    /// Someone joined or left one of the user's groups.
    Notice(GroupNotice),
    /// A command succeeded.
    Ok(Answer),
    /// A command failed, or the connection did (`command` is then `connection`).
    Error { command: String, message: String },
    /// No server of the farm answered; the client tries again after `retry_in`.
    FarmDown { retry_in: std::time::Duration },
    /// The session holds a fresh resume ticket (renewed, or from a login after a failover);
    /// emitted only by an output made `with_tickets`.
    Ticket(TicketText),
}

/// The successful answer to each command, with what it reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "command", rename_all = "lowercase")]
pub enum Answer {
    Login {
        user: String,
        /// True when this login created the account.
        registered: bool,
        /// How many messages wait for `readlog`.
        waiting: u64,
        /// The session's resume ticket, only from an output made `with_tickets` (the web
        /// gateway's): the terminal client never prints it.
        #[serde(skip_serializing_if = "Option::is_none")]
        ticket: Option<TicketText>,
    },
    Logout,
    /// The password changed; every other device's ticket is revoked.
    Passwd,
    Send {
        #[serde(serialize_with = "as_display")]
        id: MessageId,
        /// Whom it went to: not printed, but learned by completion.
        #[serde(skip)]
        to: Recipient,
    },
    Join {
        group: String,
    },
    Leave {
        group: String,
    },
    Groups {
        groups: Vec<String>,
        joined: Vec<String>,
    },
    /// The members of a group the user is in, whole and in name order.
    Members {
        group: String,
        users: Vec<String>,
    },
    ReadLog {
        count: u64,
    },
    Who {
        users: Vec<String>,
    },
    WhoIs {
        user: String,
        online: bool,
        /// Where the user is logged in; `None` (JSON `null`) when offline.
        server: Option<String>,
        home: String,
        /// `None` (JSON `null`) when the ring has a single server.
        backup: Option<String>,
    },
    WhoAmI {
        user: String,
        server: String,
        home: String,
        backup: Option<String>,
    },
    Help {
        commands: Vec<String>,
    },
    Quit,
}

/// How events are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Human,
}

/// Renders one event; human help spans several lines, everything else is one line.
pub fn render(format: Format, event: &Event) -> String {
    match format {
        Format::Json => render_json(event),
        Format::Human => render_human(event),
    }
}

fn as_display<T: std::fmt::Display, S: serde::Serializer>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// The JSON shape of an [`Event`]; field order here is the order on the wire.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum JsonEvent<'a> {
    Connected {
        server: &'a str,
    },
    Message {
        id: String,
        from: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        to: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        group: Option<&'a str>,
        text: &'a str,
        /// When the server took it: ISO 8601, UTC, to the millisecond.
        sent_at: String,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        offline: bool,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        echo: bool,
    },
    Joined {
        group: &'a str,
        user: &'a str,
    },
    Left {
        group: &'a str,
        user: &'a str,
    },
    Ok(&'a Answer),
    Error {
        command: &'a str,
        message: &'a str,
    },
    #[serde(rename = "farm_down")]
    FarmDown {
        retry_in_ms: u64,
        message: String,
    },
    Ticket {
        ticket: &'a TicketText,
    },
}

fn render_json(event: &Event) -> String {
    let json = match event {
        Event::Connected { server } => JsonEvent::Connected { server },
        Event::Message { message, offline } => message_json(message, *offline, false),
        Event::Echo { message } => message_json(message, false, true),
        Event::Notice(GroupNotice {
            group,
            user,
            change,
        }) => match change {
            GroupChange::Joined => JsonEvent::Joined { group, user },
            GroupChange::Left => JsonEvent::Left { group, user },
        },
        Event::Ok(answer) => JsonEvent::Ok(answer),
        Event::Error { command, message } => JsonEvent::Error { command, message },
        Event::FarmDown { retry_in } => JsonEvent::FarmDown {
            retry_in_ms: u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
            message: farm_down(*retry_in),
        },
        Event::Ticket(ticket) => JsonEvent::Ticket { ticket },
    };
    // Serializing these plain structs of strings, numbers and booleans cannot fail; the
    // fallback keeps the promise of one object per line all the same.
    serde_json::to_string(&json).unwrap_or_else(|err| {
        format!(
            r#"{{"type":"error","command":"output","message":{:?}}}"#,
            err.to_string()
        )
    })
}

/// A message's JSON: a delivery (`offline` when `readlog` handed it over), or an echo of
/// the user's own.
fn message_json(message: &ChatMessage, offline: bool, echo: bool) -> JsonEvent<'_> {
    let (to, group) = match &message.to {
        Recipient::User(user) => (Some(user.as_str()), None),
        Recipient::Group(group) => (None, Some(group.as_str())),
    };
    JsonEvent::Message {
        id: message.id.to_string(),
        from: &message.from,
        to,
        group,
        text: &message.text,
        sent_at: iso_utc(message.sent_at_ms),
        offline,
        echo,
    }
}

fn render_human(event: &Event) -> String {
    match event {
        Event::Connected { server } => format!("connected to {}", clean(server)),
        Event::Message { message, offline } => {
            let mut tag = String::new();
            if *offline {
                tag.push_str("offline ");
            }
            if let Recipient::Group(group) = &message.to {
                tag.push('#');
                tag.push_str(&clean(group));
                tag.push(' ');
            }
            tag.push_str(&clean(&message.from));
            format!("[{tag}] {}", clean(&message.text))
        }
        Event::Echo { message } => {
            let to = clean(&message.to.to_string());
            format!("[you → {to}] {}", clean(&message.text))
        }
        Event::Notice(GroupNotice {
            group,
            user,
            change,
        }) => {
            let what = match change {
                GroupChange::Joined => "joined",
                GroupChange::Left => "left",
            };
            format!("{} {what} #{}", clean(user), clean(group))
        }
        Event::Ok(answer) => render_answer(answer),
        Event::Error { message, .. } => format!("error: {}", clean(message)),
        Event::FarmDown { retry_in } => farm_down(*retry_in),
        Event::Ticket(_) => "the session's ticket was renewed".to_string(),
    }
}

/// What a farm that does not answer says, the pause rounded up to whole seconds.
fn farm_down(retry_in: std::time::Duration) -> String {
    let secs = retry_in.as_millis().div_ceil(1000).max(1);
    format!("no server of the farm answers; trying again in {secs} s")
}

fn render_answer(answer: &Answer) -> String {
    match answer {
        Answer::Login {
            user,
            registered,
            waiting,
            ..
        } => {
            let how = if *registered {
                "registered and logged in"
            } else {
                "logged in"
            };
            let noun = if *waiting == 1 { "message" } else { "messages" };
            format!("{how} as {}; {waiting} {noun} waiting", clean(user))
        }
        Answer::Logout => "logged out".to_string(),
        Answer::Passwd => "password changed; your other devices must log in again".to_string(),
        Answer::Send { .. } => "sent".to_string(),
        Answer::Join { group } => format!("joined #{}", clean(group)),
        Answer::Leave { group } => format!("left #{}", clean(group)),
        Answer::Groups { groups, joined } => format!(
            "groups: {}; joined: {}",
            list(groups.iter().map(|group| format!("#{group}"))),
            list(joined.iter().map(|group| format!("#{group}"))),
        ),
        Answer::Members { group, users } => {
            format!(
                "members of #{}: {}",
                clean(group),
                list(users.iter().cloned())
            )
        }
        Answer::ReadLog { count } => {
            let noun = if *count == 1 { "message" } else { "messages" };
            format!("readlog: {count} {noun}")
        }
        Answer::Who { users } => format!("who: {}", list(users.iter().cloned())),
        Answer::WhoIs {
            user,
            online,
            server,
            home,
            backup,
        } => {
            let status = match (online, server) {
                (true, Some(server)) => format!("online on {}", clean(server)),
                (true, None) => "online".to_string(),
                (false, _) => "offline".to_string(),
            };
            let placement = placement(home, backup.as_deref());
            format!("whois {}: {status} ({placement})", clean(user))
        }
        Answer::WhoAmI {
            user,
            server,
            home,
            backup,
        } => {
            let placement = placement(home, backup.as_deref());
            format!("you are {} on {} ({placement})", clean(user), clean(server))
        }
        Answer::Help { .. } => {
            let width = crate::command::USAGE
                .iter()
                .map(|(usage, _)| usage.len())
                .max()
                .unwrap_or(0);
            let lines: Vec<String> = crate::command::USAGE
                .iter()
                .map(|(usage, what)| format!("  {usage:width$}  {what}"))
                .collect();
            format!("commands:\n{}", lines.join("\n"))
        }
        Answer::Quit => "bye".to_string(),
    }
}

/// A user's home and backup servers, for people.
fn placement(home: &str, backup: Option<&str>) -> String {
    match backup {
        Some(backup) => format!("home {}, backup {}", clean(home), clean(backup)),
        None => format!("home {}, no backup", clean(home)),
    }
}

/// Joins names with commas, or says `(none)`.
fn list(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.map(|item| clean(&item)).collect();
    if items.is_empty() {
        "(none)".to_string()
    } else {
        items.join(", ")
    }
}

/// Escapes control characters (newlines, escape sequences) so one event stays one line.
pub(crate) fn clean(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Waits until what was written before it is out; false if it never will be.
pub type Written = Pin<Box<dyn Future<Output = bool> + Send>>;

/// Where rendered lines go: standard output, rustyline's printer, a web page's socket, or a
/// test's buffer.
pub trait LineSink: Send {
    /// Writes `line` and a newline at once, and flushes, so lines never interleave.
    fn write_line(&mut self, line: &str) -> io::Result<()>;

    /// Resolves once every line written so far has been taken by its reader (true), or can
    /// no longer be (false): what the session waits for before it acknowledges a message. A
    /// sink that writes at once, as those on standard output do, is done once it has; the web
    /// gateway's is done once the page has answered a mark sent after the lines.
    fn written(&mut self) -> Written {
        Box::pin(std::future::ready(true))
    }
}

/// A sink on any writer, such as standard output.
pub struct WriterSink<W>(pub W);

impl<W: Write + Send> LineSink for WriterSink<W> {
    fn write_line(&mut self, line: &str) -> io::Result<()> {
        let mut buf = String::with_capacity(line.len() + 1);
        buf.push_str(line);
        buf.push('\n');
        self.0.write_all(buf.as_bytes())?;
        self.0.flush()
    }
}

/// Prints events in one format to one sink. Shared by the session's parts, so it locks.
pub struct Output {
    format: Format,
    /// Stamps messages for people with their local time; `None` for no stamps.
    clock: Option<Clock>,
    /// Learns names for tab completion from what is printed; `None` without a prompt.
    vocabulary: Option<Vocabulary>,
    /// Whether the last answer printed was an error.
    last_failed: AtomicBool,
    /// Whether the session's resume tickets are printed (for the web gateway only).
    tickets: bool,
    sink: Mutex<Box<dyn LineSink>>,
}

impl Output {
    /// An output without timestamps or completion.
    pub fn new(format: Format, sink: Box<dyn LineSink>) -> Output {
        Output {
            format,
            clock: None,
            vocabulary: None,
            last_failed: AtomicBool::new(false),
            tickets: false,
            sink: Mutex::new(sink),
        }
    }

    /// Puts each message's local time before it, in the human format.
    pub fn with_timestamps(mut self, clock: Clock) -> Output {
        self.clock = Some(clock);
        self
    }

    /// Prints the session's resume tickets: in the login's answer and as `ticket` events when
    /// they change. For a front end that must log in again where this process cannot follow
    /// (the web page); never for a terminal or a script's output.
    pub fn with_tickets(mut self) -> Output {
        self.tickets = true;
        self
    }

    pub fn reveals_tickets(&self) -> bool {
        self.tickets
    }

    /// Waits until every event emitted so far has been taken by its reader: true once it has,
    /// false when it never will (the sink is closed). See [`LineSink::written`].
    pub async fn written(&self) -> bool {
        let written = self.lock_sink().written();
        written.await
    }

    /// Teaches `vocabulary` the names in every event printed.
    pub fn teaching(mut self, vocabulary: Vocabulary) -> Output {
        self.vocabulary = Some(vocabulary);
        self
    }

    /// Whether the last command's answer (or the last failure of the connection or the
    /// input) was an error: a script's exit status.
    pub fn last_failed(&self) -> bool {
        self.last_failed.load(Ordering::Relaxed)
    }

    /// Standard output, written a whole line at a time and flushed after each.
    pub fn stdout(format: Format) -> Output {
        Output::new(format, Box::new(WriterSink(io::stdout())))
    }

    /// Prints one event. A failing sink (a closed pipe) is logged, not fatal: the client
    /// still acknowledges and answers as it should.
    pub fn emit(&self, event: &Event) {
        match event {
            Event::Ok(_) => self.last_failed.store(false, Ordering::Relaxed),
            Event::Error { .. } => self.last_failed.store(true, Ordering::Relaxed),
            _ => {}
        }
        if let Some(vocabulary) = &self.vocabulary {
            vocabulary.learn(event);
        }
        let mut line = render(self.format, event);
        if let (
            Format::Human,
            Some(clock),
            Event::Message { message, .. } | Event::Echo { message },
        ) = (self.format, &self.clock, event)
        {
            line = format!("[{}] {line}", clock.stamp(message.sent_at_ms));
        }
        if let Err(err) = self.lock_sink().write_line(&line) {
            tracing::debug!("cannot print an event: {err}");
        }
    }

    fn lock_sink(&self) -> MutexGuard<'_, Box<dyn LineSink>> {
        self.sink
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Prints a command's failure.
    pub fn error(&self, command: &str, message: impl Into<String>) {
        self.emit(&Event::Error {
            command: command.to_string(),
            message: message.into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(to: Recipient, text: &str) -> ChatMessage {
        ChatMessage {
            id: "0191d4f0-0000-7000-8000-000000000001"
                .parse()
                .expect("a valid uuid"),
            from: "alice".into(),
            to,
            text: text.into(),
            sent_at_ms: 0,
        }
    }

    #[track_caller]
    fn check(event: Event, json: &str, human: &str) {
        assert_eq!(render(Format::Json, &event), json);
        assert_eq!(render(Format::Human, &event), human);
    }

    fn ok(answer: Answer) -> Event {
        Event::Ok(answer)
    }

    #[test]
    fn connected() {
        check(
            Event::Connected {
                server: "s1".into(),
            },
            r#"{"type":"connected","server":"s1"}"#,
            "connected to s1",
        );
    }

    #[test]
    fn a_farm_that_is_down_says_when_it_tries_again() {
        let farm_down = |ms| Event::FarmDown {
            retry_in: std::time::Duration::from_millis(ms),
        };
        check(
            farm_down(1600),
            r#"{"type":"farm_down","retry_in_ms":1600,"message":"no server of the farm answers; trying again in 2 s"}"#,
            "no server of the farm answers; trying again in 2 s",
        );
        let human = render(Format::Human, &farm_down(150));
        assert_eq!(human, "no server of the farm answers; trying again in 1 s");
    }

    #[test]
    fn messages() {
        let id = "0191d4f0-0000-7000-8000-000000000001";
        check(
            Event::Message {
                message: message(Recipient::User("bob".into()), "hi  there"),
                offline: false,
            },
            &format!(
                r#"{{"type":"message","id":"{id}","from":"alice","to":"bob","text":"hi  there","sent_at":"1970-01-01T00:00:00.000Z"}}"#
            ),
            "[alice] hi  there",
        );
        check(
            Event::Message {
                message: message(Recipient::Group("ops".into()), "deploy"),
                offline: false,
            },
            &format!(
                r#"{{"type":"message","id":"{id}","from":"alice","group":"ops","text":"deploy","sent_at":"1970-01-01T00:00:00.000Z"}}"#
            ),
            "[#ops alice] deploy",
        );
        check(
            Event::Message {
                message: message(Recipient::User("bob".into()), "later"),
                offline: true,
            },
            &format!(
                r#"{{"type":"message","id":"{id}","from":"alice","to":"bob","text":"later","sent_at":"1970-01-01T00:00:00.000Z","offline":true}}"#
            ),
            "[offline alice] later",
        );
        check(
            Event::Message {
                message: message(Recipient::Group("ops".into()), "later"),
                offline: true,
            },
            &format!(
                r#"{{"type":"message","id":"{id}","from":"alice","group":"ops","text":"later","sent_at":"1970-01-01T00:00:00.000Z","offline":true}}"#
            ),
            "[offline #ops alice] later",
        );
    }

    #[test]
    fn echoes_and_notices() {
        let id = "0191d4f0-0000-7000-8000-000000000001";
        check(
            Event::Echo {
                message: message(Recipient::User("bob".into()), "hi"),
            },
            &format!(
                r#"{{"type":"message","id":"{id}","from":"alice","to":"bob","text":"hi","sent_at":"1970-01-01T00:00:00.000Z","echo":true}}"#
            ),
            "[you → bob] hi",
        );
        check(
            Event::Echo {
                message: message(Recipient::Group("ops".into()), "deploy"),
            },
            &format!(
                r#"{{"type":"message","id":"{id}","from":"alice","group":"ops","text":"deploy","sent_at":"1970-01-01T00:00:00.000Z","echo":true}}"#
            ),
            "[you → #ops] deploy",
        );
        let notice = |change| {
            Event::Notice(GroupNotice {
                group: "ops".into(),
                user: "alice".into(),
                change,
            })
        };
        check(
            notice(GroupChange::Joined),
            r#"{"type":"joined","group":"ops","user":"alice"}"#,
            "alice joined #ops",
        );
        check(
            notice(GroupChange::Left),
            r#"{"type":"left","group":"ops","user":"alice"}"#,
            "alice left #ops",
        );
    }

    #[test]
    fn control_characters_stay_escaped() {
        check(
            Event::Message {
                message: message(Recipient::User("bob".into()), "two\nlines \u{1b}[2J"),
                offline: false,
            },
            r#"{"type":"message","id":"0191d4f0-0000-7000-8000-000000000001","from":"alice","to":"bob","text":"two\nlines \u001b[2J","sent_at":"1970-01-01T00:00:00.000Z"}"#,
            r"[alice] two\nlines \u{1b}[2J",
        );
    }

    #[test]
    fn answers() {
        check(
            ok(Answer::Login {
                user: "alice".into(),
                registered: true,
                waiting: 0,
                ticket: None,
            }),
            r#"{"type":"ok","command":"login","user":"alice","registered":true,"waiting":0}"#,
            "registered and logged in as alice; 0 messages waiting",
        );
        check(
            ok(Answer::Login {
                user: "bob".into(),
                registered: false,
                waiting: 1,
                ticket: None,
            }),
            r#"{"type":"ok","command":"login","user":"bob","registered":false,"waiting":1}"#,
            "logged in as bob; 1 message waiting",
        );
        check(
            ok(Answer::Logout),
            r#"{"type":"ok","command":"logout"}"#,
            "logged out",
        );
        check(
            ok(Answer::Passwd),
            r#"{"type":"ok","command":"passwd"}"#,
            "password changed; your other devices must log in again",
        );
        check(
            ok(Answer::Send {
                id: "0191d4f0-0000-7000-8000-00000000000a"
                    .parse()
                    .expect("a valid uuid"),
                to: Recipient::User("bob".into()),
            }),
            r#"{"type":"ok","command":"send","id":"0191d4f0-0000-7000-8000-00000000000a"}"#,
            "sent",
        );
        check(
            ok(Answer::Join {
                group: "ops".into(),
            }),
            r#"{"type":"ok","command":"join","group":"ops"}"#,
            "joined #ops",
        );
        check(
            ok(Answer::Leave {
                group: "ops".into(),
            }),
            r#"{"type":"ok","command":"leave","group":"ops"}"#,
            "left #ops",
        );
        check(
            ok(Answer::Groups {
                groups: vec!["dev".into(), "ops".into()],
                joined: vec![],
            }),
            r#"{"type":"ok","command":"groups","groups":["dev","ops"],"joined":[]}"#,
            "groups: #dev, #ops; joined: (none)",
        );
        check(
            ok(Answer::Members {
                group: "ops".into(),
                users: vec!["alice".into(), "bob".into()],
            }),
            r#"{"type":"ok","command":"members","group":"ops","users":["alice","bob"]}"#,
            "members of #ops: alice, bob",
        );
        check(
            ok(Answer::ReadLog { count: 2 }),
            r#"{"type":"ok","command":"readlog","count":2}"#,
            "readlog: 2 messages",
        );
        check(
            ok(Answer::Who {
                users: vec!["alice".into(), "bob".into()],
            }),
            r#"{"type":"ok","command":"who","users":["alice","bob"]}"#,
            "who: alice, bob",
        );
        check(
            ok(Answer::WhoAmI {
                user: "alice".into(),
                server: "s1".into(),
                home: "s1".into(),
                backup: Some("s2".into()),
            }),
            r#"{"type":"ok","command":"whoami","user":"alice","server":"s1","home":"s1","backup":"s2"}"#,
            "you are alice on s1 (home s1, backup s2)",
        );
        check(
            ok(Answer::WhoAmI {
                user: "alice".into(),
                server: "s2".into(),
                home: "s1".into(),
                backup: None,
            }),
            r#"{"type":"ok","command":"whoami","user":"alice","server":"s2","home":"s1","backup":null}"#,
            "you are alice on s2 (home s1, no backup)",
        );
        check(
            ok(Answer::WhoIs {
                user: "bob".into(),
                online: true,
                server: Some("s2".into()),
                home: "s2".into(),
                backup: Some("s3".into()),
            }),
            r#"{"type":"ok","command":"whois","user":"bob","online":true,"server":"s2","home":"s2","backup":"s3"}"#,
            "whois bob: online on s2 (home s2, backup s3)",
        );
        check(
            ok(Answer::WhoIs {
                user: "bob".into(),
                online: false,
                server: None,
                home: "s2".into(),
                backup: Some("s3".into()),
            }),
            r#"{"type":"ok","command":"whois","user":"bob","online":false,"server":null,"home":"s2","backup":"s3"}"#,
            "whois bob: offline (home s2, backup s3)",
        );
        check(
            ok(Answer::WhoIs {
                user: "bob".into(),
                online: false,
                server: None,
                home: "s1".into(),
                backup: None,
            }),
            r#"{"type":"ok","command":"whois","user":"bob","online":false,"server":null,"home":"s1","backup":null}"#,
            "whois bob: offline (home s1, no backup)",
        );
        check(ok(Answer::Quit), r#"{"type":"ok","command":"quit"}"#, "bye");
    }

    #[test]
    fn tickets_are_printed_only_for_a_front_end_that_asked() {
        let ticket = crate::ticket_text::TicketText::new(&chat_proto::Ticket(vec![0xab, 1]));
        check(
            ok(Answer::Login {
                user: "alice".into(),
                registered: false,
                waiting: 0,
                ticket: Some(ticket.clone()),
            }),
            r#"{"type":"ok","command":"login","user":"alice","registered":false,"waiting":0,"ticket":"ab01"}"#,
            "logged in as alice; 0 messages waiting",
        );
        check(
            Event::Ticket(ticket),
            r#"{"type":"ticket","ticket":"ab01"}"#,
            "the session's ticket was renewed",
        );
        assert!(!Output::stdout(Format::Json).reveals_tickets());
        assert!(Output::stdout(Format::Json)
            .with_tickets()
            .reveals_tickets());
    }

    #[test]
    fn help_lists_every_command() {
        let event = ok(Answer::Help {
            commands: vec!["login".into(), "quit".into()],
        });
        assert_eq!(
            render(Format::Json, &event),
            r#"{"type":"ok","command":"help","commands":["login","quit"]}"#
        );
        let human = render(Format::Human, &event);
        assert!(
            human.starts_with("commands:\n  login <user> [<password>]"),
            "{human}"
        );
        assert!(
            human
                .lines()
                .any(|line| line.trim_start().starts_with("quit ")),
            "{human}"
        );
    }

    #[test]
    fn errors() {
        check(
            Event::Error {
                command: "send".into(),
                message: "no such user \"carol\"".into(),
            },
            r#"{"type":"error","command":"send","message":"no such user \"carol\""}"#,
            "error: no such user \"carol\"",
        );
    }

    /// Collects what an [`Output`] prints.
    #[derive(Clone, Default)]
    struct Lines(std::sync::Arc<Mutex<Vec<String>>>);

    impl LineSink for Lines {
        fn write_line(&mut self, line: &str) -> io::Result<()> {
            self.0.lock().unwrap().push(line.to_string());
            Ok(())
        }
    }

    #[test]
    fn people_see_each_message_with_its_local_time() {
        let lines = Lines::default();
        let zone = jiff::tz::TimeZone::fixed(jiff::tz::offset(2));
        let output = Output::new(Format::Human, Box::new(lines.clone()))
            .with_timestamps(Clock::in_zone(zone));
        let mut live = message(Recipient::User("bob".into()), "hi");
        live.sent_at_ms = jiff::Timestamp::now().as_millisecond();
        let local = jiff::Timestamp::from_millisecond(live.sent_at_ms)
            .expect("now is in range")
            .to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(2)))
            .strftime("%H:%M")
            .to_string();
        output.emit(&Event::Message {
            message: live,
            offline: false,
        });
        // From another day, with its date; answers carry no time.
        output.emit(&Event::Message {
            message: message(Recipient::Group("ops".into()), "old"),
            offline: true,
        });
        output.emit(&ok(Answer::ReadLog { count: 1 }));
        assert_eq!(
            *lines.0.lock().unwrap(),
            [
                format!("[{local}] [alice] hi"),
                "[1970-01-01 02:00] [offline #ops alice] old".to_string(),
                "readlog: 1 message".to_string(),
            ]
        );
    }

    #[test]
    fn the_last_answer_decides_whether_a_script_failed() {
        let output = Output::new(Format::Json, Box::new(Lines::default()));
        assert!(!output.last_failed());
        output.error("send", "no such user \"carol\"");
        assert!(output.last_failed());
        // A message between does not change it; the next answer does.
        output.emit(&Event::Message {
            message: message(Recipient::User("bob".into()), "hi"),
            offline: false,
        });
        assert!(output.last_failed());
        output.emit(&ok(Answer::Who { users: vec![] }));
        assert!(!output.last_failed());
    }
}
