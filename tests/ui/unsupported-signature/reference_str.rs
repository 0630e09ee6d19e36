#[taskflow::task]
fn send_email(address: &str) {
    let _ = address;
}

fn main() {}
