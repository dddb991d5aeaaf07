//! What the in-process benches share: a criterion run whose samples are kept too, so that a bench
//! can report figures criterion does not print (its own medians, best runs, percentiles).

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode};
use std::cell::RefCell;
use std::time::Duration;

/// Runs `routine` as the criterion benchmark `group/name` (flat sampling, `samples` samples over
/// about `measure`, after a second of warm-up) and returns what `routine` recorded for each of
/// criterion's samples, its warm-up calls left out: criterion calls the routine for the warm-up
/// first, then once per sample. `routine(iters)` runs the measured code `iters` times and returns
/// the time that took and its record. `configure` sets the group up further (e.g. a throughput).
/// Empty when criterion ran nothing (a filter argument that matches no benchmark).
pub fn sampled<T>(
    group: &str,
    name: &str,
    samples: usize,
    measure: Duration,
    configure: impl FnOnce(&mut BenchmarkGroup<WallTime>),
    mut routine: impl FnMut(u64) -> (Duration, T),
) -> Vec<T> {
    let records = RefCell::new(Vec::new());
    let mut criterion = Criterion::default()
        .sample_size(samples)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(measure)
        .without_plots()
        .configure_from_args();
    {
        let mut g = criterion.benchmark_group(group);
        g.sampling_mode(SamplingMode::Flat);
        configure(&mut g);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let (elapsed, record) = routine(iters);
                records.borrow_mut().push(record);
                elapsed
            })
        });
        g.finish();
    }
    criterion.final_summary();
    let mut records = records.into_inner();
    records.split_off(records.len().saturating_sub(samples))
}
