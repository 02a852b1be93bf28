//! Turning one line that a person or a script typed into a [`Command`].
//!
//! Everything that can be checked without the server is checked here, with the same rules the
//! server applies (`chat_proto::validate_*`), so that bad input is answered at once and never
//! sent.
//!
//! IRC's habits work: a leading `/` is accepted on every command (`/join #ops`, `/quit`),
//! `msg` is `send` and `part` is `leave` ([`ALIASES`]), and `/me <text>` sends
//! `* <you> <text>` to the conversation of the last `send` (see `session`).

use chat_proto::{validate_group, validate_text, validate_user, MessageId, Recipient};

/// One command, checked and ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `login <user> [<password>]`. Without a password the client asks for one, which only
    /// works when the input is a terminal.
    Login {
        user: String,
        password: Option<String>,
    },
    /// A login with a resume ticket instead of the password: only a program gives one (the
    /// web gateway, for a page that moved servers; see `json_command`), never a typed line.
    Resume {
        user: String,
        ticket: chat_proto::Ticket,
    },
    Logout,
    /// `passwd <old> <new>`: the old password is the first word, the new one the rest.
    Passwd {
        old: String,
        new: String,
    },
    /// `send <user> <text>` or `send #<group> <text>`.
    Send {
        to: Recipient,
        text: String,
        /// The message's id, when the program that gave the command chose it (a web page
        /// that sends it again after a move, see `json_command`); else one is drawn when the
        /// command is typed.
        id: Option<MessageId>,
    },
    /// `join <group>`; the group name is stored without its optional `#`.
    Join {
        group: String,
    },
    Leave {
        group: String,
    },
    Groups,
    /// `/me <text>`: an action, sent as `* <user> <text>` to the user or group of the last
    /// successful `send`, and answered as a `send`.
    Me {
        text: String,
    },
    /// `members <group>`: the members of a group the user is in.
    Members {
        group: String,
    },
    ReadLog,
    Who,
    /// `whois <user>`: whether the user is online, where, and their home and backup.
    WhoIs {
        user: String,
    },
    WhoAmI,
    Help,
    Quit,
}

impl Command {
    /// The command word, as it appears in the `command` field of the answer.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Login { .. } | Command::Resume { .. } => "login",
            Command::Logout => "logout",
            Command::Passwd { .. } => "passwd",
            Command::Send { .. } => "send",
            Command::Join { .. } => "join",
            Command::Leave { .. } => "leave",
            Command::Groups => "groups",
            Command::Me { .. } => "me",
            Command::Members { .. } => "members",
            Command::ReadLog => "readlog",
            Command::Who => "who",
            Command::WhoIs { .. } => "whois",
            Command::WhoAmI => "whoami",
            Command::Help => "help",
            Command::Quit => "quit",
        }
    }
}

/// A line that is not a valid command. Answered as an error; nothing is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// The command word the user typed, for the `command` field of the error.
    pub command: String,
    pub message: String,
}

/// Each command's usage and what it does, in the order `help` lists them.
pub const USAGE: &[(&str, &str)] = &[
    (
        "login <user> [<password>]",
        "log in, creating the account if the name is new",
    ),
    (
        "logout",
        "log out, and make every device log in with the password next time",
    ),
    (
        "passwd <old> <new>",
        "change your password; other devices must log in again",
    ),
    ("send <user> <text>", "send a direct message"),
    ("send #<group> <text>", "send a message to a group"),
    (
        "join <group>",
        "join a group, creating it if it does not exist",
    ),
    ("leave <group>", "leave a group"),
    ("groups", "list all groups and the ones you joined"),
    (
        "/me <text>",
        "send \"* <you> <text>\" to whom your last message went",
    ),
    (
        "/msg, /part",
        "IRC's words for send and leave; a leading / works on every command",
    ),
    ("members <group>", "list the members of a group you are in"),
    ("readlog", "show the messages that waited for you"),
    ("who", "list the users who are logged in"),
    ("whois <user>", "show whether a user is online, and where"),
    ("whoami", "show your name, your server, home and backup"),
    ("help", "show this list"),
    ("quit", "leave the chat"),
];

/// The command words, for `help` in JSON and for tab completion.
pub const COMMAND_NAMES: &[&str] = &[
    "login", "logout", "passwd", "send", "join", "leave", "groups", "members", "me", "readlog",
    "who", "whois", "whoami", "help", "quit",
];

/// IRC's words for commands, and the command each stands for.
pub const ALIASES: &[(&str, &str)] = &[("msg", "send"), ("part", "leave")];

/// The command a typed word stands for: without a leading `/`, and an alias replaced by its
/// command. A word that is no command comes back as it was typed, `/` and all.
pub fn command_word(typed: &str) -> &str {
    let word = typed.strip_prefix('/').unwrap_or(typed);
    if let Some((_, command)) = ALIASES.iter().find(|(alias, _)| *alias == word) {
        return command;
    }
    if COMMAND_NAMES.contains(&word) {
        word
    } else {
        typed
    }
}

/// Parses one line. A blank line is `Ok(None)`.
///
/// Words are separated by whitespace. For `send`, the text is the rest of the line after the
/// recipient and the whitespace that follows it, kept exactly. For `login`, the password is
/// the rest of the line after the user name, without surrounding whitespace.
pub fn parse_line(line: &str) -> Result<Option<Command>, ParseError> {
    let line = line.trim_end_matches(['\n', '\r']);
    let (typed, rest) = split_word(line);
    if typed.is_empty() {
        return Ok(None);
    }
    let word = command_word(typed);
    let fail = |message: String| ParseError {
        command: word.to_string(),
        message,
    };
    let command = match word {
        "login" => parse_login(rest),
        "send" => parse_send(rest),
        "join" => one_group(rest, "join").map(|group| Command::Join { group }),
        "leave" => one_group(rest, "leave").map(|group| Command::Leave { group }),
        "logout" => no_arguments(rest, "logout", Command::Logout),
        "passwd" => parse_passwd(rest),
        "groups" => no_arguments(rest, "groups", Command::Groups),
        "me" => parse_me(rest),
        "members" => one_group(rest, "members").map(|group| Command::Members { group }),
        "readlog" => no_arguments(rest, "readlog", Command::ReadLog),
        "who" => no_arguments(rest, "who", Command::Who),
        "whois" => one_user(rest, "whois").map(|user| Command::WhoIs { user }),
        "whoami" => no_arguments(rest, "whoami", Command::WhoAmI),
        "help" => no_arguments(rest, "help", Command::Help),
        "quit" => no_arguments(rest, "quit", Command::Quit),
        _ => Err(format!("unknown command {word:?}; type help for a list")),
    };
    command.map(Some).map_err(fail)
}

/// Splits off the first word, skipping whitespace before it and after it.
fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    match text.find(char::is_whitespace) {
        Some(end) => (&text[..end], text[end..].trim_start()),
        None => (text, ""),
    }
}

fn usage(command: &str) -> String {
    let lines: Vec<&str> = USAGE
        .iter()
        .map(|(usage, _)| *usage)
        .filter(|usage| usage_word(usage) == command)
        .collect();
    format!("usage: {}", lines.join(" | "))
}

/// The command a usage line is about: its first word, without the `/` that some carry.
fn usage_word(usage: &str) -> &str {
    let word = split_word(usage).0;
    word.strip_prefix('/').unwrap_or(word)
}

fn parse_login(rest: &str) -> Result<Command, String> {
    let (user, password) = split_word(rest);
    if user.is_empty() {
        return Err(format!("missing user name; {}", usage("login")));
    }
    validate_user(user).map_err(|err| err.to_string())?;
    let password = password.trim();
    Ok(Command::Login {
        user: user.to_string(),
        password: (!password.is_empty()).then(|| password.to_string()),
    })
}

fn parse_passwd(rest: &str) -> Result<Command, String> {
    let (old, new) = split_word(rest);
    let new = new.trim();
    if old.is_empty() || new.is_empty() {
        return Err(format!(
            "give the old and the new password; {}",
            usage("passwd")
        ));
    }
    Ok(Command::Passwd {
        old: old.to_string(),
        new: new.to_string(),
    })
}

/// The text of `/me` is checked once it is whole, with the user's name in it.
fn parse_me(rest: &str) -> Result<Command, String> {
    if rest.trim().is_empty() {
        return Err(format!("missing text; {}", usage("me")));
    }
    Ok(Command::Me {
        text: rest.to_string(),
    })
}

fn parse_send(rest: &str) -> Result<Command, String> {
    let (recipient, text) = split_word(rest);
    if recipient.is_empty() {
        return Err(format!("missing recipient; {}", usage("send")));
    }
    let to = match recipient.strip_prefix('#') {
        Some(group) => {
            validate_group(group).map_err(|err| err.to_string())?;
            Recipient::Group(group.to_string())
        }
        None => {
            validate_user(recipient).map_err(|err| err.to_string())?;
            Recipient::User(recipient.to_string())
        }
    };
    validate_text(text).map_err(|err| err.to_string())?;
    Ok(Command::Send {
        to,
        text: text.to_string(),
        id: None,
    })
}

fn one_group(rest: &str, command: &str) -> Result<String, String> {
    let (group, extra) = split_word(rest);
    if group.is_empty() {
        return Err(format!("missing group name; {}", usage(command)));
    }
    if !extra.is_empty() {
        return Err(format!("too many arguments; {}", usage(command)));
    }
    let group = group.strip_prefix('#').unwrap_or(group);
    validate_group(group).map_err(|err| err.to_string())?;
    Ok(group.to_string())
}

fn one_user(rest: &str, command: &str) -> Result<String, String> {
    let (user, extra) = split_word(rest);
    if user.is_empty() {
        return Err(format!("missing user name; {}", usage(command)));
    }
    if !extra.is_empty() {
        return Err(format!("too many arguments; {}", usage(command)));
    }
    validate_user(user).map_err(|err| err.to_string())?;
    Ok(user.to_string())
}

fn no_arguments(rest: &str, command: &str, parsed: Command) -> Result<Command, String> {
    if rest.trim().is_empty() {
        Ok(parsed)
    } else {
        Err(format!("{command} takes no arguments"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expected: Command) {
        assert_eq!(parse_line(input), Ok(Some(expected)), "input {input:?}");
    }

    #[track_caller]
    fn check_error(input: &str, command: &str, message: &str) {
        let expected = ParseError {
            command: command.to_string(),
            message: message.to_string(),
        };
        assert_eq!(parse_line(input), Err(expected), "input {input:?}");
    }

    fn send(to: Recipient, text: &str) -> Command {
        Command::Send {
            to,
            text: text.to_string(),
            id: None,
        }
    }

    #[test]
    fn blank_lines_are_nothing() {
        assert_eq!(parse_line(""), Ok(None));
        assert_eq!(parse_line("   \t "), Ok(None));
        assert_eq!(parse_line("\r\n"), Ok(None));
    }

    #[test]
    fn login() {
        let login = |user: &str, password: Option<&str>| Command::Login {
            user: user.into(),
            password: password.map(String::from),
        };
        check("login alice secret", login("alice", Some("secret")));
        check(
            "  login   alice   secret  \r\n",
            login("alice", Some("secret")),
        );
        check("login alice", login("alice", None));
        check("login alice   ", login("alice", None));
        check("login alice two words", login("alice", Some("two words")));
        check_error(
            "login",
            "login",
            "missing user name; usage: login <user> [<password>]",
        );
        check_error(
            "login al!ce pw",
            "login",
            "user name may only contain A-Z a-z 0-9 _ . - (found '!')",
        );
    }

    #[test]
    fn send_keeps_the_text_exactly() {
        let bob = || Recipient::User("bob".into());
        check("send bob hi", send(bob(), "hi"));
        check("send bob  two  spaces ", send(bob(), "two  spaces "));
        check("send bob\thi\tthere", send(bob(), "hi\tthere"));
        check("send bob hi\n", send(bob(), "hi"));
        check(
            "send #ops deploy at 5",
            send(Recipient::Group("ops".into()), "deploy at 5"),
        );
        check("send bob é ✓", send(bob(), "é ✓"));
    }

    #[test]
    fn send_errors() {
        check_error(
            "send",
            "send",
            "missing recipient; usage: send <user> <text> | send #<group> <text>",
        );
        check_error("send bob", "send", "message text is empty");
        check_error("send bob   ", "send", "message text is empty");
        check_error("send # hi", "send", "group name is empty");
        check_error(
            "send #o:ps hi",
            "send",
            "group name may only contain A-Z a-z 0-9 _ . - (found ':')",
        );
        check_error(
            &format!("send bob {}", "x".repeat(4097)),
            "send",
            "message text is 4097 bytes; the limit is 4096",
        );
        check(
            &format!("send bob {}", "x".repeat(4096)),
            send(Recipient::User("bob".into()), &"x".repeat(4096)),
        );
    }

    #[test]
    fn groups_accept_a_leading_hash() {
        check(
            "join ops",
            Command::Join {
                group: "ops".into(),
            },
        );
        check(
            "join #ops",
            Command::Join {
                group: "ops".into(),
            },
        );
        check(
            "leave #ops",
            Command::Leave {
                group: "ops".into(),
            },
        );
        check(
            "members #ops",
            Command::Members {
                group: "ops".into(),
            },
        );
        check_error("join", "join", "missing group name; usage: join <group>");
        check_error(
            "members",
            "members",
            "missing group name; usage: members <group>",
        );
        check_error(
            "leave a b",
            "leave",
            "too many arguments; usage: leave <group>",
        );
        check_error(
            "join ##ops",
            "join",
            "group name may only contain A-Z a-z 0-9 _ . - (found '#')",
        );
        check_error(
            &format!("join {}", "g".repeat(33)),
            "join",
            "group name is longer than 32 characters",
        );
    }

    #[test]
    fn whois_takes_one_user_name() {
        let whois = |user: &str| Command::WhoIs { user: user.into() };
        check("whois bob", whois("bob"));
        check("  whois\tbob  ", whois("bob"));
        check_error("whois", "whois", "missing user name; usage: whois <user>");
        check_error(
            "whois bob carol",
            "whois",
            "too many arguments; usage: whois <user>",
        );
        check_error(
            "whois #ops",
            "whois",
            "user name may only contain A-Z a-z 0-9 _ . - (found '#')",
        );
        check_error(
            &format!("whois {}", "b".repeat(33)),
            "whois",
            "user name is longer than 32 characters",
        );
    }

    #[test]
    fn commands_without_arguments() {
        check("logout", Command::Logout);
        check("groups", Command::Groups);
        check("readlog", Command::ReadLog);
        check("who", Command::Who);
        check(" whoami ", Command::WhoAmI);
        check("help", Command::Help);
        check("quit", Command::Quit);
        check_error("who all", "who", "who takes no arguments");
    }

    #[test]
    fn unknown_commands_name_the_word_typed() {
        check_error(
            "dance now",
            "dance",
            "unknown command \"dance\"; type help for a list",
        );
        check_error(
            "LOGIN alice",
            "LOGIN",
            "unknown command \"LOGIN\"; type help for a list",
        );
    }

    #[test]
    fn every_command_has_a_name_usage_and_help() {
        for name in COMMAND_NAMES {
            assert!(
                USAGE.iter().any(|(usage, _)| usage_word(usage) == *name),
                "{name} has no usage line"
            );
        }
    }

    #[test]
    fn irc_habits_work() {
        let bob = || Recipient::User("bob".into());
        check("/msg bob hi there", send(bob(), "hi there"));
        check("msg bob hi", send(bob(), "hi"));
        check("/send #ops hi", send(Recipient::Group("ops".into()), "hi"));
        check(
            "/join #ops",
            Command::Join {
                group: "ops".into(),
            },
        );
        check(
            "/part #ops",
            Command::Leave {
                group: "ops".into(),
            },
        );
        check("/quit", Command::Quit);
        check("  /who ", Command::Who);
        check(
            "/me waves  at you",
            Command::Me {
                text: "waves  at you".into(),
            },
        );
        // Errors name the command that was meant, and its usage.
        check_error("/msg bob", "send", "message text is empty");
        check_error("/me", "me", "missing text; usage: /me <text>");
        check_error("/part", "leave", "missing group name; usage: leave <group>");
        check_error(
            "/dance",
            "/dance",
            "unknown command \"/dance\"; type help for a list",
        );
        check_error("/", "/", "unknown command \"/\"; type help for a list");
        check_error(
            "//quit",
            "//quit",
            "unknown command \"//quit\"; type help for a list",
        );
    }
}
