//! Arbitrary query strings through every admin route's parameter parsing.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &str| {
    taskflow::fuzzing::admin_queries(raw);
});
