//! A resume ticket as text, for a front end that logs in again somewhere this process cannot
//! follow (the web page moving between the farm's web endpoints).
//!
//! The terminal client never shows its ticket: only an [`Output`](crate::output::Output) made
//! `with_tickets` prints one. The text is the ticket's bytes in lower-case hex; it is a secret
//! for as long as the ticket is valid, and its `Debug` form hides it.

use chat_proto::Ticket;
use serde::Serialize;
use std::fmt;

/// A ticket's bytes in hex, for the JSON a web page reads.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct TicketText(String);

impl TicketText {
    pub fn new(ticket: &Ticket) -> TicketText {
        let mut text = String::with_capacity(ticket.0.len() * 2);
        for byte in &ticket.0 {
            text.push_str(&format!("{byte:02x}"));
        }
        TicketText(text)
    }
}

impl fmt::Debug for TicketText {
    /// A ticket is a secret while it is valid: never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TicketText({} hex digits)", self.0.len())
    }
}

/// The most bytes a ticket given as text may have; the farm's are far shorter.
const MAX_TICKET_BYTES: usize = 1024;

/// Reads a ticket written by [`TicketText`]; `None` unless it is an even number of hex
/// digits, at most [`MAX_TICKET_BYTES`] bytes.
pub fn parse(text: &str) -> Option<Ticket> {
    let fits =
        !text.is_empty() && text.len().is_multiple_of(2) && text.len() <= 2 * MAX_TICKET_BYTES;
    if !fits || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return None;
    }
    let bytes = text
        .as_bytes()
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(pair, 16).ok()
        })
        .collect::<Option<Vec<u8>>>()?;
    Some(Ticket(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_survives_its_text() {
        let ticket = Ticket(vec![0, 1, 0xab, 0xff]);
        let text = TicketText::new(&ticket);
        assert_eq!(serde_json::to_string(&text).unwrap(), r#""0001abff""#);
        assert_eq!(parse("0001abff"), Some(ticket.clone()));
        assert_eq!(parse("0001ABFF"), Some(ticket));
        assert!(!format!("{text:?}").contains("ab"), "{text:?}");
    }

    #[test]
    fn anything_else_is_no_ticket() {
        for bad in ["", "0", "zz", "+1", "0g", "é0"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert_eq!(parse(&"00".repeat(MAX_TICKET_BYTES + 1)), None);
        assert!(parse(&"00".repeat(MAX_TICKET_BYTES)).is_some());
    }
}
