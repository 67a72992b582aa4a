//! `NUMERIC(15,2)` <-> [`Volume`], exactly: through hundredths, never through floats.

use bigdecimal::BigDecimal;
use bigdecimal::num_bigint::BigInt;
use markets_domain::ValidationError;
use markets_domain::market::Volume;

/// The numeric value of `volume`.
pub(crate) fn to_numeric(volume: Volume) -> BigDecimal {
    BigDecimal::new(BigInt::from(volume.cents()), 2)
}

/// The volume held in a `NUMERIC(15,2)` column.
pub(crate) fn from_numeric(numeric: &BigDecimal) -> Result<Volume, ValidationError> {
    let (hundredths, _) = numeric.with_scale(2).into_bigint_and_exponent();
    let cents = i64::try_from(hundredths)
        .map_err(|_| ValidationError::new("volume", "stored volume is out of range"))?;
    Volume::from_cents(cents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn round_trips_exactly() {
        for raw in ["0", "0.01", "12.30", "9999999999999.99"] {
            let numeric = BigDecimal::from_str(raw).unwrap();
            let volume = from_numeric(&numeric).unwrap();
            assert_eq!(to_numeric(volume), numeric.with_scale(2), "{raw}");
        }
    }
}
