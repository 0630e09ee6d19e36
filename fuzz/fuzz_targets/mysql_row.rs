//! Arbitrary cells as a row of the MySQL store.
#![no_main]

mod cell;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|cells: Vec<cell::FuzzCell>| {
    taskflow::fuzzing::mysql_row(cells.into_iter().map(Into::into).collect());
});
