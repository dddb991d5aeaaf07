//! One test per construct of the Prometheus 0.0.4 and OpenMetrics 1.0 text formats, in the mode
//! where it matters, plus the real-server quirks lenient mode exists for.

use perfagent::promtext::{parse, Exposition, Format, MetricType, Mode, ParseError};

const LENIENT: Mode = Mode::Lenient;
const PROM: Mode = Mode::Strict(Format::Prometheus);
const OM: Mode = Mode::Strict(Format::OpenMetrics);

fn ok(input: &str, mode: Mode) -> Exposition<'_> {
    parse(input.as_bytes(), mode).unwrap_or_else(|e| panic!("{mode:?} rejected {input:?}: {e}"))
}

fn err(input: &str, mode: Mode) -> ParseError {
    match parse(input.as_bytes(), mode) {
        Ok(_) => panic!("{mode:?} accepted {input:?}"),
        Err(e) => e,
    }
}

fn values(e: &Exposition<'_>) -> Vec<f64> {
    e.samples().map(|s| s.value).collect()
}

// ------------------------------------------------------------ metadata and types

#[test]
fn help_and_type_attach_to_the_family_and_its_samples() {
    let e = ok(
        "# HELP http_requests_total The total.\n# TYPE http_requests_total counter\nhttp_requests_total{code=\"200\"} 1027\n",
        PROM,
    );
    let f = &e.families[0];
    assert_eq!(f.name, "http_requests_total");
    assert_eq!(f.kind, MetricType::Counter);
    assert_eq!(f.help.as_deref(), Some("The total."));
    assert_eq!(f.samples.len(), 1);
    assert_eq!(f.samples[0].labels.get("code").as_deref(), Some("200"));
}

#[test]
fn help_escapes_are_decoded() {
    let e = ok("# HELP m two\\nlines \\\\ and \\\"q\\\"\nm 1\n", PROM);
    assert_eq!(
        e.families[0].help.as_deref(),
        Some("two\nlines \\ and \"q\"")
    );
}

#[test]
fn an_unknown_escape_in_help_is_an_error_in_strict_prometheus_and_literal_elsewhere() {
    assert!(err("# HELP m a\\tb\nm 1\n", PROM)
        .message
        .contains("escape"));
    let e = ok("# HELP m a\\tb\nm 1\n", LENIENT);
    assert_eq!(e.families[0].help.as_deref(), Some("a\\tb"));
    let e = ok("# HELP m a\\tb\nm 1\n# EOF\n", OM);
    assert_eq!(e.families[0].help.as_deref(), Some("a\\tb"));
}

#[test]
fn unit_is_read_in_openmetrics_and_must_suffix_the_name() {
    let e = ok(
        "# TYPE a_seconds gauge\n# UNIT a_seconds seconds\na_seconds 1\n# EOF\n",
        OM,
    );
    assert_eq!(e.families[0].unit, Some("seconds"));
    assert!(err("# TYPE a gauge\n# UNIT a seconds\na 1\n# EOF\n", OM)
        .message
        .contains("suffix"));
}

#[test]
fn type_names_of_both_formats_are_understood() {
    let e = ok(
        "# TYPE a untyped\na 1\n# TYPE b gauge_histogram\nb_bucket{le=\"+Inf\"} 1\n# TYPE c GAUGE\nc 1\n",
        PROM,
    );
    let kinds: Vec<_> = e.families.iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds,
        [
            MetricType::Unknown,
            MetricType::GaugeHistogram,
            MetricType::Gauge
        ]
    );
    assert!(err("# TYPE a info\na 1\n", PROM)
        .message
        .contains("unknown metric type"));
    let e = ok(
        "# TYPE a info\na_info{v=\"1\"} 1\n# TYPE s stateset\ns{s=\"x\"} 1\n",
        LENIENT,
    );
    assert_eq!(e.families[0].kind, MetricType::Info);
    assert_eq!(e.families[1].kind, MetricType::StateSet);
}

#[test]
fn openmetrics_rejects_untyped_and_prometheus_rejects_unknown_type_words() {
    assert!(err("# TYPE a untyped\n# EOF\n", OM)
        .message
        .contains("type"));
    assert!(err("# TYPE a bla\n", PROM).message.contains("type"));
}

// ------------------------------------------------------------ the metric types

#[test]
fn counter_samples_with_and_without_total_join_the_counter_family() {
    let e = ok(
        "# TYPE a counter\na_total 1\na_created 1.7e9\n# TYPE tgi_request_count counter\ntgi_request_count 109\n",
        LENIENT,
    );
    assert_eq!(e.families.len(), 2);
    assert_eq!(e.families[0].samples.len(), 2);
    assert_eq!(e.families[0].samples[1].name, "a_created");
    assert_eq!(e.families[1].samples[0].value, 109.0);
}

#[test]
fn a_histogram_groups_buckets_sum_count_and_created() {
    let text = "# TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"+Inf\"} 3\nh_sum 2.5\nh_count 3\nh_created 1.5e9\n# EOF\n";
    for mode in [LENIENT, OM] {
        let e = ok(text, mode);
        assert_eq!(e.families.len(), 1, "{mode:?}");
        let names: Vec<_> = e.families[0].samples.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            ["h_bucket", "h_bucket", "h_sum", "h_count", "h_created"]
        );
    }
}

#[test]
fn a_summary_groups_quantiles_sum_and_count() {
    let e = ok(
        "# TYPE s summary\ns{quantile=\"0.5\"} 1\ns{quantile=\"0.9\"} 2\ns_sum 10\ns_count 4\n",
        PROM,
    );
    assert_eq!(e.families[0].kind, MetricType::Summary);
    assert_eq!(e.families[0].samples.len(), 4);
    assert!(err("# TYPE s summary\ns{quantile=\"x\"} 1\n", PROM)
        .message
        .contains("quantile"));
}

#[test]
fn gaugehistogram_info_and_stateset_follow_openmetrics_rules() {
    let e = ok(
        "# TYPE g gaugehistogram\ng_bucket{le=\"+Inf\"} 3\ng_gcount 3\ng_gsum 2\n# TYPE i info\ni_info{version=\"1\"} 1\n# TYPE s stateset\ns{s=\"a\"} 1\ns{s=\"b\"} 0\n# EOF\n",
        OM,
    );
    let kinds: Vec<_> = e.families.iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds,
        [
            MetricType::GaugeHistogram,
            MetricType::Info,
            MetricType::StateSet
        ]
    );
    assert!(err("# TYPE i info\ni_info 2\n# EOF\n", OM)
        .message
        .contains("info"));
    assert!(err("# TYPE s stateset\ns{s=\"a\"} 2\n# EOF\n", OM)
        .message
        .contains("stateset"));
}

#[test]
fn an_untyped_sample_without_type_is_a_family_of_its_own() {
    let e = ok("foo_bucket{le=\"1\"} 1\nbar 2\n", LENIENT);
    assert_eq!(e.families.len(), 2);
    assert_eq!(e.families[0].name, "foo_bucket");
    assert_eq!(e.families[0].kind, MetricType::Unknown);
}

#[test]
fn strict_openmetrics_checks_histogram_consistency() {
    let bad = [
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\n# EOF\n",
        "# TYPE h histogram\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\n# EOF\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n# EOF\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 2\nh_sum 1\n# EOF\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1.5\n# EOF\n",
    ];
    for text in bad {
        err(text, OM);
        ok(text, LENIENT);
    }
}

#[test]
fn counter_values_cannot_be_negative_or_nan_in_strict_openmetrics() {
    err("# TYPE a counter\na_total -1\n# EOF\n", OM);
    err("# TYPE a counter\na_total NaN\n# EOF\n", OM);
    ok("# TYPE a counter\na_total -1\n", LENIENT);
}

#[test]
fn negative_histogram_buckets_are_an_error_in_strict_prometheus() {
    let e = err(
        "# TYPE h histogram\nh_bucket{le=\"1\"} -1\nh_bucket{le=\"+Inf\"} 1\n",
        PROM,
    );
    assert_eq!(e.line, 2);
}

// ------------------------------------------------------------ labels and values

#[test]
fn label_escapes_are_decoded_lazily() {
    let e = ok(
        "m{a=\"back\\\\slash\",b=\"quo\\\"te\",c=\"new\\nline\",d=\"plain\"} 1\n",
        PROM,
    );
    let l = &e.families[0].samples[0].labels;
    assert_eq!(l.get("a").as_deref(), Some("back\\slash"));
    assert_eq!(l.get("b").as_deref(), Some("quo\"te"));
    assert_eq!(l.get("c").as_deref(), Some("new\nline"));
    assert!(matches!(
        l.get("d"),
        Some(std::borrow::Cow::Borrowed("plain"))
    ));
    assert_eq!(
        l.as_raw(),
        "a=\"back\\\\slash\",b=\"quo\\\"te\",c=\"new\\nline\",d=\"plain\""
    );
}

#[test]
fn an_invalid_label_escape_is_rejected_in_strict_prometheus_only() {
    let e = err("m{a=\"\\t\"} 1\n", PROM);
    assert_eq!((e.line, e.column), (1, 6));
    let e = ok("m{a=\"x\\z\"} 1\n", LENIENT);
    assert_eq!(
        e.families[0].samples[0].labels.get("a").as_deref(),
        Some("x\\z")
    );
}

#[test]
fn braces_commas_and_hashes_inside_label_values_do_not_end_them() {
    let e = ok("a_total{foo=\"} foo # bar # \",x=\",\"} 1\n# EOF\n", OM);
    let l = &e.families[0].samples[0].labels;
    assert_eq!(l.get("foo").as_deref(), Some("} foo # bar # "));
    assert_eq!(l.get("x").as_deref(), Some(","));
}

#[test]
fn duplicate_and_reserved_label_names_are_rejected_in_strict_modes() {
    assert!(err("m{a=\"1\",a=\"2\"} 1\n", PROM)
        .message
        .contains("duplicate"));
    assert!(err("m{__name__=\"x\"} 1\n", PROM)
        .message
        .contains("reserved"));
    ok("m{a=\"1\",a=\"2\"} 1\n", LENIENT);
}

#[test]
fn metric_names_with_colons_are_kept_whole() {
    let e = ok(
        "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{engine=\"0\"} 3\nsglang:token_usage 0.5\n",
        PROM,
    );
    assert_eq!(e.families[0].name, "vllm:num_requests_running");
    assert_eq!(e.families[1].samples[0].name, "sglang:token_usage");
}

#[test]
fn nan_and_infinities_parse_in_every_mode() {
    let text = "a NaN\nb +Inf\nc -Inf\nd Inf\n";
    for mode in [LENIENT, PROM] {
        let v = values(&ok(text, mode));
        assert!(v[0].is_nan());
        assert_eq!(&v[1..], [f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY]);
    }
}

#[test]
fn go_style_exponents_and_float_noise_parse_exactly() {
    let v = values(&ok(
        "a 1.372014592e+010\nb 0.07500000000000001\nc 7.400757e+06\n",
        PROM,
    ));
    assert_eq!(v, [1.372014592e10, 0.07500000000000001, 7_400_757.0]);
}

#[test]
fn hex_and_underscore_numbers_are_rejected() {
    for text in ["a 0x1p-3\n", "a 1_000\n", "a true\n"] {
        assert!(err(text, LENIENT).message.contains("not a number"));
    }
}

// ------------------------------------------------------------ timestamps

#[test]
fn prometheus_timestamps_are_integer_milliseconds() {
    let e = ok("a 1 1700000000123\nb 2 -2\n", PROM);
    let ts: Vec<_> = e.samples().map(|s| s.timestamp_ms).collect();
    assert_eq!(ts, [Some(1_700_000_000_123), Some(-2)]);
    assert!(err("a 1 2.5\n", PROM).message.contains("timestamp"));
}

#[test]
fn openmetrics_timestamps_are_seconds_normalized_to_milliseconds() {
    let e = ok("a 1 1700000000.123\nb 2 1.5e3\n# EOF\n", OM);
    let ts: Vec<_> = e.samples().map(|s| s.timestamp_ms).collect();
    assert_eq!(ts, [Some(1_700_000_000_123), Some(1_500_000)]);
}

#[test]
fn lenient_mode_reads_timestamps_as_seconds_only_when_the_input_ends_with_eof() {
    let om = ok("a 1 1700000000\n# EOF\n", LENIENT);
    assert_eq!(
        om.families[0].samples[0].timestamp_ms,
        Some(1_700_000_000_000)
    );
    let prom = ok("a 1 1700000000\n", LENIENT);
    assert_eq!(
        prom.families[0].samples[0].timestamp_ms,
        Some(1_700_000_000)
    );
}

#[test]
fn nan_and_infinite_timestamps_are_rejected() {
    for text in ["a 1 NaN\n# EOF\n", "a 1 +Inf\n# EOF\n"] {
        err(text, OM);
        err(text, LENIENT);
    }
}

// ------------------------------------------------------------ exemplars

#[test]
fn exemplars_are_validated_and_skipped() {
    let text = "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1 # {trace_id=\"abc\"} 0.5 1700000000.5\nh_count 1\nh_sum 0.5\n# EOF\n";
    for mode in [LENIENT, OM] {
        let e = ok(text, mode);
        let bucket = &e.families[0].samples[0];
        assert_eq!(bucket.value, 1.0);
        assert_eq!(bucket.labels.len(), 1);
    }
    assert!(err("# TYPE a gauge\na 1 # {x=\"y\"} 1\n# EOF\n", OM)
        .message
        .contains("exemplar"));
    err("a_total 1 # {x=\"y\"} zz\n", LENIENT);
    err("a_total 1 # {x=\"y\"} 1\n", PROM);
}

// ------------------------------------------------------------ lines and structure

#[test]
fn eof_is_required_and_final_in_strict_openmetrics() {
    assert!(err("a 1\n", OM).message.contains("EOF"));
    assert!(err("a 1\n# EOF\nb 2\n", OM).message.contains("after"));
    ok("a 1\n# EOF", OM);
}

#[test]
fn lenient_mode_stops_at_eof() {
    let e = ok("a 1\n# EOF\nthis is ignored\n", LENIENT);
    assert_eq!(e.sample_count(), 1);
}

#[test]
fn blank_lines_and_leading_blanks_are_fine_except_in_openmetrics() {
    let text = "\n# TYPE a gauge\n\n  a 1\n\n";
    assert_eq!(ok(text, LENIENT).sample_count(), 1);
    assert_eq!(ok(text, PROM).sample_count(), 1);
    let e = err("a 1\n\n# EOF\n", OM);
    assert_eq!((e.line, e.column), (2, 1));
}

#[test]
fn a_missing_final_newline_is_an_error_only_in_strict_prometheus() {
    assert_eq!(ok("a 1\nb 2", LENIENT).sample_count(), 2);
    let e = err("a 1\nb 2", PROM);
    assert_eq!(e.line, 2);
    ok("a 1\n# trailing comment\n  ", PROM);
}

#[test]
fn crlf_line_ends_are_accepted_leniently() {
    let e = ok(
        "# HELP a help\r\n# TYPE a gauge\r\na{x=\"1\"} 1 5\r\n",
        LENIENT,
    );
    assert_eq!(e.families[0].help.as_deref(), Some("help"));
    assert_eq!(e.families[0].kind, MetricType::Gauge);
    assert_eq!(e.families[0].samples[0].timestamp_ms, Some(5));
}

#[test]
fn a_split_family_is_merged_leniently_and_rejected_by_strict_openmetrics() {
    let text = "# TYPE a gauge\na{x=\"1\"} 1\n# TYPE b gauge\nb 2\na{x=\"2\"} 3\n";
    let e = ok(text, LENIENT);
    assert_eq!(e.families.len(), 2);
    assert_eq!(e.families[0].samples.len(), 2);
    assert_eq!(e.families[0].samples[1].value, 3.0);
    err(&format!("{text}# EOF\n"), OM);
}

#[test]
fn a_repeated_family_is_merged_leniently_and_rejected_by_strict_modes() {
    let text = "# HELP a first\n# TYPE a gauge\na 1\n# HELP a second\n# TYPE a gauge\na 2\n";
    let e = ok(text, LENIENT);
    assert_eq!(e.families.len(), 1);
    assert_eq!(e.families[0].help.as_deref(), Some("first"));
    assert_eq!(values(&e), [1.0, 2.0]);
    err(text, PROM);
}

#[test]
fn a_type_conflicting_with_an_earlier_one_is_an_error_even_leniently() {
    let e = err("# TYPE a gauge\na 1\n# TYPE a counter\n", LENIENT);
    assert!(e.message.contains("conflicting"));
    assert_eq!(e.line, 3);
}

#[test]
fn families_with_metadata_and_no_samples_are_kept() {
    let e = ok(
        "# HELP empty nothing yet\n# TYPE empty histogram\n# TYPE g gauge\ng 1\n",
        LENIENT,
    );
    assert_eq!(e.families.len(), 2);
    assert!(e.family("empty").is_some_and(|f| f.samples.is_empty()));
}

#[test]
fn plain_comments_are_ignored_but_not_in_openmetrics() {
    assert_eq!(ok("# just a note\na 1\n", PROM).sample_count(), 1);
    err("# just a note\na 1\n# EOF\n", OM);
}

#[test]
fn a_malformed_unit_line_is_a_comment_leniently_as_in_prometheus_text() {
    // Found by the property test: Prometheus text has no UNIT, so `# UNIT {` is a comment there.
    assert_eq!(ok("# UNIT {\na 1\n", LENIENT).sample_count(), 1);
    assert_eq!(ok("# UNIT {\na 1\n", PROM).sample_count(), 1);
    let e = ok("# UNIT a_seconds seconds\na_seconds 1\n", LENIENT);
    assert_eq!(e.families[0].unit, Some("seconds"));
}

#[test]
fn openmetrics_metadata_after_samples_is_an_error() {
    let e = err("# TYPE a gauge\na 1\n# HELP a late\n# EOF\n", OM);
    assert_eq!(e.line, 3);
}

// ------------------------------------------------------------ errors and robustness

#[test]
fn errors_name_the_line_and_column() {
    let e = err("a 1\nb{x=\"1\" y=\"2\"} 1\n", LENIENT);
    assert_eq!((e.line, e.column), (2, 9));
    assert_eq!(
        e.to_string(),
        "line 2, column 9: expected `,` or `}` after the label value"
    );
    let as_error: &dyn std::error::Error = &e;
    assert!(as_error.to_string().starts_with("line 2"));
}

#[test]
fn invalid_utf8_in_a_label_value_is_rejected_with_its_position() {
    let e = parse(b"a{b=\"x\xff\"} 1\n", LENIENT).expect_err("invalid UTF-8");
    assert_eq!((e.line, e.column), (1, 7));
}

#[test]
fn invalid_utf8_in_comments_is_tolerated_and_in_help_replaced_leniently() {
    let e = parse(b"# comment \xff\n# HELP a bad \xff byte\na 1\n", LENIENT).expect("parses");
    assert_eq!(e.families[0].help.as_deref(), Some("bad \u{fffd} byte"));
    parse(b"# comment \xff\na 1\n", PROM).expect("comments are not validated");
    parse(b"# HELP a bad \xff\na 1\n", PROM).expect_err("strict HELP must be UTF-8");
}

#[test]
fn nul_bytes_are_allowed_in_label_values_only() {
    let e = parse(b"a{b=\"x\0y\"} 1\n", PROM).expect("NUL in a label value");
    assert_eq!(
        e.families[0].samples[0].labels.get("b").as_deref(),
        Some("x\0y")
    );
    parse(b"a\0 1\n", LENIENT).expect_err("NUL in a name");
    parse(b"a 1\0\n", LENIENT).expect_err("NUL in a value");
}

#[test]
fn empty_input_is_an_empty_exposition_except_in_openmetrics() {
    assert!(ok("", LENIENT).families.is_empty());
    assert!(ok("", PROM).families.is_empty());
    err("", OM);
}

#[test]
fn a_huge_line_of_garbage_fails_cleanly() {
    let garbage = "{".repeat(1_000_000);
    let e = err(&garbage, LENIENT);
    assert_eq!(e.line, 1);
    let labels = format!("m{{{}}} 1\n", "a=\"b\",".repeat(100_000));
    assert_eq!(ok(&labels, LENIENT).sample_count(), 1);
    err(&labels, PROM);
}
