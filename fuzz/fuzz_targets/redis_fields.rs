//! Arbitrary field/value pairs as a Redis task hash. Mostly real field names, so the
//! decoder gets past its first checks.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

const FIELDS: [&str; 17] = [
    "base",
    "seq",
    "status",
    "func",
    "created_us",
    "key",
    "requeue",
    "retries",
    "recoveries",
    "start",
    "end",
    "duration",
    "error",
    "stack",
    "result",
    "owner",
    "expires",
];

#[derive(Arbitrary, Debug)]
enum Field {
    Known(u8),
    Other(Vec<u8>),
}

fuzz_target!(|pairs: Vec<(Field, Vec<u8>)>| {
    let mut flat = Vec::new();
    for (field, value) in pairs {
        flat.push(match field {
            Field::Known(n) => FIELDS[usize::from(n) % FIELDS.len()].as_bytes().to_vec(),
            Field::Other(bytes) => bytes,
        });
        flat.push(value);
    }
    taskflow::fuzzing::redis_fields(flat);
});
