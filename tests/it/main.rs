//! taskflow's integration tests, compiled into one binary.

pub(crate) mod admin;
mod admin_access;
mod admin_queues;
mod cluster_queues;
mod conformance;
mod corrupt;
mod crash;
mod dsl;
mod engine;
mod external;
mod faults;
mod hang;
mod hostile;
mod http;
mod layout;
mod leader;
mod limits;
mod model;
pub(crate) mod multi;
pub(crate) mod outage;
mod outcomes;
mod priority;
pub(crate) mod queues;
mod restart;
mod routes;
mod sqlite;
mod support;
