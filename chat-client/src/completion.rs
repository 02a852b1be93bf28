//! Tab completion at the prompt: command words, user names and `#group` names.
//!
//! The names come from what the client has printed ([`Vocabulary::learn`]): the users of the
//! last `who` answer, the people you sent to, got messages from or asked about with `whois`,
//! the groups you are in (the last `groups` answer, then each `join`, `leave` and group
//! message) and every group that answer listed. Nothing is asked of the server to complete.
//!
//! What a word completes to depends on where it is ([`Vocabulary::complete`]): the first word
//! is a command (`/jo` gives `/join`); a word that starts with `#` is a group (for `join` any
//! group known, otherwise one you are in); the argument of `join` and `leave` is a group too;
//! a password is never completed; any other word is a user, as irssi completes nicks, the
//! people you talked to most recently first, then the others in name order. You are not among
//! them.

use crate::command::{command_word, ALIASES, COMMAND_NAMES};
use crate::output::{Answer, Event};
use chat_proto::Recipient;
use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// How many people completion remembers having talked to, beyond the `who` answer.
const MAX_RECENT: usize = 1000;

/// The most candidates offered for one word: Tab cycles through them.
const MAX_CANDIDATES: usize = 100;

/// The names completion knows. Shared by the session, which teaches it, and the prompt's
/// thread, which asks it; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Vocabulary(Arc<Mutex<Known>>);

#[derive(Debug, Default)]
struct Known {
    /// Who is logged in here, not offered to complete.
    me: Option<String>,
    /// People talked to or asked about, the most recent first.
    recent: VecDeque<String>,
    /// The users of the last `who` answer, in name order.
    online: Vec<String>,
    /// Groups you are in.
    joined: BTreeSet<String>,
    /// Every group of the last `groups` answer, in name order.
    listed: Vec<String>,
}

impl Known {
    fn talked_with(&mut self, user: &str) {
        if self.me.as_deref() == Some(user) {
            return;
        }
        self.recent.retain(|known| known != user);
        self.recent.push_front(user.to_string());
        self.recent.truncate(MAX_RECENT);
    }
}

impl Vocabulary {
    fn known(&self) -> MutexGuard<'_, Known> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Learns the names in an event the client printed.
    pub fn learn(&self, event: &Event) {
        let mut known = self.known();
        match event {
            Event::Message { message, .. } => {
                known.talked_with(&message.from);
                if let Recipient::Group(group) = &message.to {
                    known.joined.insert(group.clone());
                }
            }
            Event::Ok(answer) => match answer {
                Answer::Login { user, .. } => known.me = Some(user.clone()),
                Answer::Logout => known.me = None,
                Answer::Send { to, .. } => match to {
                    Recipient::User(user) => known.talked_with(user),
                    Recipient::Group(group) => {
                        known.joined.insert(group.clone());
                    }
                },
                Answer::WhoIs { user, .. } => known.talked_with(user),
                Answer::Who { users } => known.online = users.clone(),
                Answer::Join { group } => {
                    known.joined.insert(group.clone());
                }
                Answer::Leave { group } => {
                    known.joined.remove(group);
                }
                Answer::Groups { groups, joined } => {
                    known.listed = groups.clone();
                    known.joined = joined.iter().cloned().collect();
                }
                _ => {}
            },
            _ => {}
        }
    }

    /// Completes the word that ends at `pos` in `line`: where it starts, and what may replace
    /// it, each followed by a space, in the order Tab offers them.
    pub fn complete(&self, line: &str, pos: usize) -> (usize, Vec<String>) {
        let before = line.get(..pos).unwrap_or(line);
        let start = before
            .char_indices()
            .rev()
            .find(|(_, c)| c.is_whitespace())
            .map_or(0, |(idx, c)| idx + c.len_utf8());
        let word = &before[start..];
        let earlier: Vec<&str> = before[..start].split_whitespace().collect();
        let Some(typed_command) = earlier.first() else {
            return (start, commands(word));
        };
        let command = command_word(typed_command);
        let known = self.known();
        let candidates = match (command, earlier.len()) {
            // A password is the user's to type.
            ("login", 2..) | ("passwd", _) => Vec::new(),
            ("join", _) => groups(word, known.listed.iter().chain(&known.joined)),
            ("leave", _) => groups(word, &known.joined),
            _ if word.starts_with('#') => groups(word, &known.joined),
            _ => users(word, &known),
        };
        (start, candidates)
    }
}

/// Command words that start as `word` does, with its `/` if it has one.
fn commands(word: &str) -> Vec<String> {
    let (slash, prefix) = match word.strip_prefix('/') {
        Some(prefix) => ("/", prefix),
        None => ("", word),
    };
    let aliases = ALIASES.iter().map(|(alias, _)| alias);
    COMMAND_NAMES
        .iter()
        .chain(aliases)
        .filter(|name| name.starts_with(prefix))
        .map(|name| format!("{slash}{name} "))
        .collect()
}

/// Groups among `names` that start as `word` does (after its `#`), each once, as `#name`.
fn groups<'a>(word: &str, names: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let prefix = word.strip_prefix('#').unwrap_or(word);
    let matching: BTreeSet<&String> = names
        .into_iter()
        .filter(|name| name.starts_with(prefix))
        .collect();
    matching
        .into_iter()
        .take(MAX_CANDIDATES)
        .map(|name| format!("#{name} "))
        .collect()
}

/// Users that start as `word` does: the recent ones first, then who is online.
fn users(word: &str, known: &Known) -> Vec<String> {
    let mut seen = BTreeSet::new();
    known
        .recent
        .iter()
        .chain(&known.online)
        .filter(|user| user.starts_with(word) && known.me.as_ref() != Some(*user))
        .filter(|user| seen.insert(user.as_str()))
        .take(MAX_CANDIDATES)
        .map(|user| format!("{user} "))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_proto::{ChatMessage, MessageId};

    fn ok(answer: Answer) -> Event {
        Event::Ok(answer)
    }

    fn message_from(from: &str, to: Recipient) -> Event {
        Event::Message {
            message: ChatMessage {
                id: MessageId::new(),
                from: from.into(),
                to,
                text: "hi".into(),
                sent_at_ms: 0,
            },
            offline: false,
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| name.to_string()).collect()
    }

    /// A vocabulary that has seen a session of alice's.
    fn vocabulary() -> Vocabulary {
        let vocabulary = Vocabulary::default();
        for event in [
            ok(Answer::Login {
                user: "alice".into(),
                registered: false,
                waiting: 0,
                ticket: None,
            }),
            ok(Answer::Who {
                users: names(&["alan", "albert", "alice", "bob"]),
            }),
            ok(Answer::Groups {
                groups: names(&["dev", "ops", "opera"]),
                joined: names(&["dev"]),
            }),
            ok(Answer::Join {
                group: "ops".into(),
            }),
            message_from("carol", Recipient::User("alice".into())),
            message_from("dora", Recipient::Group("design".into())),
            ok(Answer::Send {
                id: MessageId::new(),
                to: Recipient::User("alex".into()),
            }),
        ] {
            vocabulary.learn(&event);
        }
        vocabulary
    }

    #[track_caller]
    fn check(line: &str, expected_start: usize, expected: &[&str]) {
        let (start, candidates) = vocabulary().complete(line, line.len());
        let expected: Vec<String> = expected.iter().map(|name| format!("{name} ")).collect();
        assert_eq!((start, candidates), (expected_start, expected), "{line:?}");
    }

    #[test]
    fn command_words() {
        check("lo", 0, &["login", "logout"]);
        check("  wh", 2, &["who", "whois", "whoami"]);
        check("/jo", 0, &["/join"]);
        check("/m", 0, &["/members", "/me", "/msg"]);
        check("pa", 0, &["passwd", "part"]);
        let (_, all) = Vocabulary::default().complete("", 0);
        assert_eq!(all.len(), COMMAND_NAMES.len() + ALIASES.len());
    }

    #[test]
    fn user_names_the_recent_first_and_never_yourself() {
        check("send al", 5, &["alex", "alan", "albert"]);
        check("/msg c", 5, &["carol"]);
        check("whois d", 6, &["dora"]);
        check("send b", 5, &["bob"]);
        check("send x", 5, &[]);
        // In the text too, as irssi completes nicks.
        check("send bob ask ca", 13, &["carol"]);
    }

    #[test]
    fn group_names() {
        check("send #", 5, &["#design", "#dev", "#ops"]);
        check("send #o", 5, &["#ops"]);
        // Any group known can be joined; only joined ones left.
        check("join op", 5, &["#opera", "#ops"]);
        check("/join #op", 6, &["#opera", "#ops"]);
        check("/part #", 6, &["#design", "#dev", "#ops"]);
    }

    #[test]
    fn what_the_vocabulary_forgets() {
        let vocabulary = vocabulary();
        vocabulary.learn(&ok(Answer::Leave {
            group: "ops".into(),
        }));
        vocabulary.learn(&ok(Answer::Who {
            users: names(&["alice"]),
        }));
        let (_, candidates) = vocabulary.complete("send #o", 7);
        assert!(candidates.is_empty(), "{candidates:?}");
        // Who was online is replaced; whom alice talked to stays.
        let (_, candidates) = vocabulary.complete("send al", 7);
        assert_eq!(candidates, ["alex "]);
    }

    #[test]
    fn passwords_are_not_completed() {
        check("login al", 6, &["alex", "alan", "albert"]);
        check("login alan a", 11, &[]);
        check("passwd a", 7, &[]);
        check("/passwd old a", 12, &[]);
    }

    #[test]
    fn the_word_under_the_cursor() {
        let vocabulary = vocabulary();
        // The cursor after "send b", before the rest.
        assert_eq!(vocabulary.complete("send b hi", 6), (5, names(&["bob "])));
        // Not inside a character.
        let (start, _) = vocabulary.complete("send é", 7);
        assert_eq!(start, 5);
    }
}
