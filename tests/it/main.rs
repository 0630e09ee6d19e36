//! taskflow's integration tests, compiled into one binary.

mod dsl;
mod engine;
mod external;
mod http;
mod support;
