//! Seeded randomness for the model: one stream per engine core, derived from the fleet seed and
//! the instance id, so adding or removing an instance never changes what another one does.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// FNV-1a: a stable hash (std's `DefaultHasher` may change between Rust releases).
pub fn stable_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

pub fn stream(seed: u64, id: &str, core: u32) -> StdRng {
    let mixed = seed
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(stable_hash(id))
        .wrapping_add(u64::from(core).wrapping_mul(0xbf58_476d_1ce4_e5b9));
    StdRng::seed_from_u64(mixed)
}

/// Poisson-distributed count with mean `lambda`: Knuth's product method for small means, a
/// rounded normal approximation above 30 (where it is accurate to well under a percent).
pub fn poisson(rng: &mut StdRng, lambda: f64) -> u64 {
    if lambda.is_nan() || lambda <= 0.0 {
        return 0;
    }
    if lambda < 30.0 {
        let limit = (-lambda).exp();
        let mut k = 0u64;
        let mut p = 1.0;
        loop {
            p *= rng.random::<f64>();
            if p <= limit {
                return k;
            }
            k += 1;
        }
    }
    let x = lambda + lambda.sqrt() * standard_normal(rng);
    x.round().max(0.0) as u64
}

/// Box–Muller.
pub fn standard_normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Log-normal with the given *mean* (not median) and shape `sigma`.
pub fn lognormal_mean(rng: &mut StdRng, mean: f64, sigma: f64) -> f64 {
    let mu = mean.max(f64::MIN_POSITIVE).ln() - sigma * sigma / 2.0;
    (mu + sigma * standard_normal(rng)).exp()
}

pub fn uniform(rng: &mut StdRng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_has_the_requested_mean() {
        let mut rng = stream(7, "x", 0);
        for lambda in [0.4, 5.0, 80.0] {
            let n = 20_000;
            let total: u64 = (0..n).map(|_| poisson(&mut rng, lambda)).sum();
            let mean = total as f64 / n as f64;
            assert!(
                (mean - lambda).abs() < lambda * 0.05 + 0.02,
                "{lambda}: {mean}"
            );
        }
    }

    #[test]
    fn lognormal_has_the_requested_mean() {
        let mut rng = stream(7, "y", 0);
        let n = 50_000;
        let total: f64 = (0..n).map(|_| lognormal_mean(&mut rng, 600.0, 0.7)).sum();
        let mean = total / n as f64;
        assert!((mean - 600.0).abs() < 20.0, "{mean}");
    }

    #[test]
    fn streams_are_reproducible_and_distinct_per_instance() {
        let a: f64 = stream(1, "a", 0).random();
        let a2: f64 = stream(1, "a", 0).random();
        let b: f64 = stream(1, "b", 0).random();
        assert_eq!(a, a2);
        assert_ne!(a, b);
    }
}
