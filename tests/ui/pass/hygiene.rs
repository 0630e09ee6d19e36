#![deny(warnings)]
#![allow(dead_code, non_camel_case_types)]

// Generated code must not depend on the caller's names: shadow the prelude and common crates.
struct Result;
struct Ok;
struct Err;
struct Option;
struct Some;
struct None;
struct Box;
struct String;
struct Vec;
struct Send;
struct Sync;
struct Clone;
struct Debug;
struct Default;
struct From;
struct Into;
mod serde {}
mod serde_json {}
mod inventory {}
mod core {}
mod std {}

#[taskflow::task(retries = 1, delay = "1s")]
fn shadowed(n: u32) -> ::core::result::Result<u32, ::std::string::String> {
    ::core::result::Result::Ok(n)
}

#[taskflow::task]
async fn shadowed_async(n: u32) -> u32 {
    n
}

fn main() {
    let tasks = taskflow::Tasks::recording();
    tasks.add_task(shadowed, 1);
    shadowed_async::enqueue(&tasks, 2);
}
