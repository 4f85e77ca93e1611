//! Bit rates as people write them in settings and flags: `300kbit`,
//! `3mbit`, `10gbit`.

use serde::{Deserialize, Serialize};

/// A bit rate in bits per second, read from and written as text like
/// `3mbit` (see [`parse_bitrate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Bitrate(pub u64);

impl TryFrom<String> for Bitrate {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        parse_bitrate(&text).map(Bitrate)
    }
}

impl From<Bitrate> for String {
    fn from(bitrate: Bitrate) -> Self {
        format_bitrate(bitrate.0)
    }
}

/// A bit rate in bits per second, parsed from `300kbit`, `3mbit`, `1.5Mbit`,
/// `2gbit`, `800000` (plain bits per second) or the `kbps`/`mbps` spellings.
pub fn parse_bitrate(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("bit rate {text:?} must be a number with a unit, e.g. 3mbit"))?;
    let multiplier = match unit.trim() {
        "" | "bit" | "bps" | "b" => 1.0,
        "k" | "kbit" | "kbps" | "kb" => 1e3,
        "m" | "mbit" | "mbps" | "mb" => 1e6,
        "g" | "gbit" | "gbps" | "gb" => 1e9,
        other => {
            return Err(format!(
                "bit rate {text:?} has unknown unit {other:?}; use bit, kbit, mbit or gbit"
            ));
        }
    };
    let bits = value * multiplier;
    if !bits.is_finite() || bits < 1.0 {
        return Err(format!("bit rate {text:?} must be at least 1 bit/s"));
    }
    Ok(bits.round() as u64)
}

/// Formats a bit rate the way [`parse_bitrate`] reads it back.
pub fn format_bitrate(bits_per_second: u64) -> String {
    let bits = bits_per_second as f64;
    if bits >= 1e9 {
        format!("{}gbit", trim_float(bits / 1e9))
    } else if bits >= 1e6 {
        format!("{}mbit", trim_float(bits / 1e6))
    } else if bits >= 1e3 {
        format!("{}kbit", trim_float(bits / 1e3))
    } else {
        format!("{bits_per_second}bit")
    }
}

fn trim_float(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates_with_units() {
        assert_eq!(parse_bitrate("3mbit"), Ok(3_000_000));
        assert_eq!(parse_bitrate("300kbit"), Ok(300_000));
        assert_eq!(parse_bitrate("1.5Mbit"), Ok(1_500_000));
        assert_eq!(parse_bitrate("10gbit"), Ok(10_000_000_000));
        assert_eq!(parse_bitrate("800000"), Ok(800_000));
        assert!(
            parse_bitrate("3furlongs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_bitrate("fast").unwrap_err().contains("number"));
        assert!(parse_bitrate("0mbit").unwrap_err().contains("at least"));
    }

    #[test]
    fn formats_what_it_parses() {
        for text in ["300kbit", "3mbit", "1.5mbit", "10gbit", "800bit"] {
            assert_eq!(format_bitrate(parse_bitrate(text).unwrap()), text);
        }
    }
}
