//! TGI v3's exposition, as written by Rust `metrics-exporter-prometheus`: counters without
//! `_total`, integers without a decimal point, a blank line after each family, no HELP where
//! TGI never described the metric, counters first, then gauges, then histograms.

use super::{hists, write_labels_in_order, RenderInput};
use crate::hist::Histogram;
use crate::model::Obs;
use crate::numfmt::rust_display;
use std::fmt::Write;

struct Exporter<'o> {
    out: &'o mut String,
}

impl Exporter<'_> {
    fn header(&mut self, name: &str, help: Option<&str>, kind: &str) {
        if let Some(help) = help {
            let _ = writeln!(self.out, "# HELP {name} {help}");
        }
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn line(&mut self, name: &str, labels: &[(&str, &str)], value: &str) {
        self.out.push_str(name);
        write_labels_in_order(self.out, labels);
        self.out.push(' ');
        self.out.push_str(value);
        self.out.push('\n');
    }

    fn counter(&mut self, name: &str, help: Option<&str>, series: &[(Vec<(&str, &str)>, u64)]) {
        // The exporter only knows a series once something incremented it.
        if series.is_empty() {
            return;
        }
        self.header(name, help, "counter");
        for (l, v) in series {
            self.line(name, l, &v.to_string());
        }
        self.out.push('\n');
    }

    fn gauge(&mut self, name: &str, help: Option<&str>, value: f64) {
        self.header(name, help, "gauge");
        self.line(name, &[], &rust_display(value));
        self.out.push('\n');
    }

    fn histogram(
        &mut self,
        name: &str,
        help: Option<&str>,
        series: &[(Vec<(&str, &str)>, &Histogram)],
    ) {
        let series: Vec<_> = series.iter().filter(|(_, h)| h.count() > 0).collect();
        if series.is_empty() {
            return;
        }
        self.header(name, help, "histogram");
        let bucket = format!("{name}_bucket");
        for (l, h) in series {
            let cum = h.cumulative();
            for (i, c) in cum.iter().enumerate() {
                let le = match h.bounds().get(i) {
                    Some(b) => rust_display(*b),
                    None => "+Inf".to_string(),
                };
                let mut labels = l.clone();
                labels.push(("le", le.as_str()));
                self.line(&bucket, &labels, &c.to_string());
            }
            self.line(&format!("{name}_sum"), l, &rust_display(h.sum()));
            self.line(&format!("{name}_count"), l, &h.count().to_string());
        }
        self.out.push('\n');
    }
}

pub(super) fn render(input: &RenderInput<'_>, out: &mut String) {
    let mut ex = Exporter { out };
    let Some(s) = input.cores.first().copied() else {
        return;
    };
    let c = &s.counters;
    let nonzero = |v: Vec<(Vec<(&'static str, &'static str)>, u64)>| -> Vec<_> {
        v.into_iter().filter(|(_, n)| *n > 0).collect()
    };
    ex.counter(
        "tgi_request_count",
        Some("Total number of requests"),
        &nonzero(vec![(vec![], c.requests_received)]),
    );
    ex.counter(
        "tgi_request_success",
        Some("Number of successful requests"),
        &nonzero(vec![(vec![], c.finished_stop + c.finished_length)]),
    );
    ex.counter(
        "tgi_request_failure",
        None,
        &nonzero(vec![
            (vec![("err", "overloaded")], c.failed_overloaded),
            (vec![("err", "validation")], c.failed_validation),
        ]),
    );
    let iterations = nonzero(vec![
        (vec![("method", "prefill")], c.prefill_iterations),
        (vec![("method", "decode")], c.decode_iterations),
    ]);
    ex.counter(
        "tgi_batch_inference_count",
        Some("Inference calls per method (prefill or decode)"),
        &iterations,
    );
    ex.counter(
        "tgi_batch_inference_success",
        Some("Number of successful inference calls per method (prefill or decode)"),
        &iterations,
    );
    ex.counter(
        "tgi_batch_concat",
        None,
        &nonzero(vec![(vec![("reason", "backpressure")], c.preemptions)]),
    );

    let g = &s.gauges;
    ex.gauge(
        "tgi_queue_size",
        Some("Current queue size"),
        g.waiting as f64,
    );
    ex.gauge(
        "tgi_batch_current_size",
        Some("Current batch size"),
        g.running as f64,
    );
    ex.gauge(
        "tgi_batch_current_max_tokens",
        Some("Maximum tokens for the current batch"),
        g.batch_tokens as f64,
    );
    // Described under another name upstream, so exposed without HELP.
    ex.gauge(
        "tgi_batch_max_total_tokens",
        None,
        input.derived.kv_capacity_tokens() as f64,
    );

    let one = |obs: Obs| -> Vec<(Vec<(&str, &str)>, &Histogram)> {
        hists(&[s], obs).into_iter().map(|h| (vec![], h)).collect()
    };
    let per_method = || -> Vec<(Vec<(&str, &str)>, &Histogram)> {
        let mut v = Vec::new();
        if let Some(h) = s.hist(Obs::BatchPrefill) {
            v.push((vec![("method", "prefill")], h));
        }
        if let Some(h) = s.hist(Obs::BatchDecode) {
            v.push((vec![("method", "decode")], h));
        }
        v
    };
    ex.histogram(
        "tgi_request_validation_duration",
        Some("Time spent validating the request"),
        &one(Obs::Validation),
    );
    ex.histogram(
        "tgi_request_queue_duration",
        Some("Time spent in the queue per request"),
        &one(Obs::Queue),
    );
    ex.histogram(
        "tgi_request_inference_duration",
        Some("Request inference duration"),
        &one(Obs::Inference),
    );
    ex.histogram(
        "tgi_request_mean_time_per_token_duration",
        Some("Mean time per token per request"),
        &one(Obs::MeanTimePerToken),
    );
    ex.histogram(
        "tgi_request_duration",
        Some("Total time spent processing the request"),
        &one(Obs::E2e),
    );
    ex.histogram(
        "tgi_request_input_length",
        Some("Input token length per request"),
        &one(Obs::PromptTokens),
    );
    ex.histogram(
        "tgi_request_max_new_tokens",
        Some("Maximum new tokens per request"),
        &one(Obs::MaxTokens),
    );
    ex.histogram(
        "tgi_request_generated_tokens",
        Some("Generated tokens per request"),
        &one(Obs::GenerationTokens),
    );
    ex.histogram(
        "tgi_batch_next_size",
        Some("Batch size of the next batch"),
        &one(Obs::BatchSize),
    );
    ex.histogram(
        "tgi_batch_inference_duration",
        Some("Batch inference duration"),
        &per_method(),
    );
    ex.histogram(
        "tgi_batch_forward_duration",
        Some("Batch forward duration per method (prefill or decode)"),
        &per_method(),
    );
}
