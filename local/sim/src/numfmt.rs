//! Number spelling of the two exposition libraries the engines use: Python `prometheus_client`
//! (vLLM, SGLang) and Rust `metrics-exporter-prometheus` (TGI). Collectors are tested against the
//! exact bytes real servers send, so the simulator must spell numbers the way they do.

use std::fmt::Write;

/// Python's `repr(float)`: the shortest digits that round-trip, fixed notation for decimal
/// exponents in `-4..16` (always with a fractional part, `1.0`), scientific otherwise (`1e-05`,
/// `1.5e+16`).
pub fn python_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.to_string();
    }
    // Rust's `{:e}` gives the shortest round-trip digits too, as `d.ddde<exp>`.
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = match sci.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (sci.as_str(), 0),
    };
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if x < 0.0 { "-" } else { "" };
    let mut out = String::with_capacity(24);
    out.push_str(sign);
    if (-4..16).contains(&exp) {
        if exp >= 0 {
            let int_len = usize::try_from(exp).unwrap_or(0) + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', int_len - digits.len()));
                out.push_str(".0");
            } else {
                let (int_part, frac) = digits.split_at(int_len);
                out.push_str(int_part);
                out.push('.');
                out.push_str(frac);
            }
        } else {
            out.push_str("0.");
            let zeros = usize::try_from(-exp - 1).unwrap_or(0);
            out.extend(std::iter::repeat_n('0', zeros));
            out.push_str(&digits);
        }
    } else {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let exp_sign = if exp < 0 { '-' } else { '+' };
        let _ = write!(out, "e{exp_sign}{:02}", exp.abs());
    }
    out
}

/// `prometheus_client.utils.floatToGoString`: Python's repr, except that positive numbers with
/// seven or more integer digits switch to Go-style exponents (`7.400757e+06`, and the upstream
/// quirk `1.372014592e+010` for eleven digits).
pub fn go_float(x: f64) -> String {
    if x == f64::INFINITY {
        return "+Inf".to_string();
    }
    if x == f64::NEG_INFINITY {
        return "-Inf".to_string();
    }
    if x.is_nan() {
        return "NaN".to_string();
    }
    let s = python_repr(x);
    match s.find('.') {
        Some(dot) if x > 0.0 && dot > 6 => {
            let (int_part, frac) = s.split_at(dot);
            let frac = frac.trim_start_matches('.');
            let (first, rest) = int_part.split_at(1);
            let mantissa = format!("{first}.{rest}{frac}");
            let mantissa = mantissa.trim_end_matches(['0', '.']);
            format!("{mantissa}e+0{}", dot - 1)
        }
        _ => s,
    }
}

/// Rust's `Display` for `f64`, as `metrics-exporter-prometheus` writes gauges, sums and bucket
/// bounds: no exponent, no `.0` on whole numbers.
pub fn rust_display(x: f64) -> String {
    if x == f64::INFINITY {
        return "+Inf".to_string();
    }
    format!("{x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_repr_matches_cpython_for_the_shapes_engines_print() {
        assert_eq!(python_repr(0.0), "0.0");
        assert_eq!(python_repr(1.0), "1.0");
        assert_eq!(python_repr(246.0), "246.0");
        assert_eq!(python_repr(0.24629998207092285), "0.24629998207092285");
        assert_eq!(python_repr(0.0003117750002274988), "0.0003117750002274988");
        assert_eq!(python_repr(0.00001), "1e-05");
        assert_eq!(python_repr(1.5e16), "1.5e+16");
        assert_eq!(python_repr(1e16), "1e+16");
        assert_eq!(python_repr(-2.5), "-2.5");
        assert_eq!(python_repr(1771042457.4207425), "1771042457.4207425");
    }

    #[test]
    fn go_float_switches_to_exponents_at_seven_integer_digits() {
        assert_eq!(go_float(7400757.0), "7.400757e+06");
        assert_eq!(go_float(13720145920.0), "1.372014592e+010");
        assert_eq!(go_float(1109622784.0), "1.109622784e+09");
        assert_eq!(go_float(1771042457.4207425), "1.7710424574207425e+09");
        assert_eq!(go_float(2351897.9474117756), "2.3518979474117756e+06");
        assert_eq!(go_float(866964.5791549598), "866964.5791549598");
        assert_eq!(go_float(1000000.0), "1e+06");
        assert_eq!(go_float(0.07500000000000001), "0.07500000000000001");
        assert_eq!(go_float(f64::INFINITY), "+Inf");
    }

    #[test]
    fn rust_display_prints_whole_numbers_without_a_fraction() {
        assert_eq!(rust_display(109.0), "109");
        assert_eq!(rust_display(0.5), "0.5");
        assert_eq!(rust_display(0.0001 * 1.5), "0.00015000000000000001");
    }
}
