//! The engine adapters (`engine::detect`, `engine::normalize`) over whatever lenient parsing
//! accepts: they never panic, detection and normalization agree, a hint is either honored or
//! refused, and every snapshot is well formed (see `check_snapshot`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use perfagent::engine::{detect, normalize, AdaptError};
use perfagent::promtext::{parse, Mode};
use perfagent::snapshot::Engine;
use perfagent_fuzz::check_snapshot;

fuzz_target!(|data: &[u8]| {
    let Ok(exp) = parse(data, Mode::Lenient) else {
        return;
    };
    let detected = detect(&exp);
    match normalize(&exp, None) {
        Ok(s) => {
            assert_eq!(Some(s.engine), detected, "normalize and detect disagree");
            check_snapshot(&s);
        }
        Err(e) => {
            assert_eq!(
                detected, None,
                "detected an engine but normalize failed: {e}"
            );
            assert!(
                matches!(e, AdaptError::NotRecognized { .. }),
                "unexpected error without a hint: {e}"
            );
        }
    }
    for hint in Engine::ALL {
        match normalize(&exp, Some(hint)) {
            Ok(s) => {
                assert_eq!(s.engine, hint, "hint {hint} not honored");
                check_snapshot(&s);
            }
            Err(AdaptError::HintContradicts { hint: h, found, .. }) => {
                assert_eq!(h, hint);
                assert_eq!(
                    Some(found),
                    detected,
                    "hint {hint} refused for another engine"
                );
                assert_ne!(found, hint, "hint {hint} refused in favor of itself");
            }
            Err(AdaptError::NotRecognized { .. }) => {
                assert_eq!(detected, None, "hint {hint}: not recognized but detected");
            }
        }
    }
});
