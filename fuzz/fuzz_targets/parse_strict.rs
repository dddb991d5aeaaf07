//! The validating parser (`promtext::parse` in strict Prometheus 0.0.4 and strict OpenMetrics 1.0
//! mode) on any bytes: it never panics, an error points inside the input, and lenient mode (the
//! scraping path) accepts what either strict mode accepts, with the same samples.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perfagent::promtext::{parse, Format, Mode};
use perfagent_fuzz::{check_error_position, samples_by_name};

fuzz_target!(|data: &[u8]| {
    // Lenient mode stops at an EOF line (`# EOF`, `#EOF`, blanks around) and then reads
    // timestamps as OpenMetrics seconds; strict Prometheus takes that line for a comment. So
    // Prometheus-valid text with one is not compared (OpenMetrics-valid text always ends with
    // `# EOF`, and both modes read it alike).
    let has_eof = data.split(|&b| b == b'\n').any(|line| {
        line.trim_ascii()
            .strip_prefix(b"#")
            .is_some_and(|rest| rest.trim_ascii() == b"EOF")
    });
    for format in [Format::Prometheus, Format::OpenMetrics] {
        match parse(data, Mode::Strict(format)) {
            Ok(strict) if format == Format::OpenMetrics || !has_eof => {
                let lenient = match parse(data, Mode::Lenient) {
                    Ok(lenient) => lenient,
                    Err(e) => panic!("strict {format:?} accepts, lenient rejects: {e}"),
                };
                assert_eq!(
                    samples_by_name(&strict),
                    samples_by_name(&lenient),
                    "strict {format:?} and lenient read different samples"
                );
            }
            Ok(_) => {}
            Err(e) => check_error_position(data, &e),
        }
    }
});
