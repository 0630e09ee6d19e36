#[taskflow::task(queue = "e mails")]
fn cleanup() {}

fn main() {}
