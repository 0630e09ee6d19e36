//! Arbitrary cells as a row of the SQLite store.
#![no_main]

mod cell;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|cells: Vec<cell::FuzzCell>| {
    taskflow::fuzzing::sqlite_row(cells.into_iter().map(Into::into).collect());
});
