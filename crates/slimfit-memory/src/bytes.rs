//! A byte count with human-readable formatting.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A number of bytes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Bytes(pub u64);

impl Bytes {
    /// Zero bytes.
    pub const ZERO: Self = Self(0);

    /// The count as a float, for ratios.
    pub fn as_f64(self) -> f64 {
        self.0 as f64
    }

    /// `self − other`, or zero when `other` is larger.
    pub fn saturating_sub(self, other: Self) -> Self {
        Self(self.0.saturating_sub(other.0))
    }
}

impl Add for Bytes {
    type Output = Self;
    fn add(self, rhs: Self) -> Self {
        Self(self.0 + rhs.0)
    }
}

impl AddAssign for Bytes {
    fn add_assign(&mut self, rhs: Self) {
        self.0 += rhs.0;
    }
}

impl Sub for Bytes {
    type Output = Self;
    fn sub(self, rhs: Self) -> Self {
        Self(self.0 - rhs.0)
    }
}

impl std::iter::Sum for Bytes {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        Self(iter.map(|b| b.0).sum())
    }
}

impl fmt::Display for Bytes {
    /// Binary units: `512 B`, `1.50 KiB`, `2.25 GiB`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut value = self.0 as f64;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        if unit == 0 {
            write!(f, "{} B", self.0)
        } else {
            write!(f, "{value:.2} {}", UNITS[unit])
        }
    }
}

impl FromStr for Bytes {
    type Err = String;

    /// A number with an optional unit: `1048576`, `512MiB`, `12 GiB`, `1.5GB`, `800M`.
    /// Binary units (`KiB`, `MiB`, `GiB`, `TiB`, and the bare `K`/`M`/`G`/`T`) are powers of
    /// 1024; decimal ones (`kB`/`KB`, `MB`, `GB`, `TB`) powers of 1000.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let value: f64 = number
            .parse()
            .map_err(|_| format!("{s:?} is not a byte count (expected e.g. 12GiB or 800MB)"))?;
        let scale: f64 = match unit.trim() {
            "" | "B" => 1.0,
            "K" | "KiB" => 1024.0,
            "M" | "MiB" => 1024.0 * 1024.0,
            "G" | "GiB" => 1024.0 * 1024.0 * 1024.0,
            "T" | "TiB" => 1024.0f64.powi(4),
            "kB" | "KB" => 1e3,
            "MB" => 1e6,
            "GB" => 1e9,
            "TB" => 1e12,
            other => {
                return Err(format!(
                    "unknown byte unit {other:?} in {s:?} (use B, KiB, MiB, GiB, TiB, kB, MB, \
                     GB or TB)"
                ));
            }
        };
        let bytes = value * scale;
        if !bytes.is_finite() || bytes > u64::MAX as f64 {
            return Err(format!("{s:?} is too large"));
        }
        Ok(Self(bytes.round() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_binary_units() {
        assert_eq!(Bytes(512).to_string(), "512 B");
        assert_eq!(Bytes(1536).to_string(), "1.50 KiB");
        assert_eq!(Bytes(3 << 30).to_string(), "3.00 GiB");
    }

    #[test]
    fn parses_units() {
        assert_eq!("1048576".parse::<Bytes>(), Ok(Bytes(1 << 20)));
        assert_eq!("12GiB".parse::<Bytes>(), Ok(Bytes(12 << 30)));
        assert_eq!("12 GiB".parse::<Bytes>(), Ok(Bytes(12 << 30)));
        assert_eq!("1.5G".parse::<Bytes>(), Ok(Bytes(3 << 29)));
        assert_eq!("800MB".parse::<Bytes>(), Ok(Bytes(800_000_000)));
        assert!("12 parsecs".parse::<Bytes>().unwrap_err().contains("unit"));
        assert!("GiB".parse::<Bytes>().unwrap_err().contains("byte count"));
    }

    #[test]
    fn arithmetic() {
        assert_eq!(Bytes(5) + Bytes(3) - Bytes(2), Bytes(6));
        assert_eq!(Bytes(2).saturating_sub(Bytes(5)), Bytes::ZERO);
        assert_eq!([Bytes(1), Bytes(2)].into_iter().sum::<Bytes>(), Bytes(3));
    }
}
