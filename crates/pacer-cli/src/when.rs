//! Parsing `--finish-at`: a wall-clock time today (local) or an RFC 3339 instant.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `HH:MM[:SS]` today in local time, or RFC 3339 (`2026-11-25T14:05:00Z`, `...+01:00`).
pub fn parse_finish_at(s: &str) -> Result<SystemTime, String> {
    let s = s.trim();
    if s.contains('T') {
        return parse_rfc3339(s);
    }
    let parts: Vec<&str> = s.split(':').collect();
    let nums: Option<Vec<u32>> = parts.iter().map(|p| p.parse().ok()).collect();
    let bad = || format!("bad time {s:?}: give HH:MM, HH:MM:SS or RFC 3339 like 2026-11-25T14:05:00Z");
    let nums = nums.ok_or_else(bad)?;
    let (h, m, sec) = match nums[..] {
        [h, m] => (h, m, 0),
        [h, m, sec] => (h, m, sec),
        _ => return Err(bad()),
    };
    if h > 23 || m > 59 || sec > 59 {
        return Err(bad());
    }
    // Today's date in local time, with the given clock time.
    let now = unsafe { libc::time(std::ptr::null_mut()) };
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::localtime_r(&now, &mut tm) };
    tm.tm_hour = h as i32;
    tm.tm_min = m as i32;
    tm.tm_sec = sec as i32;
    tm.tm_isdst = -1;
    let t = unsafe { libc::mktime(&mut tm) };
    if t < 0 {
        return Err(bad());
    }
    Ok(UNIX_EPOCH + Duration::from_secs(t as u64))
}

fn parse_rfc3339(s: &str) -> Result<SystemTime, String> {
    let bad = || format!("bad RFC 3339 time {s:?}: e.g. 2026-11-25T14:05:00Z or 2026-11-25T15:05:00+01:00");
    let (date, rest) = s.split_once('T').ok_or_else(bad)?;
    let d: Vec<i64> = date.split('-').map(|x| x.parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
    let [y, mo, day] = d[..] else { return Err(bad()) };
    let (clock, offset_s) = if let Some(c) = rest.strip_suffix('Z').or_else(|| rest.strip_suffix('z')) {
        (c, 0i64)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let (c, off) = rest.split_at(i);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let hm: Vec<i64> = off[1..].split(':').map(|x| x.parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
        let [oh, om] = hm[..] else { return Err(bad()) };
        (c, sign * (oh * 3600 + om * 60))
    } else {
        return Err(bad());
    };
    let c: Vec<f64> = clock.split(':').map(|x| x.parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
    let [h, mi, sec] = c[..] else { return Err(bad()) };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&day) || h >= 24.0 || mi >= 60.0 || sec >= 61.0 {
        return Err(bad());
    }
    // Days from the civil date (proleptic Gregorian), Howard Hinnant's method.
    let (yy, mm) = if mo <= 2 { (y - 1, mo + 9) } else { (y, mo - 3) };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * mm + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days as f64 * 86_400.0 + h * 3600.0 + mi * 60.0 + sec - offset_s as f64;
    if secs < 0.0 {
        return Err(bad());
    }
    Ok(UNIX_EPOCH + Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_instants() {
        let t = parse_rfc3339("2026-11-25T14:05:00Z").unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().as_secs(), 1_795_615_500);
        let t2 = parse_finish_at("2026-11-25T15:05:00+01:00").unwrap();
        assert_eq!(t, t2);
        assert!(parse_finish_at("2026-13-01T00:00:00Z").is_err());
        assert!(parse_finish_at("yesterday").is_err());
    }

    #[test]
    fn clock_times_today() {
        assert!(parse_finish_at("14:05").is_ok());
        assert!(parse_finish_at("23:59:59").is_ok());
        assert!(parse_finish_at("24:00").is_err());
        assert!(parse_finish_at("12").is_err());
    }
}
