//! Byte sizes written as `64MiB`, `1.5 GB` or `4096`.

/// Units and their multipliers. Binary units (`KiB`) are powers of 1024,
/// decimal ones (`KB`) powers of 1000; matching ignores case.
const UNITS: &[(&str, u64)] = &[
    ("b", 1),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
];

/// Parses a byte size: a non-negative number, optionally with a fraction,
/// followed by an optional unit (`B`, `KB`, `MB`, `GB`, `TB`, `KiB`, `MiB`,
/// `GiB`, `TiB`; case-insensitive; space allowed). The error is a sentence
/// fragment for [`crate::JobErrorKind::InvalidValue`].
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit = unit.trim();
    let bad =
        || format!("must be a size such as `64MiB`, `1GB` or `4096` (bytes); `{text}` is not one");
    if number.is_empty() {
        return Err(bad());
    }
    let multiplier = if unit.is_empty() {
        1
    } else {
        UNITS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(unit))
            .map(|&(_, m)| m)
            .ok_or_else(bad)?
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if fraction.contains('.') || (whole.is_empty() && fraction.is_empty()) {
        return Err(bad());
    }
    let too_large = || format!("is too large: `{text}` does not fit in 64 bits");
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_large())?
    };
    let mut bytes = whole.checked_mul(multiplier).ok_or_else(too_large)?;
    if !fraction.is_empty() {
        // Exact integer arithmetic on the fraction's digits (at most 12 are
        // significant for the largest unit).
        let digits = &fraction[..fraction.len().min(12)];
        let scale = 10u128.pow(digits.len() as u32);
        let part = digits.parse::<u128>().map_err(|_| bad())? * u128::from(multiplier) / scale;
        bytes = bytes
            .checked_add(u64::try_from(part).map_err(|_| too_large())?)
            .ok_or_else(too_large)?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("64 mib"), Ok(64 << 20));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert_eq!(parse_size("0.5 GiB"), Ok(1 << 29));
        assert_eq!(parse_size("10B"), Ok(10));
        assert_eq!(parse_size("2TiB"), Ok(2 << 40));
    }

    #[test]
    fn rejects_nonsense() {
        for text in ["", "MiB", "12 parsecs", "1.2.3MB", "-5MB", ".", "64 M"] {
            assert!(parse_size(text).is_err(), "{text}");
        }
        assert_eq!(
            parse_size("99999999999TiB"),
            Err("is too large: `99999999999TiB` does not fit in 64 bits".into())
        );
    }
}
