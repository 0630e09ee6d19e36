#![deny(warnings)]

// A user who renamed the dependency points the macro at it with `crate = "..."`.
extern crate taskflow as tf;

mod inner {
    #[tf::task(crate = "::tf")]
    pub fn renamed(n: u32) -> u32 {
        n
    }
}

fn main() {
    let tasks = tf::Tasks::recording();
    inner::renamed::enqueue(&tasks, 1);
    assert!(tf::registry().get("renamed").is_some());
}
