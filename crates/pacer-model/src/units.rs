//! Parsing and formatting of operator quantities: bandwidths, sizes and durations.

use std::fmt;
use std::time::Duration;

use thiserror::Error;

/// Largest accepted bandwidth cap: 1 Tbit/s, in bytes per second.
pub const MAX_BANDWIDTH: u64 = 125_000_000_000;
/// Largest accepted size: 16 TiB, in bytes.
pub const MAX_SIZE: u64 = 16 << 40;
/// Largest accepted duration: 30 days.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

const KIB: f64 = 1024.0;
const MIB: f64 = KIB * 1024.0;
const GIB: f64 = MIB * 1024.0;
const TIB: f64 = GIB * 1024.0;

/// The kind of quantity being parsed; it words error messages and their examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    /// A bandwidth cap (bytes per second).
    Bandwidth,
    /// A size (bytes).
    Size,
    /// A duration.
    Duration,
}

impl Quantity {
    /// Valid example spellings of this quantity, for error messages.
    pub fn examples(self) -> &'static str {
        match self {
            Quantity::Bandwidth => {
                "1gbit, 200mbit, 1.5gbit, 60MB/s, 100MiB/s, or a bare number of MiB/s such as 100"
            }
            Quantity::Size => "512M, 1GiB, 2T, 1.5G, 500MB, or a bare number of bytes such as 4096",
            Quantity::Duration => {
                "300ms, 2s, 1.5s, 5m, 1h, 1m30s, or a bare number of seconds such as 10"
            }
        }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Quantity::Bandwidth => "bandwidth",
            Quantity::Size => "size",
            Quantity::Duration => "duration",
        })
    }
}

/// Why an operator quantity could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UnitError {
    /// The input was empty or blank.
    #[error("empty {quantity}; valid examples: {ex}", ex = .quantity.examples())]
    Empty {
        /// What was being parsed.
        quantity: Quantity,
    },
    /// The input does not start with a (non-negative, decimal) number.
    #[error("invalid {quantity} {input:?}: expected a decimal number followed by a unit; valid examples: {ex}", ex = .quantity.examples())]
    NotANumber {
        /// What was being parsed.
        quantity: Quantity,
        /// The offending input.
        input: String,
    },
    /// The input is negative.
    #[error("invalid {quantity} {input:?}: must not be negative; valid examples: {ex}", ex = .quantity.examples())]
    Negative {
        /// What was being parsed.
        quantity: Quantity,
        /// The offending input.
        input: String,
    },
    /// The unit is not one this quantity accepts.
    #[error("invalid {quantity} {input:?}: unknown unit {unit:?}; valid examples: {ex}", ex = .quantity.examples())]
    UnknownUnit {
        /// What was being parsed.
        quantity: Quantity,
        /// The offending input.
        input: String,
        /// The unit as written.
        unit: String,
    },
    /// The unit could mean bits or bytes.
    #[error("invalid {quantity} {input:?}: unit {unit:?} is ambiguous (bits or bytes?); write e.g. 200mbit for bits/s or 25MB/s for bytes/s")]
    AmbiguousUnit {
        /// What was being parsed.
        quantity: Quantity,
        /// The offending input.
        input: String,
        /// The unit as written.
        unit: String,
    },
    /// A number without unit appeared in a compound duration.
    #[error("invalid {quantity} {input:?}: a number without unit is only allowed on its own; valid examples: {ex}", ex = .quantity.examples())]
    MissingUnit {
        /// What was being parsed.
        quantity: Quantity,
        /// The offending input.
        input: String,
    },
    /// The value is zero where zero is not allowed.
    #[error("invalid {quantity} {input:?}: must be greater than zero; {hint}")]
    Zero {
        /// What was being parsed.
        quantity: Quantity,
        /// The offending input.
        input: String,
        /// What to write instead.
        hint: &'static str,
    },
    /// The value is positive but rounds to zero in the base unit.
    #[error("invalid {quantity} {input:?}: below the smallest value of {min}; valid examples: {ex}", ex = .quantity.examples())]
    TooSmall {
        /// What was being parsed.
        quantity: Quantity,
        /// The offending input.
        input: String,
        /// The smallest accepted value.
        min: &'static str,
    },
    /// The value exceeds the sanity limit.
    #[error("invalid {quantity} {input:?}: larger than the maximum of {max}; valid examples: {ex}", ex = .quantity.examples())]
    TooLarge {
        /// What was being parsed.
        quantity: Quantity,
        /// The offending input.
        input: String,
        /// The largest accepted value.
        max: &'static str,
    },
}

/// Splits `s` (already trimmed, non-empty) into a leading non-negative number and the rest.
fn split_number(s: &str, quantity: Quantity, input: &str) -> Result<(f64, usize), UnitError> {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let digits = &s[..end];
    if digits.is_empty() {
        let err = if s.starts_with('-') {
            UnitError::Negative {
                quantity,
                input: input.to_string(),
            }
        } else {
            UnitError::NotANumber {
                quantity,
                input: input.to_string(),
            }
        };
        return Err(err);
    }
    let value: f64 = digits.parse().map_err(|_| UnitError::NotANumber {
        quantity,
        input: input.to_string(),
    })?;
    Ok((value, end))
}

/// Parses `<number><unit>` with a single unit, returning the number and lower-cased unit.
fn split_single(input: &str, quantity: Quantity) -> Result<(f64, String), UnitError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(UnitError::Empty { quantity });
    }
    let (value, end) = split_number(s, quantity, input)?;
    Ok((value, s[end..].trim().to_ascii_lowercase()))
}

/// Parses a bandwidth cap into bytes per second.
///
/// Bit rates (SI, tc-style): `100bit`, `500kbit`, `200mbit`, `1gbit`, `1tbit` (optionally `/s`).
/// Byte rates: `60MB/s`, `1GB/s` (SI) and `512KiB/s`, `100MiB/s`, `1GiB/s` (binary).
/// A bare number means MiB/s, as `virsh migrate --bandwidth`. Units are case-insensitive.
pub fn parse_bandwidth(input: &str) -> Result<u64, UnitError> {
    let quantity = Quantity::Bandwidth;
    let (value, unit) = split_single(input, quantity)?;
    let base = unit.strip_suffix("/s").unwrap_or(&unit);
    let factor = match base {
        "" => MIB,
        "bit" => 1.0 / 8.0,
        "kbit" => 1e3 / 8.0,
        "mbit" => 1e6 / 8.0,
        "gbit" => 1e9 / 8.0,
        "tbit" => 1e12 / 8.0,
        "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => KIB,
        "mib" => MIB,
        "gib" => GIB,
        "tib" => TIB,
        "bps" | "kbps" | "mbps" | "gbps" | "tbps" => {
            return Err(UnitError::AmbiguousUnit {
                quantity,
                input: input.to_string(),
                unit,
            })
        }
        _ => {
            return Err(UnitError::UnknownUnit {
                quantity,
                input: input.to_string(),
                unit,
            })
        }
    };
    let bytes = value * factor;
    if value == 0.0 {
        return Err(UnitError::Zero {
            quantity,
            input: input.to_string(),
            hint: "use no --bandwidth for unlimited, or a cap such as 100MiB/s or 1gbit",
        });
    }
    if !bytes.is_finite() || bytes > MAX_BANDWIDTH as f64 {
        return Err(UnitError::TooLarge {
            quantity,
            input: input.to_string(),
            max: "1tbit (125GB/s)",
        });
    }
    let rounded = bytes.round();
    if rounded < 1.0 {
        return Err(UnitError::TooSmall {
            quantity,
            input: input.to_string(),
            min: "1 byte/s (8bit)",
        });
    }
    Ok(rounded as u64)
}

/// Parses a size into bytes (zero allowed).
///
/// `K`/`M`/`G`/`T` and `KiB`..`TiB` are binary (QEMU `-m` convention), `KB`..`TB` are SI,
/// `B` or no unit means bytes: `512M`, `1GiB`, `1.5G`, `500MB`, `4096`. Case-insensitive.
pub fn parse_size(input: &str) -> Result<u64, UnitError> {
    let quantity = Quantity::Size;
    let (value, unit) = split_single(input, quantity)?;
    let factor = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => KIB,
        "m" | "mib" => MIB,
        "g" | "gib" => GIB,
        "t" | "tib" => TIB,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        _ => {
            return Err(UnitError::UnknownUnit {
                quantity,
                input: input.to_string(),
                unit,
            })
        }
    };
    let bytes = value * factor;
    if !bytes.is_finite() || bytes > MAX_SIZE as f64 {
        return Err(UnitError::TooLarge {
            quantity,
            input: input.to_string(),
            max: "16TiB",
        });
    }
    Ok(bytes.round() as u64)
}

/// Parses a size like [`parse_size`] but rejects sizes that are (or round to) zero bytes.
pub fn parse_nonzero_size(input: &str) -> Result<u64, UnitError> {
    match parse_size(input)? {
        0 => Err(UnitError::Zero {
            quantity: Quantity::Size,
            input: input.to_string(),
            hint: "expected a positive size such as 512M or 1GiB",
        }),
        n => Ok(n),
    }
}

/// Parses a duration: `300ms`, `2s`, `1.5s`, `5m`, `1h`, `2d`, compounds such as `1m30s`
/// or `2m 05s`; a bare number means seconds. Case-insensitive; at most 30 days.
pub fn parse_duration(input: &str) -> Result<Duration, UnitError> {
    let quantity = Quantity::Duration;
    let s = input.trim();
    if s.is_empty() {
        return Err(UnitError::Empty { quantity });
    }
    let mut rest = s;
    let mut total_ns = 0.0_f64;
    let mut components = 0;
    let mut bare = false;
    while !rest.is_empty() {
        let (value, end) = split_number(rest, quantity, input)?;
        rest = rest[end..].trim_start();
        let unit_end = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = rest[..unit_end].to_ascii_lowercase();
        rest = rest[unit_end..].trim_start();
        let ns_per_unit = match unit.as_str() {
            "" => {
                bare = true;
                1e9
            }
            "ms" => 1e6,
            "s" | "sec" => 1e9,
            "m" | "min" => 60e9,
            "h" => 3600e9,
            "d" => 86400e9,
            _ => {
                return Err(UnitError::UnknownUnit {
                    quantity,
                    input: input.to_string(),
                    unit,
                })
            }
        };
        total_ns += value * ns_per_unit;
        components += 1;
    }
    if bare && components > 1 {
        return Err(UnitError::MissingUnit {
            quantity,
            input: input.to_string(),
        });
    }
    if !total_ns.is_finite() || total_ns > MAX_DURATION.as_nanos() as f64 {
        return Err(UnitError::TooLarge {
            quantity,
            input: input.to_string(),
            max: "30d",
        });
    }
    Ok(Duration::from_nanos(total_ns.round() as u64))
}

const BINARY_UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/// Formats a non-negative amount with binary units and three significant digits.
fn format_binary(value: f64, suffix: &str) -> String {
    if value.round() < 1024.0 {
        return format!("{value:.0} B{suffix}");
    }
    let mut x = value / 1024.0;
    let mut idx = 1;
    // Move up while the rounded figure would read 1024.0 or more.
    while x >= 1023.95 && idx + 1 < BINARY_UNITS.len() {
        x /= 1024.0;
        idx += 1;
    }
    let decimals = if x < 9.995 { 2 } else { 1 };
    format!("{x:.decimals$} {}{suffix}", BINARY_UNITS[idx])
}

/// Formats a byte count with binary units: "830 B", "512.0 MiB", "1.00 GiB".
pub fn format_bytes(bytes: u64) -> String {
    format_binary(bytes as f64, "")
}

/// Formats a rate in bytes per second with binary units: "112.4 MiB/s"; "n/a" if negative or not finite.
pub fn format_rate(bytes_per_s: f64) -> String {
    if !bytes_per_s.is_finite() || bytes_per_s < 0.0 {
        return "n/a".to_string();
    }
    format_binary(bytes_per_s, "/s")
}

/// Formats milliseconds for people: "321 ms", "1.234 s", "2m 05s", "1h 02m 05s".
pub fn format_duration_ms(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms} ms");
    }
    if ms < 60_000 {
        return format!("{}.{:03} s", ms / 1000, ms % 1000);
    }
    let total_s = ms.saturating_add(500) / 1000;
    let (h, m, s) = (total_s / 3600, (total_s / 60) % 60, total_s % 60);
    if h == 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{h}h {m:02}m {s:02}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bandwidth_bits() {
        assert_eq!(parse_bandwidth("1gbit"), Ok(125_000_000));
        assert_eq!(parse_bandwidth("200mbit"), Ok(25_000_000));
        assert_eq!(parse_bandwidth("500kbit"), Ok(62_500));
        assert_eq!(parse_bandwidth("100bit"), Ok(13));
        assert_eq!(parse_bandwidth("1.5GBit"), Ok(187_500_000));
        assert_eq!(parse_bandwidth("1gbit/s"), Ok(125_000_000));
    }

    #[test]
    fn bandwidth_bytes() {
        assert_eq!(parse_bandwidth("60MB/s"), Ok(60_000_000));
        assert_eq!(parse_bandwidth("1GB/s"), Ok(1_000_000_000));
        assert_eq!(parse_bandwidth("500KB/s"), Ok(500_000));
        assert_eq!(parse_bandwidth("100MiB/s"), Ok(100 << 20));
        assert_eq!(parse_bandwidth("1GiB/s"), Ok(1 << 30));
        assert_eq!(parse_bandwidth("512kib/s"), Ok(512 << 10));
        assert_eq!(parse_bandwidth(" 60 MB/s "), Ok(60_000_000));
        assert_eq!(parse_bandwidth("100"), Ok(100 << 20));
        assert_eq!(parse_bandwidth("0.5"), Ok(512 << 10));
    }

    #[test]
    fn bandwidth_errors() {
        let e = parse_bandwidth("0").unwrap_err();
        assert!(matches!(e, UnitError::Zero { .. }));
        assert!(e.to_string().contains("use no --bandwidth for unlimited"));
        assert!(matches!(
            parse_bandwidth("0mbit"),
            Err(UnitError::Zero { .. })
        ));
        assert!(matches!(
            parse_bandwidth("-5mbit"),
            Err(UnitError::Negative { .. })
        ));
        assert!(matches!(parse_bandwidth(""), Err(UnitError::Empty { .. })));
        assert!(matches!(
            parse_bandwidth("  "),
            Err(UnitError::Empty { .. })
        ));
        assert!(matches!(
            parse_bandwidth("nan"),
            Err(UnitError::NotANumber { .. })
        ));
        assert!(matches!(
            parse_bandwidth("inf"),
            Err(UnitError::NotANumber { .. })
        ));
        assert!(matches!(
            parse_bandwidth("1.2.3mbit"),
            Err(UnitError::NotANumber { .. })
        ));
        assert!(matches!(
            parse_bandwidth("."),
            Err(UnitError::NotANumber { .. })
        ));
        assert!(matches!(
            parse_bandwidth("5furlongs"),
            Err(UnitError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_bandwidth("100mbps"),
            Err(UnitError::AmbiguousUnit { .. })
        ));
        assert!(matches!(
            parse_bandwidth("2tbit"),
            Err(UnitError::TooLarge { .. })
        ));
        assert!(matches!(
            parse_bandwidth("1bit"),
            Err(UnitError::TooSmall { .. })
        ));
        assert_eq!(parse_bandwidth("1tbit"), Ok(MAX_BANDWIDTH));
        let msg = parse_bandwidth("5furlongs").unwrap_err().to_string();
        assert!(
            msg.contains("\"5furlongs\"") && msg.contains("1gbit"),
            "{msg}"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1gib"), Ok(1 << 30));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("1 GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("830 B"), Ok(830));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("16TiB"), Ok(MAX_SIZE));
    }

    #[test]
    fn size_errors() {
        assert!(matches!(parse_size("-1G"), Err(UnitError::Negative { .. })));
        assert!(matches!(parse_size("17T"), Err(UnitError::TooLarge { .. })));
        assert!(matches!(
            parse_size("1X"),
            Err(UnitError::UnknownUnit { .. })
        ));
        assert!(matches!(parse_size("G"), Err(UnitError::NotANumber { .. })));
        assert!(matches!(
            parse_nonzero_size("0M"),
            Err(UnitError::Zero { .. })
        ));
        assert_eq!(parse_nonzero_size("1M"), Ok(1 << 20));
        let msg = parse_size("17T").unwrap_err().to_string();
        assert!(msg.contains("16TiB") && msg.contains("512M"), "{msg}");
    }

    #[test]
    fn durations() {
        let ms = |n| Ok(Duration::from_millis(n));
        assert_eq!(parse_duration("300ms"), ms(300));
        assert_eq!(parse_duration("2s"), ms(2000));
        assert_eq!(parse_duration("1.5s"), ms(1500));
        assert_eq!(parse_duration("5m"), ms(300_000));
        assert_eq!(parse_duration("1h"), ms(3_600_000));
        assert_eq!(parse_duration("1m30s"), ms(90_000));
        assert_eq!(parse_duration("2m 05s"), ms(125_000));
        assert_eq!(parse_duration("1.234 s"), ms(1234));
        assert_eq!(parse_duration("10"), ms(10_000));
        assert_eq!(parse_duration("0"), ms(0));
        assert_eq!(parse_duration("30d"), Ok(MAX_DURATION));
    }

    #[test]
    fn duration_errors() {
        assert!(matches!(
            parse_duration("-1s"),
            Err(UnitError::Negative { .. })
        ));
        assert!(matches!(
            parse_duration("1m-3s"),
            Err(UnitError::Negative { .. })
        ));
        assert!(matches!(
            parse_duration("31d"),
            Err(UnitError::TooLarge { .. })
        ));
        assert!(matches!(
            parse_duration("1m30"),
            Err(UnitError::MissingUnit { .. })
        ));
        assert!(matches!(
            parse_duration("5 fortnights"),
            Err(UnitError::UnknownUnit { .. })
        ));
        assert!(matches!(parse_duration(""), Err(UnitError::Empty { .. })));
    }

    #[test]
    fn formatting() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(830), "830 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1024), "1.00 KiB");
        assert_eq!(format_bytes(512 << 20), "512.0 MiB");
        assert_eq!(format_bytes(1 << 30), "1.00 GiB");
        assert_eq!(format_bytes((1 << 30) - 1), "1.00 GiB");
        assert_eq!(format_bytes(u64::MAX), "16.0 EiB");
        assert_eq!(format_rate(112.4 * MIB), "112.4 MiB/s");
        assert_eq!(format_rate(0.0), "0 B/s");
        assert_eq!(format_rate(f64::NAN), "n/a");
        assert_eq!(format_rate(-1.0), "n/a");
        assert_eq!(format_duration_ms(321), "321 ms");
        assert_eq!(format_duration_ms(1234), "1.234 s");
        assert_eq!(format_duration_ms(59_999), "59.999 s");
        assert_eq!(format_duration_ms(125_000), "2m 05s");
        assert_eq!(format_duration_ms(3_599_600), "1h 00m 00s");
        assert_eq!(format_duration_ms(3_725_000), "1h 02m 05s");
    }

    proptest! {
        #[test]
        fn size_round_trips(n in 0..=MAX_SIZE) {
            let text = format_bytes(n);
            let back = parse_size(&text).unwrap();
            let err = (back as f64 - n as f64).abs();
            prop_assert!(err <= n as f64 * 0.005 + 0.5, "{n} -> {text} -> {back}");
        }

        #[test]
        fn rate_round_trips(n in 1..=MAX_BANDWIDTH) {
            let text = format_rate(n as f64);
            let back = parse_bandwidth(&text).unwrap();
            let err = (back as f64 - n as f64).abs();
            prop_assert!(err <= n as f64 * 0.005 + 0.5, "{n} -> {text} -> {back}");
        }

        #[test]
        fn duration_round_trips(ms in 0..=MAX_DURATION.as_millis() as u64) {
            let text = format_duration_ms(ms);
            let back = parse_duration(&text).unwrap().as_millis() as u64;
            prop_assert!(back.abs_diff(ms) <= 500, "{ms} -> {text} -> {back}");
            if ms < 60_000 {
                prop_assert_eq!(back, ms);
            }
        }

        #[test]
        fn parsers_never_panic(s in ".*") {
            let _ = parse_bandwidth(&s);
            let _ = parse_size(&s);
            let _ = parse_nonzero_size(&s);
            let _ = parse_duration(&s);
        }

        #[test]
        fn parsers_never_panic_on_plausible_input(s in "[-0-9. ]{0,30}[a-zA-Z/ ]{0,6}[0-9.]{0,4}[a-zA-Z]{0,3}") {
            let _ = parse_bandwidth(&s);
            let _ = parse_size(&s);
            let _ = parse_duration(&s);
        }
    }
}
