//! The scraping parser (`promtext::parse` in lenient mode) on any bytes: it never panics, an error
//! points inside the input, and what it accepts prints back to the same samples.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perfagent::promtext::{parse, Mode};
use perfagent_fuzz::{check_error_position, check_print_round_trip};

fuzz_target!(|data: &[u8]| {
    match parse(data, Mode::Lenient) {
        Ok(exp) => check_print_round_trip(&exp),
        Err(e) => check_error_position(data, &e),
    }
});
