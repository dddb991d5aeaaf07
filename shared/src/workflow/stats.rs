//! The statistics of the canary judge: the two-sided Mann-Whitney U test (exact for small samples
//! without ties, normal approximation with tie and continuity correction otherwise), medians and
//! the cleaning of samples (non-finite values dropped, optional symmetric trimming).
//!
//! Conventions follow SciPy's `scipy.stats.mannwhitneyu(x, y, alternative="two-sided")`: the
//! reported `u` is the statistic of the first sample, and the p-value comes from
//! `max(U1, U2)`, so the numbers can be checked against it.

use serde::{Deserialize, Serialize};

/// Largest sample size (each side) for which the exact null distribution is used. Its counts
/// reach C(40, 20) ≈ 1.4e11, well inside the integers an `f64` holds exactly.
pub const EXACT_MAX_SIZE: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TestMethod {
    /// The exact distribution of U (no ties, both samples at most [`EXACT_MAX_SIZE`]).
    Exact,
    /// The normal approximation with tie correction and continuity correction.
    Normal,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MannWhitney {
    /// U of the first sample: the number of (x, y) pairs with x > y, ties counting one half.
    pub u: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    pub method: TestMethod,
}

/// The two-sided Mann-Whitney U test of `x` against `y`. `None` when a sample is empty or holds a
/// non-finite value (clean samples with [`clean`] first).
pub fn mann_whitney_u(x: &[f64], y: &[f64]) -> Option<MannWhitney> {
    let (n1, n2) = (x.len(), y.len());
    if n1 == 0 || n2 == 0 || x.iter().chain(y).any(|v| !v.is_finite()) {
        return None;
    }
    let mut all: Vec<(f64, bool)> = x
        .iter()
        .map(|&v| (v, true))
        .chain(y.iter().map(|&v| (v, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Average ranks over runs of equal values; Σ(t³ − t) feeds the tie correction.
    let n = all.len();
    let mut rank_sum_x = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && all.get(j).map(|p| p.0) == all.get(i).map(|p| p.0) {
            j += 1;
        }
        let t = (j - i) as f64;
        let avg_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum_x += all
            .get(i..j)
            .map_or(0, |run| run.iter().filter(|p| p.1).count()) as f64
            * avg_rank;
        tie_term += t * t * t - t;
        i = j;
    }
    let (f1, f2) = (n1 as f64, n2 as f64);
    let u1 = rank_sum_x - f1 * (f1 + 1.0) / 2.0;
    let u2 = f1 * f2 - u1;
    let u_max = u1.max(u2);
    let exact = tie_term == 0.0 && n1 <= EXACT_MAX_SIZE && n2 <= EXACT_MAX_SIZE;
    let (p, method) = if exact {
        (exact_two_sided(n1, n2, u_max), TestMethod::Exact)
    } else {
        (
            normal_two_sided(n1, n2, u_max, tie_term),
            TestMethod::Normal,
        )
    };
    Some(MannWhitney {
        u: u1,
        p_value: p.clamp(0.0, 1.0),
        method,
    })
}

/// 2·P(U ≥ u_max) under the null, from the exact distribution of U.
fn exact_two_sided(n1: usize, n2: usize, u_max: f64) -> f64 {
    let counts = exact_counts(n1, n2);
    let total: f64 = counts.iter().sum();
    if total <= 0.0 {
        return 1.0;
    }
    // Without ties U is an integer; round away float noise from the rank sums.
    let from = u_max.round().max(0.0) as usize;
    let tail: f64 = counts.iter().skip(from).sum();
    2.0 * tail / total
}

/// `counts[u]` = how many of the C(n1+n2, n1) orderings give U1 = u.
///
/// Recurrence on the largest value: if it belongs to x it beats all n2 values of y
/// (f(i, j, u) gets f(i−1, j, u−j)); if it belongs to y it adds nothing (f(i, j−1, u)).
fn exact_counts(n1: usize, n2: usize) -> Vec<f64> {
    // row[j] holds f(i, j, ·) for the current i.
    let mut row: Vec<Vec<f64>> = (0..=n2).map(|_| vec![1.0]).collect();
    for i in 1..=n1 {
        let mut next: Vec<Vec<f64>> = Vec::with_capacity(n2 + 1);
        next.push(vec![1.0]);
        for j in 1..=n2 {
            let mut f = vec![0.0; i * j + 1];
            if let Some(up) = row.get(j) {
                for (u, c) in up.iter().enumerate() {
                    if let Some(slot) = f.get_mut(u + j) {
                        *slot += c;
                    }
                }
            }
            if let Some(left) = next.get(j - 1) {
                for (u, c) in left.iter().enumerate() {
                    if let Some(slot) = f.get_mut(u) {
                        *slot += c;
                    }
                }
            }
            next.push(f);
        }
        row = next;
    }
    row.pop().unwrap_or_else(|| vec![1.0])
}

/// The normal approximation: z = (u_max − n1·n2/2 − ½) / σ with σ² = n1·n2/12 ·
/// ((N+1) − Σ(t³−t)/(N(N−1))). All values tied (σ = 0) means no evidence at all: p = 1.
fn normal_two_sided(n1: usize, n2: usize, u_max: f64, tie_term: f64) -> f64 {
    let (f1, f2) = (n1 as f64, n2 as f64);
    let n = f1 + f2;
    let mu = f1 * f2 / 2.0;
    let var = f1 * f2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    if var.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return 1.0;
    }
    let z = (u_max - mu - 0.5) / var.sqrt();
    2.0 * normal_sf(z)
}

/// P(Z > z) for a standard normal Z.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The complementary error function, to about 1e-14 relative: a series for |x| < 2.5, a continued
/// fraction beyond (both converge fast there and neither cancels).
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    if x < 2.5 {
        return 1.0 - erf_series(x);
    }
    erfc_continued_fraction(x)
}

/// erf(x) = 2/√π · e^(−x²) · Σ (2x²)ⁿ x / (1·3·…·(2n+1)): every term positive.
fn erf_series(x: f64) -> f64 {
    let x2 = x * x;
    let mut term = x;
    let mut sum = x;
    let mut k = 0.0;
    while term > sum * 1e-17 {
        k += 1.0;
        term *= 2.0 * x2 / (2.0 * k + 1.0);
        sum += term;
        if k > 500.0 {
            break;
        }
    }
    2.0 / std::f64::consts::PI.sqrt() * (-x2).exp() * sum
}

/// erfc(x) = e^(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …)))), evaluated by modified Lentz.
fn erfc_continued_fraction(x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut f = x;
    let mut c = x;
    let mut d = 0.0;
    for k in 1..300 {
        let a = f64::from(k) / 2.0;
        d = x + a * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = x + a / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        let delta = c * d;
        f *= delta;
        if (delta - 1.0).abs() < 1e-16 {
            break;
        }
    }
    (-x * x).exp() / std::f64::consts::PI.sqrt() / f
}

/// The median of a sample (any order); `None` when empty.
pub fn median(xs: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return None;
    }
    let hi = v.get(n / 2).copied()?;
    if n % 2 == 1 {
        return Some(hi);
    }
    let lo = v.get(n / 2 - 1).copied()?;
    Some((lo + hi) / 2.0)
}

/// Drops NaN and infinities, sorts, then removes `trim_fraction` of the values from each end
/// (rounded down, so a small sample is never emptied by trimming: 10% of 9 values trims none).
pub fn clean(xs: &[f64], trim_fraction: f64) -> Vec<f64> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let frac = if trim_fraction.is_finite() {
        trim_fraction.clamp(0.0, 0.49)
    } else {
        0.0
    };
    let k = (v.len() as f64 * frac).floor() as usize;
    if k > 0 && v.len() > 2 * k {
        v.drain(..k);
        v.truncate(v.len() - k);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erfc_matches_reference_values() {
        // Reference values: Python's math.erfc (the C library's), repr-printed.
        for (x, want) in [
            (0.0, 1.0),
            (0.5, 0.4795001221869535),
            (1.0, 0.15729920705028513),
            (2.0, 0.004677734981047265),
            (2.5, 0.0004069520174449589),
            (3.0, 2.2090496998585438e-05),
            (5.0, 1.537_459_794_428_035e-12),
            (-1.0, 1.842700792949715),
        ] {
            let got = erfc(x);
            assert!(
                ((got - want) / want).abs() < 1e-12,
                "erfc({x}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn exact_counts_are_the_known_distribution() {
        // n1 = n2 = 2: the 6 orderings give U = 0,1,2,2,3,4.
        assert_eq!(exact_counts(2, 2), vec![1.0, 1.0, 2.0, 1.0, 1.0]);
        let total: f64 = exact_counts(5, 7).iter().sum();
        assert_eq!(total, 792.0); // C(12, 5)
    }

    #[test]
    fn median_and_clean_handle_even_odd_nan_and_trim() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(
            clean(&[f64::NAN, 2.0, f64::INFINITY, 1.0], 0.0),
            vec![1.0, 2.0]
        );
        let ten: Vec<f64> = (0..10).map(f64::from).collect();
        assert_eq!(clean(&ten, 0.1), (1..9).map(f64::from).collect::<Vec<_>>());
        assert_eq!(clean(&[1.0, 2.0, 3.0], 0.2), vec![1.0, 2.0, 3.0]);
    }
}
