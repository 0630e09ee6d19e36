// Every independent mistake is reported in one compile.
#[taskflow::task(retries = -1, backoff = 0.5, colour = "red")]
fn cleanup(s: &str) {
    let _ = s;
}

fn main() {}
