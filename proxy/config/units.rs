//! Typed units of the config file: durations (`"250ms"`), sizes (`"64KiB"`)
//! and rates (`"100/min"`). Each parses from a string and prints back the
//! same way, so `/config` shows what the operator wrote.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer};
use serde::{Serialize, Serializer};

/// A parse failure of one unit value, phrased for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnitError(String);

/// A duration written as a number and a unit: `ms`, `s`, `m`, `h` or `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

/// A byte size: a plain number of bytes or a number with `B`, `KiB`, `MiB`,
/// `GiB` (binary) or `KB`, `MB`, `GB` (decimal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Size(pub u64);

/// A rate of events: `N/s`, `N/sec`, `N/min`, `N/m`, `N/h`, `N/hour`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub count: u64,
    pub per: std::time::Duration,
}

const DURATION_UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

const SIZE_UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
];

/// Splits `"250ms"` into `(250, "ms")`. The number is an unsigned integer.
fn split_number(s: &str) -> Option<(u64, &str)> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let number = s[..digits].parse().ok()?;
    Some((number, s[digits..].trim_start()))
}

impl FromStr for Duration {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, UnitError> {
        let bad = || {
            UnitError(format!(
                "invalid duration {s:?}: expected a whole number and a unit (ms, s, m, h, d), e.g. \"250ms\" or \"2s\""
            ))
        };
        let (n, unit) = split_number(s.trim()).ok_or_else(bad)?;
        let millis_per = DURATION_UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, m)| *m)
            .ok_or_else(bad)?;
        let millis = n
            .checked_mul(millis_per)
            .ok_or_else(|| UnitError(format!("duration {s:?} is too large")))?;
        Ok(Duration(std::time::Duration::from_millis(millis)))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        let (n, unit) = DURATION_UNITS
            .iter()
            .rev()
            .find(|(_, per)| millis.is_multiple_of(u128::from(*per)) && millis >= u128::from(*per))
            .map(|(unit, per)| (millis / u128::from(*per), *unit))
            .unwrap_or((millis, "ms"));
        write!(f, "{n}{unit}")
    }
}

impl FromStr for Size {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, UnitError> {
        let bad = || {
            UnitError(format!(
                "invalid size {s:?}: expected a whole number and a unit (B, KiB, MiB, GiB, KB, MB, GB), e.g. \"64KiB\""
            ))
        };
        let (n, unit) = split_number(s.trim()).ok_or_else(bad)?;
        let per = if unit.is_empty() {
            1
        } else {
            SIZE_UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, per)| *per)
                .ok_or_else(bad)?
        };
        n.checked_mul(per)
            .map(Size)
            .ok_or_else(|| UnitError(format!("size {s:?} is too large")))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (n, unit) = [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)]
            .iter()
            .find(|(_, per)| self.0 >= *per && self.0.is_multiple_of(*per))
            .map(|(unit, per)| (self.0 / per, *unit))
            .unwrap_or((self.0, "B"));
        write!(f, "{n}{unit}")
    }
}

impl FromStr for Rate {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, UnitError> {
        let bad = || {
            UnitError(format!(
                "invalid rate {s:?}: expected COUNT/UNIT with unit s, min or h, e.g. \"100/min\""
            ))
        };
        let (count, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u64 = count.trim().parse().map_err(|_| bad())?;
        let secs = match unit.trim() {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hour" => 3_600,
            _ => return Err(bad()),
        };
        if count == 0 {
            return Err(UnitError(format!(
                "rate {s:?} allows nothing: the count must be at least 1"
            )));
        }
        Ok(Rate {
            count,
            per: std::time::Duration::from_secs(secs),
        })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "min",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// Deserializes any of the unit types from a string (numbers are accepted
/// for sizes, meaning bytes).
macro_rules! string_unit_serde {
    ($ty:ty, $expecting:literal, $accept_int:expr) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl de::Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, s: &str) -> Result<$ty, E> {
                        s.parse().map_err(E::custom)
                    }
                    fn visit_u64<E: de::Error>(self, n: u64) -> Result<$ty, E> {
                        if $accept_int {
                            n.to_string().parse().map_err(E::custom)
                        } else {
                            Err(E::invalid_type(de::Unexpected::Unsigned(n), &self))
                        }
                    }
                    fn visit_i64<E: de::Error>(self, n: i64) -> Result<$ty, E> {
                        match u64::try_from(n) {
                            Ok(n) => self.visit_u64(n),
                            Err(_) => Err(E::invalid_value(de::Unexpected::Signed(n), &self)),
                        }
                    }
                }
                d.deserialize_any(V)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}

string_unit_serde!(
    Duration,
    "a duration string such as \"250ms\", \"2s\" or \"15m\"",
    false
);
string_unit_serde!(Size, "a size such as \"64KiB\" or \"100MiB\"", true);
string_unit_serde!(Rate, "a rate such as \"100/min\"", false);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations() {
        let ms = |s: &str| s.parse::<Duration>().map(|d| d.0.as_millis());
        assert_eq!(ms("250ms"), Ok(250));
        assert_eq!(ms("2s"), Ok(2_000));
        assert_eq!(ms("15m"), Ok(900_000));
        assert_eq!(ms("1h"), Ok(3_600_000));
        assert_eq!(ms("1d"), Ok(86_400_000));
        for bad in ["", "s", "2", "2x", "-1s", "1.5s", "2 seconds", "ms250"] {
            assert!(bad.parse::<Duration>().is_err(), "{bad:?} parsed");
        }
        assert!("99999999999999999999d".parse::<Duration>().is_err());
    }

    #[test]
    fn sizes() {
        let b = |s: &str| s.parse::<Size>().map(|s| s.0);
        assert_eq!(b("64KiB"), Ok(65_536));
        assert_eq!(b("100MiB"), Ok(104_857_600));
        assert_eq!(b("1KB"), Ok(1_000));
        assert_eq!(b("512"), Ok(512));
        assert_eq!(b("3B"), Ok(3));
        for bad in ["", "KiB", "1kib", "1.5MiB", "-1", "1 TiB", "99999999999GiB"] {
            assert!(bad.parse::<Size>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn rates() {
        let r: Rate = "100/min".parse().unwrap();
        assert_eq!((r.count, r.per.as_secs()), (100, 60));
        assert_eq!("5/s".parse::<Rate>().unwrap().per.as_secs(), 1);
        for bad in ["100", "/min", "0/s", "10/day", "x/s"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad:?} parsed");
        }
    }

    proptest! {
        #[test]
        fn duration_round_trips(millis in 0u64..10_000_000_000) {
            let d = Duration(std::time::Duration::from_millis(millis));
            prop_assert_eq!(d.to_string().parse::<Duration>(), Ok(d));
        }

        #[test]
        fn size_round_trips(bytes in 0u64..u64::MAX / 2) {
            let s = Size(bytes);
            prop_assert_eq!(s.to_string().parse::<Size>(), Ok(s));
        }

        #[test]
        fn duration_parser_never_panics(s in "\\PC{0,12}") {
            let _ = s.parse::<Duration>();
            let _ = s.parse::<Size>();
            let _ = s.parse::<Rate>();
        }
    }
}
