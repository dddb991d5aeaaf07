//! Number tokens of the text formats: sample values, timestamps, `le`/`quantile` bounds. A fast
//! exact path covers the short decimals servers print (`0.0`, `246`, `1.5e3`); everything else
//! goes to the standard library's correctly rounded parser.

/// Powers of ten that are exact in an `f64` (Clinger's fast path).
const EXACT_POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Largest integer an `f64` represents exactly.
const MAX_EXACT_MANTISSA: u64 = 1 << 53;

/// Parses a float as Go's `ParseFloat` and Python's `float` do for these formats: decimal with
/// optional exponent, `NaN`, `Inf`/`+Inf`/`-Inf`/`Infinity` in any case. No hex, no `_`, no blanks.
#[inline]
pub(crate) fn parse_f64(tok: &[u8]) -> Option<f64> {
    match fast_decimal(tok) {
        Some(v) => Some(v),
        None => slow_f64(tok),
    }
}

/// The standard library's correctly rounded parser, for what [`fast_decimal`] leaves.
#[inline(never)]
fn slow_f64(tok: &[u8]) -> Option<f64> {
    std::str::from_utf8(tok).ok()?.parse::<f64>().ok()
}

/// Appends the leading ASCII digits of `rest` to `mantissa` (wrapping: the caller bounds the
/// digit count); returns how many there were and what follows them.
#[inline(always)]
fn digits<'t>(mut rest: &'t [u8], mantissa: &mut u64) -> (usize, &'t [u8]) {
    let mut count = 0;
    while let Some((&b @ b'0'..=b'9', more)) = rest.split_first() {
        *mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
        count += 1;
        rest = more;
    }
    (count, rest)
}

/// Exact for decimals whose significant digits fit in 2^53 and whose decimal exponent is within
/// ±22: one correctly rounded multiplication or division. `None` means "ask the slow parser",
/// never "invalid".
#[inline(always)]
fn fast_decimal(tok: &[u8]) -> Option<f64> {
    let (negative, rest) = match tok.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, tok),
    };
    // Digits before and after the point; more than 19 in all could overflow the mantissa (and
    // need more care than this path takes).
    let mut mantissa: u64 = 0;
    let (integer_digits, mut rest) = digits(rest, &mut mantissa);
    let mut fraction_digits = 0;
    if let Some((b'.', after_point)) = rest.split_first() {
        (fraction_digits, rest) = digits(after_point, &mut mantissa);
    }
    let total_digits = integer_digits + fraction_digits;
    if total_digits == 0 || total_digits > 19 {
        return None;
    }
    let mut power = -i32::try_from(fraction_digits).ok()?;
    if let Some((b'e' | b'E', after_e)) = rest.split_first() {
        let (exp_negative, after_sign) = match after_e.split_first() {
            Some((b'-', more)) => (true, more),
            Some((b'+', more)) => (false, more),
            _ => (false, after_e),
        };
        let mut exponent = 0;
        let (exp_digits, after_exponent) = digits(after_sign, &mut exponent);
        if exp_digits == 0 || exp_digits > 4 {
            return None;
        }
        let exponent = i32::try_from(exponent).ok()?;
        power += if exp_negative { -exponent } else { exponent };
        rest = after_exponent;
    }
    if !rest.is_empty() {
        return None;
    }
    let magnitude = mantissa as f64;
    let value = if mantissa == 0 {
        0.0
    } else if mantissa > MAX_EXACT_MANTISSA {
        wide_decimal(mantissa, power)?
    } else if power >= 0 {
        magnitude * EXACT_POW10.get(usize::try_from(power).ok()?)?
    } else {
        magnitude / EXACT_POW10.get(usize::try_from(-power).ok()?)?
    };
    Some(if negative { -value } else { value })
}

/// `mantissa × 10^power` for a mantissa wider than an `f64`'s 53 bits (what Python prints for
/// most fractions, `0.9600000000000002`, `1.7710424574219942e+09`) and a power within ±19: the
/// exact product, or the quotient with a sticky bit for a non-zero remainder, in 128 bits,
/// rounded once to nearest-even. `None` outside that range.
fn wide_decimal(mantissa: u64, power: i32) -> Option<f64> {
    let ten_power = u128::from(*POW10_U64.get(usize::try_from(power.unsigned_abs()).ok()?)?);
    if power >= 0 {
        return Some(round_to_f64(u128::from(mantissa) * ten_power, false, 0));
    }
    // The dividend's top bit at 2^126: the quotient keeps at least 63 bits, enough to round.
    let shift = mantissa.leading_zeros() + 63;
    let dividend = u128::from(mantissa) << shift;
    let quotient = dividend / ten_power;
    let sticky = dividend % ten_power != 0;
    Some(round_to_f64(quotient, sticky, -i32::try_from(shift).ok()?))
}

/// `q × 2^exp2` (plus less than one unit of `q` when `sticky`) rounded to the nearest `f64`,
/// ties to even; for the normal range `wide_decimal` produces.
fn round_to_f64(q: u128, sticky: bool, exp2: i32) -> f64 {
    let bits = 128 - q.leading_zeros();
    let shift = bits.saturating_sub(53);
    let mut kept = (q >> shift) as u64;
    if shift > 0 {
        let dropped = q & ((1u128 << shift) - 1);
        let half = 1u128 << (shift - 1);
        if dropped > half || (dropped == half && (sticky || kept & 1 == 1)) {
            // May carry to 2^53, which an `f64` still holds exactly.
            kept += 1;
        }
    }
    let exp2 = exp2 + shift as i32;
    // 2^exp2 built from its bits: exact, and within the normal range here.
    kept as f64 * f64::from_bits(((1023 + i64::from(exp2)) as u64) << 52)
}

/// 10^0 ..= 10^19, every power of ten a `u64` holds.
const POW10_U64: [u64; 20] = {
    let mut table = [1u64; 20];
    let mut i = 1;
    while i < 20 {
        table[i] = table[i - 1] * 10;
        i += 1;
    }
    table
};

/// Parses a signed decimal integer (optional `+`/`-`, digits only); `None` on overflow.
pub(crate) fn parse_i64(tok: &[u8]) -> Option<i64> {
    let (negative, digits) = match tok.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, tok),
    };
    if digits.is_empty() {
        return None;
    }
    let mut value: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        let digit = i64::from(b - b'0');
        value = value.checked_mul(10)?;
        value = if negative {
            value.checked_sub(digit)?
        } else {
            value.checked_add(digit)?
        };
    }
    Some(value)
}

/// An OpenMetrics timestamp (seconds, integer or float, finite) in milliseconds, saturating at
/// the ends of `i64`.
pub(crate) fn seconds_to_ms(tok: &[u8]) -> Option<i64> {
    if let Some(seconds) = parse_i64(tok) {
        return Some(seconds.saturating_mul(1000));
    }
    let seconds = parse_f64(tok)?;
    if !seconds.is_finite() {
        return None;
    }
    // `as` saturates; rounding absorbs the binary error of decimal fractions (1.1 s → 1100 ms).
    Some((seconds * 1000.0).round() as i64)
}

/// A lenient Prometheus timestamp: integer milliseconds, or a finite float rounded to them.
pub(crate) fn lenient_ms(tok: &[u8]) -> Option<i64> {
    if let Some(ms) = parse_i64(tok) {
        return Some(ms);
    }
    let ms = parse_f64(tok)?;
    ms.is_finite().then(|| ms.round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> Option<f64> {
        parse_f64(s.as_bytes())
    }

    #[test]
    fn the_fast_path_agrees_with_the_standard_parser() {
        for s in [
            "0",
            "0.0",
            "1.0",
            "246.0",
            "-3e3",
            "1.5e3",
            "0.0000000001",
            "123456789012345678",
            "9007199254740993",
            "1e22",
            "1e-22",
            "0.1",
            "08",
            "1.",
            ".5",
            "-0.0",
            "4711",
            "0000000000000000000000000000000000000000001.2e-1",
            "14.040000000000001",
            "0.9600000000000002",
            "1.771042457421372e+09",
            "9999999999999999999",
            "99999999999999999999",
            "1234567890.123456789",
            "0.00000000000000000001",
            "-.5",
            "5.e2",
        ] {
            let expected: f64 = s.parse().unwrap_or_else(|_| panic!("std rejects {s}"));
            let got = f(s).unwrap_or_else(|| panic!("rejected {s}"));
            assert_eq!(got.to_bits(), expected.to_bits(), "{s}");
        }
    }

    #[test]
    fn wide_mantissas_round_as_the_standard_parser_does_ties_included() {
        for s in [
            "9007199254740993",
            "9007199254740995",
            "9007199254740997",
            "18014398509481986",
            "18014398509481990",
            "41.35763955116272",
            "1.7710424574219942e+09",
            "9999999999999999999e-19",
            "9999999999999999999e19",
            "1000000000000000000e-19",
            "4503599627370497.5",
            "0.30000000000000004",
            "123456789012345678.9e-3",
            // The kept bits end in a tie that only the remainder of the division breaks.
            "0.90930227542795522",
            "0.015297520230549610",
            "0.009172603041638667",
        ] {
            let expected: f64 = s.parse().unwrap_or_else(|_| panic!("std rejects {s}"));
            assert_eq!(f(s).map(f64::to_bits), Some(expected.to_bits()), "{s}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_decimal_parses_as_the_standard_parser_does(
            mantissa in proptest::prop_oneof![
                proptest::num::u64::ANY,
                (1u64 << 53)..(1u64 << 60),
                0u64..1_000_000,
            ],
            point in 0usize..21,
            exponent in proptest::option::of(-30i32..30),
        ) {
            let digits = mantissa.to_string();
            let point = point.min(digits.len());
            let mut s = format!("{}.{}", &digits[..digits.len() - point], &digits[digits.len() - point..]);
            if let Some(e) = exponent {
                s.push_str(&format!("e{e}"));
            }
            let expected: f64 = s.parse().map_err(|e| proptest::test_runner::TestCaseError::fail(format!("{s}: {e}")))?;
            proptest::prop_assert_eq!(f(&s).map(f64::to_bits), Some(expected.to_bits()), "{}", s);
        }
    }

    #[test]
    fn special_values_and_go_style_exponents_parse() {
        assert!(f("NaN").is_some_and(f64::is_nan));
        assert_eq!(f("+Inf"), Some(f64::INFINITY));
        assert_eq!(f("-Inf"), Some(f64::NEG_INFINITY));
        assert_eq!(f("1.372014592e+010"), Some(1.372014592e10));
        assert_eq!(f("7.400757e+06"), Some(7_400_757.0));
    }

    #[test]
    fn hex_underscores_blanks_and_words_are_not_numbers() {
        for s in [
            "0x1p-3", "0x1", "1_2", " 1", "1 ", "true", "", "-", ".", "1e", "1e+", "1.1.1",
        ] {
            assert_eq!(f(s), None, "{s:?}");
        }
    }

    #[test]
    fn integers_parse_with_sign_and_reject_overflow() {
        assert_eq!(parse_i64(b"-2"), Some(-2));
        assert_eq!(parse_i64(b"+5"), Some(5));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"2.72"), None);
        assert_eq!(parse_i64(b"+"), None);
    }

    #[test]
    fn openmetrics_seconds_become_milliseconds() {
        assert_eq!(seconds_to_ms(b"1.1"), Some(1100));
        assert_eq!(seconds_to_ms(b"1.5e3"), Some(1_500_000));
        assert_eq!(seconds_to_ms(b"000"), Some(0));
        assert_eq!(seconds_to_ms(b"-1.1"), Some(-1100));
        assert_eq!(
            seconds_to_ms(b"12345678901234567890.1234567890"),
            Some(i64::MAX)
        );
        assert_eq!(seconds_to_ms(b"NaN"), None);
        assert_eq!(seconds_to_ms(b"Inf"), None);
    }

    #[test]
    fn lenient_timestamps_round_fractional_milliseconds() {
        assert_eq!(lenient_ms(b"1234567890"), Some(1_234_567_890));
        assert_eq!(lenient_ms(b"2.72"), Some(3));
        assert_eq!(lenient_ms(b"+Inf"), None);
    }
}
