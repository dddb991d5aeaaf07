//! A fixed-bucket histogram that only ever grows, the way server-side Prometheus histograms do:
//! the simulator records per-request observations into it and renders it cumulatively.

/// Bucket counts are kept per bucket (not cumulative) so that an observation touches one slot;
/// rendering accumulates them, so the exposed `_bucket` series are cumulative by construction.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    bounds: Vec<f64>,
    /// One slot per finite bound plus the overflow (`+Inf`) slot.
    slots: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// `bounds` are the finite upper bounds, ascending; `+Inf` is implicit.
    pub fn new(bounds: Vec<f64>) -> Self {
        let slots = vec![0; bounds.len() + 1];
        Self {
            bounds,
            slots,
            sum: 0.0,
            count: 0,
        }
    }

    /// Records `weight` observations of `value` (weight > 1 stands for many identical
    /// observations, e.g. every token of a decode step).
    pub fn observe(&mut self, value: f64, weight: u64) {
        if weight == 0 || !value.is_finite() {
            return;
        }
        // Prometheus buckets are "less than or equal": the first bound >= value.
        let idx = self.bounds.partition_point(|b| *b < value);
        if let Some(slot) = self.slots.get_mut(idx) {
            *slot += weight;
        }
        self.sum += value * weight as f64;
        self.count += weight;
    }

    pub fn bounds(&self) -> &[f64] {
        &self.bounds
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Cumulative counts, one per finite bound, then the `+Inf` total.
    pub fn cumulative(&self) -> Vec<u64> {
        let mut acc = 0;
        self.slots
            .iter()
            .map(|c| {
                acc += c;
                acc
            })
            .collect()
    }

    /// Mean of everything observed so far, `None` before the first observation.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// A copy whose counts and sum are `share` of this one's (rounded down), used to spread an
    /// instance's observations over padding series without breaking cumulativeness.
    pub fn scaled(&self, share: f64) -> Histogram {
        let slots: Vec<u64> = self
            .slots
            .iter()
            .map(|c| (*c as f64 * share).floor() as u64)
            .collect();
        let count = slots.iter().sum();
        Histogram {
            bounds: self.bounds.clone(),
            slots,
            sum: self.sum * share,
            count,
        }
    }
}

/// `n` bounds `start * factor^i`, computed by repeated multiplication so float noise matches
/// servers that build them the same way.
pub fn geometric(start: f64, factor: f64, n: usize) -> Vec<f64> {
    let mut v = Vec::with_capacity(n);
    let mut x = start;
    for _ in 0..n {
        v.push(x);
        x *= factor;
    }
    v
}

/// vLLM's `build_1_2_5_buckets(max_value)`: 1, 2, 5, 10, 20, 50, ... up to `max_value`.
pub fn one_two_five(max_value: f64) -> Vec<f64> {
    let mut v = Vec::new();
    let mut exponent = 0;
    'outer: loop {
        for m in [1.0, 2.0, 5.0] {
            let value = m * 10f64.powi(exponent);
            if value <= max_value {
                v.push(value);
            } else {
                break 'outer;
            }
        }
        exponent += 1;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_observation_on_a_bound_lands_in_that_bucket() {
        let mut h = Histogram::new(vec![0.1, 0.5, 1.0]);
        h.observe(0.5, 1);
        h.observe(2.0, 3);
        assert_eq!(h.cumulative(), vec![0, 1, 1, 4]);
        assert_eq!(h.count(), 4);
        assert!((h.sum() - 6.5).abs() < 1e-12);
    }

    #[test]
    fn one_two_five_stops_at_the_max_model_len() {
        assert_eq!(
            one_two_five(8192.0),
            vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0]
        );
    }
}
