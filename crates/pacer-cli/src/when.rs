//! Parsing `--finish-at`: a wall-clock time today (local) or an RFC 3339 instant.
//!
//! Dates, offsets and time zones come from `jiff` (BurntSushi's, at 1.0 and actively
//! maintained; it reads the system's time zone database and resolves DST gaps and folds
//! explicitly, where `chrono` is still 0.4 and its local-time API is rougher).

use std::time::SystemTime;

use jiff::civil::Time;
use jiff::{Timestamp, ZonedDateTime};

/// `HH:MM[:SS]` today in local time, or RFC 3339 (`2026-11-25T14:05:00Z`, `...+01:00`).
///
/// A clock time that falls in a DST gap moves forward by the gap (02:30 on the night clocks
/// jump from 02:00 to 03:00 is 03:30); one that happens twice (clocks turned back) is the
/// first of the two, so a deadline is never later than meant.
pub fn parse_finish_at(s: &str) -> Result<SystemTime, String> {
    parse_finish_at_in(s, &ZonedDateTime::now())
}

/// [`parse_finish_at`] as if it were `now` (whose time zone is the local one).
fn parse_finish_at_in(s: &str, now: &ZonedDateTime) -> Result<SystemTime, String> {
    let s = s.trim();
    let t = if is_date_time(s) {
        parse_rfc3339(s)?
    } else {
        clock_time_today(s, now)?
    };
    SystemTime::try_from(t).map_err(|e| format!("time {s:?} cannot be used here: {e}"))
}

/// Whether `s` reads as a date and a time (`2026-11-25T...`) rather than a clock time.
fn is_date_time(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_digit()) && s.contains(['T', 't', '-'])
}

/// `HH:MM` or `HH:MM:SS` on today's date in `now`'s time zone.
fn clock_time_today(s: &str, now: &ZonedDateTime) -> Result<Timestamp, String> {
    let bad =
        || format!("bad time {s:?}: give HH:MM, HH:MM:SS or RFC 3339 like 2026-11-25T14:05:00Z");
    let field = |p: &str| -> Option<i8> {
        let ok = (1..=2).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
        ok.then(|| p.parse().ok()).flatten()
    };
    let nums: Option<Vec<i8>> = s.split(':').map(field).collect();
    let (h, m, sec) = match nums.ok_or_else(bad)?[..] {
        [h, m] => (h, m, 0),
        [h, m, sec] => (h, m, sec),
        _ => return Err(bad()),
    };
    if h > 23 || m > 59 || sec > 59 {
        return Err(bad());
    }
    let time = Time::new(h, m, sec, 0).map_err(|_| bad())?;
    let local = now.date().to_datetime(time);
    now.time_zone()
        .to_ambiguous_timestamp(local)
        .compatible()
        .map_err(|e| format!("bad time {s:?}: {e}"))
}

/// An instant with its offset: `2026-11-25T14:05:00Z`, `2026-11-25T15:05:00+01:00`.
fn parse_rfc3339(s: &str) -> Result<Timestamp, String> {
    s.parse::<Timestamp>().map_err(|e| {
        format!(
            "bad RFC 3339 time {s:?} ({e}): e.g. 2026-11-25T14:05:00Z or 2026-11-25T15:05:00+01:00"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::{date, DateTime};
    use jiff::tz::TimeZone;
    use std::time::{Duration, UNIX_EPOCH};

    /// Central European rules (Europe/Berlin since 1996) as a POSIX TZ string, so the tests
    /// do not depend on the machine's time zone database.
    const CET: &str = "CET-1CEST,M3.5.0,M10.5.0/3";
    /// United States Eastern rules since 2007.
    const EST: &str = "EST5EDT,M3.2.0,M11.1.0";

    /// A "now" at `at` in the zone `posix`.
    fn now(posix: &str, at: DateTime) -> ZonedDateTime {
        at.to_zoned_datetime(TimeZone::posix(posix).unwrap())
            .unwrap()
    }

    /// `s` parsed at `now`, as an RFC 3339 UTC string.
    fn at(s: &str, now: &ZonedDateTime) -> String {
        let t = parse_finish_at_in(s, now).unwrap_or_else(|e| panic!("{s}: {e}"));
        Timestamp::try_from(t).unwrap().to_string()
    }

    fn unix(s: &str) -> u64 {
        let t = parse_finish_at(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        t.duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    #[test]
    fn rfc3339_instants() {
        assert_eq!(unix("2026-11-25T14:05:00Z"), 1_795_615_500);
        for same in [
            "2026-11-25T15:05:00+01:00",
            "2026-11-25T09:05:00-05:00",
            "2026-11-25T19:35:00+05:30",
            "2026-11-25t14:05:00z",
            "  2026-11-25T14:05:00Z\n",
            "2026-11-26T00:05:00+10:00",
            "2026-11-25T15:05:00+01",
        ] {
            assert_eq!(unix(same), 1_795_615_500, "{same}");
        }
        let t = parse_finish_at("2026-11-25T14:05:00.250Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap(),
            Duration::from_millis(1_795_615_500_250)
        );
        // Offsets cross the date line and the year.
        assert_eq!(
            parse_finish_at("2027-01-01T00:30:00+01:00").unwrap(),
            parse_finish_at("2026-12-31T23:30:00Z").unwrap()
        );
        assert_eq!(unix("2024-02-29T12:00:00Z"), 1_709_208_000);
    }

    #[test]
    fn bad_instants() {
        for bad in [
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-25T24:00:00Z",
            "2026-11-25T14:60:00Z",
            "2026-11-25T14:05:00",
            "2026-11-25T14:05:00 +01:00",
            "2026-11-25T14:05Zjunk",
            "2026-11-25",
            "T14:05:00Z",
        ] {
            let e = parse_finish_at(bad).unwrap_err();
            assert!(
                e.contains("RFC 3339") && e.contains(&format!("{bad:?}")),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn clock_times_today() {
        assert!(parse_finish_at("14:05").is_ok());
        assert!(parse_finish_at("23:59:59").is_ok());
        assert!(parse_finish_at("00:00").is_ok());
        // Read back in the local zone, the clock shows what was asked for.
        let t = Timestamp::try_from(parse_finish_at("7:05:09").unwrap()).unwrap();
        let local = t.to_zoned_datetime(TimeZone::system());
        assert_eq!(local.time(), Time::new(7, 5, 9, 0).unwrap());
    }

    #[test]
    fn bad_clock_times() {
        for bad in [
            "24:00",
            "12",
            "12:60",
            "12:00:60",
            "1:2:3:4",
            "",
            "yesterday",
            "12:00pm",
            "+1:00",
            "123:00",
            "12::00",
            "١٢:٠٠",
        ] {
            let e = parse_finish_at(bad).unwrap_err();
            assert!(
                e.contains("HH:MM") && e.contains(&format!("{bad:?}")),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn clock_times_follow_the_local_offset() {
        let winter = now(CET, date(2026, 1, 15).at(9, 0, 0, 0));
        assert_eq!(at("14:05", &winter), "2026-01-15T13:05:00Z");
        let summer = now(CET, date(2026, 7, 15).at(9, 0, 0, 0));
        assert_eq!(at("14:05", &summer), "2026-07-15T12:05:00Z");
        assert_eq!(at("00:00", &summer), "2026-07-14T22:00:00Z");
        let ny = now(EST, date(2026, 7, 15).at(23, 0, 0, 0));
        assert_eq!(at("23:30:15", &ny), "2026-07-16T03:30:15Z");
    }

    #[test]
    fn clock_times_on_dst_days() {
        // Clocks jump from 02:00 to 03:00 on 2026-03-29 in Central Europe.
        let spring = now(CET, date(2026, 3, 29).at(0, 30, 0, 0));
        assert_eq!(at("01:30", &spring), "2026-03-29T00:30:00Z");
        assert_eq!(at("03:30", &spring), "2026-03-29T01:30:00Z");
        // 02:30 does not exist that day: it moves forward by the gap.
        assert_eq!(at("02:30", &spring), "2026-03-29T01:30:00Z");
        assert_eq!(at("23:00", &spring), "2026-03-29T21:00:00Z");
        // Clocks go back from 03:00 to 02:00 on 2026-10-25: 02:30 happens twice, the first
        // (summer time) is meant.
        let autumn = now(CET, date(2026, 10, 25).at(0, 30, 0, 0));
        assert_eq!(at("01:30", &autumn), "2026-10-24T23:30:00Z");
        assert_eq!(at("02:30", &autumn), "2026-10-25T00:30:00Z");
        assert_eq!(at("03:30", &autumn), "2026-10-25T02:30:00Z");
        // The same day in New York (2026-03-08), read late in the evening.
        let ny = now(EST, date(2026, 3, 8).at(22, 0, 0, 0));
        assert_eq!(at("01:00", &ny), "2026-03-08T06:00:00Z");
        assert_eq!(at("12:00", &ny), "2026-03-08T16:00:00Z");
        let before = now(EST, date(2026, 3, 7).at(22, 0, 0, 0));
        assert_eq!(at("12:00", &before), "2026-03-07T17:00:00Z");
    }
}
