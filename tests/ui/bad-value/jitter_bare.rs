#[taskflow::task(retries = 3, jitter)]
fn flaky_call() {}

fn main() {}
