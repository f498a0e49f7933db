//! Floats on the wire, written as the guest has always written them.
//!
//! The guest's first, hand-written JSON writer printed floats with Rust's `{}`: integral
//! values without a fraction (`60`, not `60.0`) and non-finite ones as `null`. These
//! functions keep that text, so consoles look the same to the eye and to `grep`, and read
//! `null` back as NaN. Use with `#[serde(with = "num")]` (and `num::opt` for `Option<f64>`).

use serde::{Deserialize, Deserializer, Serializer};

/// Largest magnitude written as an integer (beyond it, `i64` would not hold it).
const MAX_INTEGRAL: f64 = 9.0e18;

/// Writes `v` as an integer when it is one, `null` when it is not finite.
pub(crate) fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if !v.is_finite() {
        s.serialize_none()
    } else if v.fract() == 0.0 && v.abs() < MAX_INTEGRAL {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

/// Reads a number, or `null` as NaN.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// The same for optional fields (absent when `None`; pair with `skip_serializing_if`).
pub(crate) mod opt {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `Some(v)` as [`super::serialize`] does (`None` is skipped by the caller).
    pub(crate) fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => super::serialize(v, s),
            None => s.serialize_none(),
        }
    }

    /// Reads a number as `Some`, `null` as `Some(NaN)` (the field was written).
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Ok(Some(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN)))
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct F(#[serde(with = "super")] f64);

    fn text(v: f64) -> String {
        serde_json::to_string(&F(v)).unwrap()
    }

    #[test]
    fn written_like_rust_display() {
        for v in [
            0.0,
            60.0,
            0.1,
            0.9,
            19.99,
            429.03,
            1.5e-3,
            12345678.25,
            -3.0,
            1e15,
        ] {
            assert_eq!(text(v), format!("{v}"), "{v}");
        }
        assert_eq!(text(f64::NAN), "null");
        assert_eq!(text(f64::INFINITY), "null");
    }

    #[test]
    fn read_back() {
        for v in [0.0, 60.0, 0.1, 19.99, -3.5] {
            assert_eq!(serde_json::from_str::<F>(&text(v)).unwrap().0, v);
        }
        assert!(serde_json::from_str::<F>("null").unwrap().0.is_nan());
        assert_eq!(serde_json::from_str::<F>("60.0").unwrap().0, 60.0);
        assert!(serde_json::from_str::<F>("\"60\"").is_err());
    }
}
