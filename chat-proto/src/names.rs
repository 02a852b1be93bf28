//! Validation of everything a person types that the server stores or routes by.

use thiserror::Error;

/// The longest user or group name, in bytes (names are ASCII, so also in characters).
pub const MAX_NAME_LEN: usize = 32;
/// The longest message text, in bytes of UTF-8.
pub const MAX_TEXT_LEN: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    #[error("{kind} name is empty")]
    Empty { kind: &'static str },
    #[error("{kind} name is longer than {MAX_NAME_LEN} characters")]
    TooLong { kind: &'static str },
    #[error("{kind} name may only contain A-Z a-z 0-9 _ . - (found {found:?})")]
    BadChar { kind: &'static str, found: char },
    #[error("message text is empty")]
    EmptyText,
    #[error("message text is {len} bytes; the limit is {MAX_TEXT_LEN}")]
    TextTooLong { len: usize },
}

/// Checks a user name: 1 to 32 characters of `A-Z a-z 0-9 _ . -`.
pub fn validate_user(name: &str) -> Result<(), NameError> {
    validate_name("user", name)
}

/// Checks a group name, without its leading `#`: the same rules as a user name.
pub fn validate_group(name: &str) -> Result<(), NameError> {
    validate_name("group", name)
}

/// Checks message text: not empty, at most 4096 bytes. (It is UTF-8 by construction.)
pub fn validate_text(text: &str) -> Result<(), NameError> {
    if text.is_empty() {
        return Err(NameError::EmptyText);
    }
    if text.len() > MAX_TEXT_LEN {
        return Err(NameError::TextTooLong { len: text.len() });
    }
    Ok(())
}

fn validate_name(kind: &'static str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if let Some(found) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(NameError::BadChar { kind, found });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { kind });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_user(name: &str, ok: bool) {
        assert_eq!(validate_user(name).is_ok(), ok, "{name:?}");
    }

    #[test]
    fn user_names() {
        check_user("alice", true);
        check_user("A.b-c_9", true);
        check_user(&"x".repeat(32), true);
        check_user(&"x".repeat(33), false);
        check_user("", false);
        check_user("al ice", false);
        check_user("#ops", false);
        check_user("élise", false);
        check_user("bob\n", false);
    }

    #[test]
    fn text_limits() {
        assert!(validate_text("hi").is_ok());
        assert!(validate_text(&"é".repeat(2048)).is_ok());
        assert_eq!(
            validate_text(&"é".repeat(2049)),
            Err(NameError::TextTooLong { len: 4098 })
        );
        assert_eq!(validate_text(""), Err(NameError::EmptyText));
    }

    #[test]
    fn errors_read_well() {
        let err = validate_group("a b").unwrap_err().to_string();
        assert_eq!(
            err,
            "group name may only contain A-Z a-z 0-9 _ . - (found ' ')"
        );
    }
}
