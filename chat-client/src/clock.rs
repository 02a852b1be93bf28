//! When a message was sent, for people and for scripts.
//!
//! Every message carries the moment its server accepted it (`sent_at_ms`). JSON gives it as
//! ISO 8601 in UTC with milliseconds ([`iso_utc`]), which any language parses. People see it
//! as local time before the message ([`Clock::stamp`]), as irssi shows it: `12:04` for today,
//! with the date for an older message (one that waited for `readlog`, say).
//!
//! The local time zone is the system's, as jiff reads it: `TZ` (a zone name such as
//! `Europe/Paris`, or a POSIX rule such as `CET-1CEST,M3.5.0,M10.5.0/3`), else
//! `/etc/localtime`, else UTC. Each instant is converted with its own offset, so a message
//! from before a change to or from summer time shows the time the clock showed then.

use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Converts sent times to the local time of one time zone.
#[derive(Debug, Clone)]
pub struct Clock {
    zone: TimeZone,
}

impl Clock {
    /// The system's time zone (see the module's documentation).
    pub fn local() -> Clock {
        Clock::in_zone(TimeZone::system())
    }

    pub fn in_zone(zone: TimeZone) -> Clock {
        Clock { zone }
    }

    /// The local time of `sent_at_ms`, as a message's stamp shows it now.
    pub fn stamp(&self, sent_at_ms: i64) -> String {
        self.stamp_at(sent_at_ms, Timestamp::now())
    }

    /// The local time of `sent_at_ms` as seen at `now`: `HH:MM` on the same local day, and
    /// `YYYY-MM-DD HH:MM` otherwise.
    pub fn stamp_at(&self, sent_at_ms: i64, now: Timestamp) -> String {
        let sent = instant(sent_at_ms).to_zoned(self.zone.clone());
        let today = now.to_zoned(self.zone.clone()).date();
        let format = if sent.date() == today {
            "%H:%M"
        } else {
            "%Y-%m-%d %H:%M"
        };
        sent.strftime(format).to_string()
    }
}

/// `sent_at_ms` in ISO 8601, UTC, to the millisecond: `2026-12-02T03:04:05.678Z`.
pub fn iso_utc(sent_at_ms: i64) -> String {
    instant(sent_at_ms)
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// The instant of `ms` since the Unix epoch, held to the range a time can be shown in (the
/// years -9999 to 9999): a server's clock never leaves it.
fn instant(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::tz::Offset;

    /// 2026-12-02T03:04:05.678Z.
    const SENT: i64 = 1_796_180_645_678;

    fn at(iso: &str) -> Timestamp {
        iso.parse().expect("a valid timestamp")
    }

    #[test]
    fn json_times_are_utc_to_the_millisecond() {
        assert_eq!(iso_utc(SENT), "2026-12-02T03:04:05.678Z");
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_utc(-1), "1969-12-31T23:59:59.999Z");
        // Out of range: held to the edge rather than failing.
        assert!(
            iso_utc(i64::MAX).starts_with("9999-12-"),
            "{}",
            iso_utc(i64::MAX)
        );
    }

    #[test]
    fn stamps_are_local_time_with_the_date_when_not_today() {
        let india = Clock::in_zone(TimeZone::fixed(
            Offset::from_seconds(5 * 3600 + 1800).expect("a valid offset"),
        ));
        assert_eq!(india.stamp_at(SENT, at("2026-12-02T10:00:00Z")), "08:34");
        // The next local day began at 18:30 UTC.
        assert_eq!(
            india.stamp_at(SENT, at("2026-12-02T18:30:00Z")),
            "2026-12-02 08:34"
        );
        let utc = Clock::in_zone(TimeZone::UTC);
        assert_eq!(utc.stamp_at(SENT, at("2026-12-02T23:59:59Z")), "03:04");
        assert_eq!(
            utc.stamp_at(SENT, at("2026-12-01T23:00:00Z")),
            "2026-12-02 03:04"
        );
    }

    #[test]
    fn each_instant_has_its_own_offset() {
        let paris = Clock::in_zone(
            TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").expect("a valid POSIX rule"),
        );
        // Summer time in July, not in December.
        let july = at("2026-07-01T12:00:00Z").as_millisecond();
        assert_eq!(paris.stamp_at(july, at("2026-07-01T13:00:00Z")), "14:00");
        assert_eq!(paris.stamp_at(SENT, at("2026-12-02T12:00:00Z")), "04:04");
    }
}
