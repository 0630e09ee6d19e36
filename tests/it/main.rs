//! taskflow's integration tests, compiled into one binary.

mod admin;
mod conformance;
mod crash;
mod dsl;
mod engine;
mod external;
mod http;
mod multi;
mod outage;
mod sqlite;
mod support;
