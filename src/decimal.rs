//! Exact decimals: amounts, weights and fractions as integer millionths (SPEC §2.1: at most
//! six fractional digits), so that sums and comparisons never round.

/// Amount in millionths of a unit (the SPEC allows at most six fractional digits), so sums are exact.
pub type Micros = i64;

/// Micro-units per unit.
pub const MICROS_PER_UNIT: i64 = 1_000_000;

/// Amounts (and weight magnitudes) must be strictly below this many units: 10^12, so a single
/// value fits `i64` micro-units with room to spare and sums of many stay exact.
pub(crate) const MAX_UNITS_EXCLUSIVE: u64 = 1_000_000_000_000;

/// Maximum number of fractional digits of an amount or weight.
pub(crate) const MAX_FRACTION_DIGITS: u32 = 6;

/// Why a value is not a valid amount (or weight).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("empty value")]
    Empty,
    #[error("whitespace is not allowed")]
    Whitespace,
    #[error("a sign is not allowed")]
    Sign,
    #[error("only a single leading '-' is allowed")]
    WeightSign,
    #[error("an exponent is not allowed")]
    Exponent,
    #[error("NaN is not a number")]
    NotANumber,
    #[error("infinity is not allowed")]
    Infinite,
    #[error("more than one decimal point")]
    MultiplePoints,
    #[error("no digits")]
    NoDigits,
    #[error("more than six fractional digits")]
    TooManyFractionDigits,
    #[error("out of range (must be below 10^12)")]
    OutOfRange,
    #[error("unexpected character {0:?}")]
    UnexpectedChar(char),
    #[error("not valid UTF-8")]
    InvalidUtf8,
}

/// Parses an unsigned decimal amount into micro-units.
///
/// Grammar (SPEC §2.1, "digits with an optional point and at most six fractional digits"):
/// `digits [ "." [digits] ]` or `"." digits`, i.e. ASCII digits with at most one decimal
/// point and at least one digit overall. So `4.55`, `12`, `0.5`, `007` are accepted, and, as
/// unambiguous decimals, so are `12.` (= 12) and `.5` (= 0.5); `.` alone is not. At most six
/// digits may follow the point, trailing zeros included (`1.0000000` is rejected). Leading
/// zeros are allowed. The value must be below 10^12 ([`MAX_UNITS_EXCLUSIVE`]).
///
/// Rejected: an empty value, a sign (`+`/`-`), an exponent (`1e5`), `NaN`, `inf`/`infinity`
/// (any case, any sign), whitespace anywhere, any other character, invalid UTF-8.
pub(crate) fn parse_amount(text: &[u8]) -> Result<Micros, AmountError> {
    if text.is_empty() {
        return Err(AmountError::Empty);
    }
    if text.iter().any(u8::is_ascii_whitespace) {
        return Err(AmountError::Whitespace);
    }
    let unsigned = match text[0] {
        b'+' | b'-' => &text[1..],
        _ => text,
    };
    if unsigned.eq_ignore_ascii_case(b"nan") {
        return Err(AmountError::NotANumber);
    }
    if unsigned.eq_ignore_ascii_case(b"inf") || unsigned.eq_ignore_ascii_case(b"infinity") {
        return Err(AmountError::Infinite);
    }
    if unsigned.len() != text.len() {
        return Err(AmountError::Sign);
    }

    let mut int: u64 = 0;
    let mut int_digits: u32 = 0;
    let mut frac: u64 = 0;
    let mut frac_digits: u32 = 0;
    let mut seen_point = false;
    for (i, &b) in text.iter().enumerate() {
        match b {
            b'0'..=b'9' => {
                let d = u64::from(b - b'0');
                if seen_point {
                    frac_digits += 1;
                    if frac_digits <= MAX_FRACTION_DIGITS {
                        frac = frac * 10 + d;
                    }
                } else {
                    int_digits = int_digits.saturating_add(1);
                    int = int.saturating_mul(10).saturating_add(d);
                }
            }
            b'.' if seen_point => return Err(AmountError::MultiplePoints),
            b'.' => seen_point = true,
            b'e' | b'E' if int_digits + frac_digits > 0 => return Err(AmountError::Exponent),
            _ => return Err(unexpected_char(text, i)),
        }
    }
    if int_digits == 0 && frac_digits == 0 {
        return Err(AmountError::NoDigits);
    }
    if frac_digits > MAX_FRACTION_DIGITS {
        return Err(AmountError::TooManyFractionDigits);
    }
    if int >= MAX_UNITS_EXCLUSIVE {
        return Err(AmountError::OutOfRange);
    }
    let scale = 10u64.pow(MAX_FRACTION_DIGITS - frac_digits);
    // int < 10^12 and frac * scale < 10^6, so this is below 10^18 < i64::MAX.
    Ok((int * MICROS_PER_UNIT as u64 + frac * scale) as i64)
}

/// Parses an importance weight into micro-units: an optional single leading `-`, then the
/// [`parse_amount`] grammar (so `-0.5`, `-.5` and `-0` are accepted; `+1`, `--1`, `-` are not).
pub fn parse_weight(text: &[u8]) -> Result<Micros, AmountError> {
    match text.split_first() {
        Some((b'-', rest)) => match parse_amount(rest) {
            Ok(v) => Ok(-v),
            Err(AmountError::Empty) => Err(AmountError::NoDigits),
            Err(AmountError::Sign) => Err(AmountError::WeightSign),
            Err(e) => Err(e),
        },
        Some((b'+', _)) => match parse_amount(text) {
            Err(AmountError::Sign) => Err(AmountError::WeightSign),
            other => other,
        },
        _ => parse_amount(text),
    }
}

/// Parses an unsigned decimal amount (`4.55`, `12`, `0.5`, at most six fractional digits)
/// into micro-units. `None` for a sign, an exponent, `NaN`, `inf`, an empty value, or a value
/// of 10^12 or more (kept below so that single amounts fit `i64` micro-units and sums of
/// many amounts stay exact). See [`parse_amount`] for the exact grammar and the reasons.
pub fn parse_decimal_micros(text: &str) -> Option<i64> {
    parse_amount(text.as_bytes()).ok()
}

fn unexpected_char(text: &[u8], at: usize) -> AmountError {
    if text[at].is_ascii() {
        return AmountError::UnexpectedChar(char::from(text[at]));
    }
    match std::str::from_utf8(&text[at..]) {
        Ok(s) => s
            .chars()
            .next()
            .map_or(AmountError::InvalidUtf8, AmountError::UnexpectedChar),
        Err(e) if e.valid_up_to() > 0 => std::str::from_utf8(&text[at..at + e.valid_up_to()])
            .ok()
            .and_then(|s| s.chars().next())
            .map_or(AmountError::InvalidUtf8, AmountError::UnexpectedChar),
        Err(_) => AmountError::InvalidUtf8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amount_valid_forms() {
        assert_eq!(parse_amount(b"4.55"), Ok(4_550_000));
        assert_eq!(parse_amount(b"12"), Ok(12_000_000));
        assert_eq!(parse_amount(b"0.5"), Ok(500_000));
        assert_eq!(parse_amount(b"0"), Ok(0));
        assert_eq!(parse_amount(b"007.010"), Ok(7_010_000));
        assert_eq!(parse_amount(b"0.000001"), Ok(1));
        assert_eq!(parse_amount(b"12."), Ok(12_000_000));
        assert_eq!(parse_amount(b".5"), Ok(500_000));
        assert_eq!(
            parse_amount(b"999999999999.999999"),
            Ok(999_999_999_999_999_999)
        );
        assert_eq!(parse_decimal_micros("4.55"), Some(4_550_000));
        assert_eq!(parse_decimal_micros("-4.55"), None);
    }

    #[test]
    fn amount_invalid_forms() {
        use AmountError::*;
        let cases: &[(&[u8], AmountError)] = &[
            (b"", Empty),
            (b"-4.55", Sign),
            (b"+4.55", Sign),
            (b"1e5", Exponent),
            (b"1.5E-3", Exponent),
            (b"NaN", NotANumber),
            (b"nan", NotANumber),
            (b"-NAN", NotANumber),
            (b"inf", Infinite),
            (b"-inf", Infinite),
            (b"Infinity", Infinite),
            (b"4.5500000", TooManyFractionDigits),
            (b"0.0000001", TooManyFractionDigits),
            (b"1000000000000", OutOfRange),
            (b"1000000000000.0", OutOfRange),
            (b"99999999999999999999999999999", OutOfRange),
            (b" 4.55", Whitespace),
            (b"4.55 ", Whitespace),
            (b"4 55", Whitespace),
            (b"4\t", Whitespace),
            (b".", NoDigits),
            (b"1.2.3", MultiplePoints),
            (b"4,55", UnexpectedChar(',')),
            (b"abc", UnexpectedChar('a')),
            (b"e", UnexpectedChar('e')),
            (b"1-2", UnexpectedChar('-')),
            (b"\xff", InvalidUtf8),
            ("4€".as_bytes(), UnexpectedChar('€')),
            (b"0x10", UnexpectedChar('x')),
        ];
        for (text, want) in cases {
            assert_eq!(
                parse_amount(text),
                Err(*want),
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
        assert_eq!(parse_decimal_micros("1e5"), None);
    }

    #[test]
    fn weight_grammar() {
        assert_eq!(parse_weight(b"-4.55"), Ok(-4_550_000));
        assert_eq!(parse_weight(b"-.5"), Ok(-500_000));
        assert_eq!(parse_weight(b"-0"), Ok(0));
        assert_eq!(parse_weight(b"3"), Ok(3_000_000));
        assert_eq!(parse_weight(b"+1"), Err(AmountError::WeightSign));
        assert_eq!(parse_weight(b"--1"), Err(AmountError::WeightSign));
        assert_eq!(parse_weight(b"-"), Err(AmountError::NoDigits));
        assert_eq!(parse_weight(b""), Err(AmountError::Empty));
        assert_eq!(parse_weight(b"-inf"), Err(AmountError::Infinite));
        assert_eq!(parse_weight(b"-1e3"), Err(AmountError::Exponent));
        assert_eq!(
            parse_weight(b"-1000000000000"),
            Err(AmountError::OutOfRange)
        );
    }
}
