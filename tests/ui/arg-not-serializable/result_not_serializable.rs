pub struct Report;

#[taskflow::task]
fn build(id: u32) -> Report {
    let _ = id;
    Report
}

fn main() {}
