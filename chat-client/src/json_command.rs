//! A command given as one JSON object, as the web gateway reads them from a page or a bot:
//! `{"command":"send","to":"bob","text":"hi"}`.
//!
//! The object has a `command` field, named as in the answers' `command` field, and the
//! arguments named as in the output: `user`, `password`, `ticket`, `to`, `group`, `text`,
//! `old`, `new`, and a `send`'s optional `id`. The same rules apply as to a typed line (`chat_proto::validate_*`), and so
//! does the answer: what does not parse is answered with an `error` object naming the
//! command (`input` when there is none), and nothing is sent. A field that the command does
//! not take is refused, so that a misspelt one is not silently dropped.

use crate::command::{Command, ParseError};
use crate::input::Parsed;
use crate::ticket_text;
use chat_proto::{validate_group, validate_text, validate_user, MessageId, Recipient};
use serde_json::{Map, Value};

/// The `command` of an error about input that names no command.
pub const INPUT: &str = "input";

/// Parses one JSON object into a command; never a blank (`Ok(None)`).
pub fn parse(text: &str) -> Parsed {
    let fail = |command: &str, message: String| ParseError {
        command: command.to_string(),
        message,
    };
    let object = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => object,
        Ok(_) => return Err(fail(INPUT, "expected a JSON object".to_string())),
        Err(err) => return Err(fail(INPUT, format!("not JSON: {err}"))),
    };
    let Some(word) = object.get("command").and_then(Value::as_str) else {
        let message = "expected a \"command\" field with the command's name".to_string();
        return Err(fail(INPUT, message));
    };
    let fields = Fields {
        word,
        object: &object,
    };
    fields
        .command()
        .map(Some)
        .map_err(|message| fail(word, message))
}

/// A command's object, read field by field.
struct Fields<'a> {
    word: &'a str,
    object: &'a Map<String, Value>,
}

impl Fields<'_> {
    fn command(&self) -> Result<Command, String> {
        let command = match self.word {
            "login" => self.login()?,
            "logout" => self.bare(Command::Logout)?,
            "passwd" => {
                self.only(&["old", "new"])?;
                Command::Passwd {
                    old: self.secret("old")?,
                    new: self.secret("new")?,
                }
            }
            "send" => self.send()?,
            "me" => {
                self.only(&["text"])?;
                let text = self.string("text")?;
                if text.trim().is_empty() {
                    return Err("missing text".to_string());
                }
                Command::Me { text }
            }
            "join" => Command::Join {
                group: self.group()?,
            },
            "leave" => Command::Leave {
                group: self.group()?,
            },
            "members" => Command::Members {
                group: self.group()?,
            },
            "groups" => self.bare(Command::Groups)?,
            "readlog" => self.bare(Command::ReadLog)?,
            "who" => self.bare(Command::Who)?,
            "whois" => {
                self.only(&["user"])?;
                Command::WhoIs { user: self.user()? }
            }
            "whoami" => self.bare(Command::WhoAmI)?,
            "help" => self.bare(Command::Help)?,
            "quit" => self.bare(Command::Quit)?,
            other => return Err(format!("unknown command {other:?}")),
        };
        Ok(command)
    }

    /// `login` with `password` (registering a new name) or with `ticket`, not both.
    fn login(&self) -> Result<Command, String> {
        self.only(&["user", "password", "ticket"])?;
        let user = self.user()?;
        match (self.has("password"), self.has("ticket")) {
            (true, false) => Ok(Command::Login {
                user,
                password: Some(self.secret("password")?),
            }),
            (false, true) => {
                let ticket = ticket_text::parse(&self.string("ticket")?)
                    .ok_or_else(|| "\"ticket\" is not a ticket of this farm".to_string())?;
                Ok(Command::Resume { user, ticket })
            }
            _ => Err("give either \"password\" or \"ticket\"".to_string()),
        }
    }

    /// `send` with `to` (a user) or `group`, not both, and `text`; and the message's `id`,
    /// when the sender chose it (so that sending again after a lost connection stores and
    /// shows it once).
    fn send(&self) -> Result<Command, String> {
        self.only(&["to", "group", "text", "id"])?;
        let id = match self.has("id") {
            true => Some(
                self.string("id")?
                    .parse::<MessageId>()
                    .map_err(|_| "\"id\" is not a UUID".to_string())?,
            ),
            false => None,
        };
        let to = match (self.has("to"), self.has("group")) {
            (true, false) => {
                let user = self.string("to")?;
                validate_user(&user).map_err(|err| err.to_string())?;
                Recipient::User(user)
            }
            (false, true) => Recipient::Group(self.group_name()?),
            _ => return Err("give either \"to\" (a user) or \"group\"".to_string()),
        };
        let text = self.string("text")?;
        validate_text(&text).map_err(|err| err.to_string())?;
        Ok(Command::Send { to, text, id })
    }

    /// A command whose only field is `group`.
    fn group(&self) -> Result<String, String> {
        self.only(&["group"])?;
        self.group_name()
    }

    /// The `group` field, without the `#` it may start with.
    fn group_name(&self) -> Result<String, String> {
        let group = self.string("group")?;
        let group = group.strip_prefix('#').unwrap_or(&group);
        validate_group(group).map_err(|err| err.to_string())?;
        Ok(group.to_string())
    }

    fn user(&self) -> Result<String, String> {
        let user = self.string("user")?;
        validate_user(&user).map_err(|err| err.to_string())?;
        Ok(user)
    }

    /// A password: any non-empty string.
    fn secret(&self, field: &str) -> Result<String, String> {
        let secret = self.string(field)?;
        if secret.is_empty() {
            return Err(format!("\"{field}\" is empty"));
        }
        Ok(secret)
    }

    fn bare(&self, command: Command) -> Result<Command, String> {
        self.only(&[])?;
        Ok(command)
    }

    fn has(&self, field: &str) -> bool {
        self.object.contains_key(field)
    }

    fn string(&self, field: &str) -> Result<String, String> {
        match self.object.get(field) {
            Some(Value::String(value)) => Ok(value.clone()),
            Some(_) => Err(format!("\"{field}\" must be a string")),
            None => Err(format!("missing \"{field}\"")),
        }
    }

    /// Refuses any field but `command` and these.
    fn only(&self, allowed: &[&str]) -> Result<(), String> {
        let extra = self
            .object
            .keys()
            .find(|key| *key != "command" && !allowed.contains(&key.as_str()));
        match extra {
            Some(key) => Err(format!("{} takes no field {key:?}", self.word)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_proto::Ticket;

    #[track_caller]
    fn check(json: &str, expected: Command) {
        assert_eq!(parse(json), Ok(Some(expected)), "{json}");
    }

    #[track_caller]
    fn check_error(json: &str, command: &str, message: &str) {
        let expected = ParseError {
            command: command.to_string(),
            message: message.to_string(),
        };
        assert_eq!(parse(json), Err(expected), "{json}");
    }

    #[test]
    fn the_issues_examples() {
        check(
            r#"{"command":"login","user":"alice","password":"two words"}"#,
            Command::Login {
                user: "alice".into(),
                password: Some("two words".into()),
            },
        );
        check(
            r#"{"command":"send","to":"bob","text":"hi\nthere"}"#,
            Command::Send {
                to: Recipient::User("bob".into()),
                text: "hi\nthere".into(),
                id: None,
            },
        );
        check(
            r##"{"command":"send","group":"#ops","text":"hi"}"##,
            Command::Send {
                to: Recipient::Group("ops".into()),
                text: "hi".into(),
                id: None,
            },
        );
        check(
            r#"{"command":"send","to":"bob","text":"hi","id":"0191d4f0-0000-7000-8000-000000000001"}"#,
            Command::Send {
                to: Recipient::User("bob".into()),
                text: "hi".into(),
                id: Some("0191d4f0-0000-7000-8000-000000000001".parse().unwrap()),
            },
        );
        check_error(
            r#"{"command":"send","to":"bob","text":"hi","id":"x"}"#,
            "send",
            "\"id\" is not a UUID",
        );
        check(
            r#"{"command":"join","group":"ops"}"#,
            Command::Join {
                group: "ops".into(),
            },
        );
        check(r#"{"command":"readlog"}"#, Command::ReadLog);
        check(r#" {"command":"who"} "#, Command::Who);
        check(
            r#"{"command":"whois","user":"bob"}"#,
            Command::WhoIs { user: "bob".into() },
        );
    }

    #[test]
    fn a_ticket_logs_in_instead_of_the_password() {
        check(
            r#"{"command":"login","user":"alice","ticket":"00ff"}"#,
            Command::Resume {
                user: "alice".into(),
                ticket: Ticket(vec![0, 0xff]),
            },
        );
        let either = "give either \"password\" or \"ticket\"";
        check_error(r#"{"command":"login","user":"alice"}"#, "login", either);
        check_error(
            r#"{"command":"login","user":"alice","password":"pw","ticket":"00"}"#,
            "login",
            either,
        );
        check_error(
            r#"{"command":"login","user":"alice","ticket":"xyz"}"#,
            "login",
            "\"ticket\" is not a ticket of this farm",
        );
    }

    #[test]
    fn bad_input_is_answered() {
        check_error(
            "{",
            INPUT,
            "not JSON: EOF while parsing an object at line 1 column 1",
        );
        check_error("[1]", INPUT, "expected a JSON object");
        check_error(
            r#"{"text":"hi"}"#,
            INPUT,
            "expected a \"command\" field with the command's name",
        );
        check_error(
            r#"{"command":"dance"}"#,
            "dance",
            "unknown command \"dance\"",
        );
        check_error(
            r#"{"command":"send","to":"bob","txt":"hi"}"#,
            "send",
            "send takes no field \"txt\"",
        );
        check_error(
            r#"{"command":"send","to":"bob","text":7}"#,
            "send",
            "\"text\" must be a string",
        );
        check_error(
            r#"{"command":"send","to":"bob","group":"ops","text":"hi"}"#,
            "send",
            "give either \"to\" (a user) or \"group\"",
        );
        check_error(
            r#"{"command":"send","to":"bob","text":""}"#,
            "send",
            "message text is empty",
        );
        check_error(
            r#"{"command":"join","group":"o:ps"}"#,
            "join",
            "group name may only contain A-Z a-z 0-9 _ . - (found ':')",
        );
        check_error(
            r#"{"command":"who","all":true}"#,
            "who",
            "who takes no field \"all\"",
        );
        check_error(
            r#"{"command":"login","user":"al!ce","password":"pw"}"#,
            "login",
            "user name may only contain A-Z a-z 0-9 _ . - (found '!')",
        );
    }
}
