#[taskflow::task]
struct Cleanup;

fn main() {}
