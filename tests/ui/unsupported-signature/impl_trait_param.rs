#[taskflow::task]
fn show(value: impl std::fmt::Display) {
    let _ = value.to_string();
}

fn main() {}
