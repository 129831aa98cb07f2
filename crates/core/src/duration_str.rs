//! Durations as human strings ("200ms", "1.5s") in scenario and config
//! files: `#[serde(with = "agora_core::duration_str")]`.

use serde::{Deserialize, Deserializer, Serializer};
use std::time::Duration;

pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse(&s).map_err(serde::de::Error::custom)
}

/// Formats as the shortest exact unit: "1500ms", "2s", "250us".
pub fn format(d: Duration) -> String {
    let ns = d.as_nanos();
    for (unit, per) in [("s", 1_000_000_000u128), ("ms", 1_000_000), ("us", 1_000)] {
        if ns.is_multiple_of(per) && ns > 0 {
            return format!("{}{unit}", ns / per);
        }
    }
    format!("{ns}ns")
}

/// Parses `<number><unit>` with unit ns, us, ms, s, m or h.
pub fn parse(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| c.is_ascii_alphabetic())
        .ok_or_else(|| format!("duration {s:?} has no unit (ns, us, ms, s, m, h)"))?;
    let (num, unit) = t.split_at(split);
    if num.trim().is_empty() {
        return Err(format!("duration {s:?} must start with a number"));
    }
    let value: f64 = num.trim().parse().map_err(|_| format!("duration {s:?}: {num:?} is not a number"))?;
    let scale = match unit {
        "ns" => 1e-9,
        "us" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("duration {s:?}: unknown unit {unit:?} (ns, us, ms, s, m, h)")),
    };
    let secs = value * scale;
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("duration {s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        assert_eq!(parse("200ms").unwrap(), Duration::from_millis(200));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse(" 3 us").unwrap(), Duration::from_micros(3));
        assert_eq!(format(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format(Duration::from_secs(2)), "2s");
        assert!(parse("12").unwrap_err().contains("no unit"));
        assert!(parse("5 parsecs").unwrap_err().contains("unknown unit"));
        assert!(parse("-1s").is_err());
        assert!(parse("abcs").is_err());
    }
}
