//! Kubernetes `resource.Quantity`: parsing, comparison by value and the API server's canonical form.
//!
//! A quantity is held as an exact count of nano-units (10⁻⁹), the finest scale Kubernetes keeps;
//! finer inputs are rounded away from zero as the API server does (`.000000000001Ki` is `2n`).
//! Two quantities are equal when their values are equal, whatever their spelling:
//!
//! ```
//! use drift_core::Quantity;
//! let q = |s: &str| s.parse::<Quantity>().unwrap();
//! assert_eq!(q("0.5"), q("500m"));
//! assert_eq!(q("1Gi"), q("1024Mi"));
//! assert_eq!(q("1024Mi").to_string(), "1Gi");
//! assert_eq!(q("1.5").to_string(), "1500m");
//! ```

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

/// The suffix family a quantity was written in; the canonical form keeps the family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantityFormat {
    /// Powers of 1024: `Ki`, `Mi`, `Gi`, `Ti`, `Pi`, `Ei`.
    BinarySi,
    /// Powers of 1000: `n`, `u`, `m`, none, `k`, `M`, `G`, `T`, `P`, `E`.
    DecimalSi,
    /// A decimal exponent: `1e3`, `5E-3`.
    DecimalExponent,
}

/// A parsed quantity. Equality and ordering compare values.
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    nanos: i128,
    format: QuantityFormat,
}

/// Why a string is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuantityError {
    /// The text does not follow the quantity grammar.
    #[error("`{0}` is not a quantity")]
    Syntax(String),
    /// The value does not fit.
    #[error("`{0}` is out of range")]
    Range(String),
}

impl Quantity {
    /// Builds a quantity from a mantissa and a power-of-ten exponent in a given format.
    pub fn from_parts(mantissa: i128, exp10: i32, format: QuantityFormat) -> Option<Self> {
        scale_to_nanos(mantissa, exp10, 0).map(|nanos| Quantity { nanos, format })
    }

    /// Parses a JSON value: a string in quantity syntax, or a number (`1` means `"1"`).
    pub fn from_json(v: &Value) -> Option<Self> {
        match v {
            Value::String(s) => s.parse().ok(),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Quantity::from_parts(i128::from(i), 0, QuantityFormat::DecimalSi)
                } else if let Some(u) = n.as_u64() {
                    Quantity::from_parts(i128::from(u), 0, QuantityFormat::DecimalSi)
                } else {
                    n.to_string().parse().ok()
                }
            }
            _ => None,
        }
    }

    /// The value in nano-units.
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    /// The value as a float (for cost arithmetic, not for comparison).
    pub fn as_f64(&self) -> f64 {
        self.nanos as f64 / 1e9
    }

    /// The suffix family.
    pub fn format(&self) -> QuantityFormat {
        self.format
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}
impl Eq for Quantity {}
impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

/// Converts `mantissa × 10^exp10 × 1024^bin` into nanos, rounding away from zero below 10⁻⁹.
fn scale_to_nanos(mantissa: i128, exp10: i32, bin: u32) -> Option<i128> {
    let mut v = mantissa.checked_mul(1024i128.checked_pow(bin)?)?;
    let k = exp10.checked_add(9)?;
    if k >= 0 {
        let k = u32::try_from(k).ok()?;
        if v == 0 {
            return Some(0);
        }
        v = v.checked_mul(10i128.checked_pow(k)?)?;
        Some(v)
    } else {
        let k = u32::try_from(-k).ok()?;
        let Some(div) = 10i128.checked_pow(k) else {
            // Smaller than any representable nano: rounds away from zero to one nano.
            return Some(v.signum());
        };
        let q = v / div;
        let r = v % div;
        Some(if r == 0 { q } else { q + v.signum() })
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || QuantityError::Syntax(s.to_string());
        let bytes = s.as_bytes();
        let mut i = 0;
        let mut negative = false;
        if let Some(&c) = bytes.first()
            && (c == b'+' || c == b'-')
        {
            negative = c == b'-';
            i = 1;
        }
        let mut mantissa: i128 = 0;
        let mut frac = 0i32;
        let mut seen_dot = false;
        let mut any_digit = false;
        while i < bytes.len() {
            let c = bytes[i];
            if c.is_ascii_digit() {
                any_digit = true;
                mantissa = mantissa
                    .checked_mul(10)
                    .and_then(|m| m.checked_add(i128::from(c - b'0')))
                    .ok_or_else(|| QuantityError::Range(s.to_string()))?;
                if seen_dot {
                    frac += 1;
                }
            } else if c == b'.' && !seen_dot {
                seen_dot = true;
            } else {
                break;
            }
            i += 1;
        }
        if !any_digit {
            return Err(err());
        }
        if negative {
            mantissa = -mantissa;
        }
        let suffix = &s[i..];
        let (format, exp10, bin) = match suffix {
            "" => (QuantityFormat::DecimalSi, 0, 0),
            "n" => (QuantityFormat::DecimalSi, -9, 0),
            "u" => (QuantityFormat::DecimalSi, -6, 0),
            "m" => (QuantityFormat::DecimalSi, -3, 0),
            "k" => (QuantityFormat::DecimalSi, 3, 0),
            "M" => (QuantityFormat::DecimalSi, 6, 0),
            "G" => (QuantityFormat::DecimalSi, 9, 0),
            "T" => (QuantityFormat::DecimalSi, 12, 0),
            "P" => (QuantityFormat::DecimalSi, 15, 0),
            "E" => (QuantityFormat::DecimalSi, 18, 0),
            "Ki" => (QuantityFormat::BinarySi, 0, 1),
            "Mi" => (QuantityFormat::BinarySi, 0, 2),
            "Gi" => (QuantityFormat::BinarySi, 0, 3),
            "Ti" => (QuantityFormat::BinarySi, 0, 4),
            "Pi" => (QuantityFormat::BinarySi, 0, 5),
            "Ei" => (QuantityFormat::BinarySi, 0, 6),
            _ => {
                let rest = suffix
                    .strip_prefix('e')
                    .or_else(|| suffix.strip_prefix('E'))
                    .ok_or_else(err)?;
                let body = rest.strip_prefix(['+', '-']).unwrap_or(rest);
                if body.is_empty() || body.len() > 4 || !body.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err());
                }
                let e: i32 = rest.parse().map_err(|_| err())?;
                (QuantityFormat::DecimalExponent, e, 0)
            }
        };
        let nanos =
            scale_to_nanos(mantissa, exp10 - frac, bin).ok_or_else(|| QuantityError::Range(s.to_string()))?;
        Ok(Quantity { nanos, format })
    }
}

const DECIMAL_SUFFIXES: [(i32, &str); 10] = [
    (18, "E"),
    (15, "P"),
    (12, "T"),
    (9, "G"),
    (6, "M"),
    (3, "k"),
    (0, ""),
    (-3, "m"),
    (-6, "u"),
    (-9, "n"),
];
const BINARY_SUFFIXES: [(u32, &str); 7] = [
    (6, "Ei"),
    (5, "Pi"),
    (4, "Ti"),
    (3, "Gi"),
    (2, "Mi"),
    (1, "Ki"),
    (0, ""),
];

impl fmt::Display for Quantity {
    /// The API server's canonical form: no fractional digits, the largest exponent that keeps the
    /// mantissa an integer, and the suffix family the value was written in.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.nanos;
        if v == 0 {
            return f.write_str("0");
        }
        const NANO: i128 = 1_000_000_000;
        if self.format == QuantityFormat::BinarySi && v % NANO == 0 && (v / NANO).abs() >= 1024 {
            let whole = v / NANO;
            for (b, suffix) in BINARY_SUFFIXES {
                let unit = 1024i128.pow(b);
                if whole % unit == 0 {
                    return write!(f, "{}{}", whole / unit, suffix);
                }
            }
        }
        for (e, suffix) in DECIMAL_SUFFIXES {
            let unit = 10i128.pow(u32::try_from(e + 9).unwrap_or(0));
            if v % unit == 0 {
                let m = v / unit;
                return if self.format == QuantityFormat::DecimalExponent {
                    if e == 0 {
                        write!(f, "{m}")
                    } else {
                        write!(f, "{m}e{e}")
                    }
                } else {
                    write!(f, "{m}{suffix}")
                };
            }
        }
        write!(f, "{v}n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(s: &str) -> Quantity {
        s.parse().unwrap()
    }

    #[test]
    fn equivalences_from_the_architecture() {
        assert_eq!(q("0.5"), q("500m"));
        assert_eq!(q("1Gi"), q("1024Mi"));
        assert_eq!(Quantity::from_json(&json!(1)), Some(q("1")));
        assert_eq!(Quantity::from_json(&json!("1")), Some(q("1000m")));
        assert_eq!(Quantity::from_json(&json!(0.1)), Some(q("100m")));
        assert_eq!(q("3Gi"), q("3072Mi"));
        assert_ne!(q("524288000"), q("500M"));
        assert_eq!(q("524288000"), q("500Mi"));
    }

    #[test]
    fn canonical_forms() {
        for (input, canon) in [
            ("1000m", "1"),
            ("0.1", "100m"),
            ("2000m", "2"),
            ("1.25G", "1250M"),
            ("307200Ki", "300Mi"),
            (".001Ki", "1024m"),
            (".000000000001Ki", "2n"),
            ("0.0001", "100u"),
            ("-1.5", "-1500m"),
            ("1e3", "1e3"),
            ("1E", "1E"),
            ("12e-1", "1200e-3"),
        ] {
            assert_eq!(q(input).to_string(), canon, "{input}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "", "abc", "1.2.3", "1Zi", "Gi", "1e", "1e+", "--1", "1 Gi", "1e99999",
        ] {
            assert!(s.parse::<Quantity>().is_err(), "{s}");
        }
        assert!(matches!(
            "1".repeat(60).parse::<Quantity>(),
            Err(QuantityError::Range(_))
        ));
        assert!(matches!(
            "9999999999999999999999Ei".parse::<Quantity>(),
            Err(QuantityError::Range(_))
        ));
    }

    #[test]
    fn tiny_exponents_round_to_one_nano() {
        assert_eq!(q("1e-30").nanos(), 1);
        assert_eq!(q("-1e-30").nanos(), -1);
        assert_eq!(q("0e-30").nanos(), 0);
    }
}
