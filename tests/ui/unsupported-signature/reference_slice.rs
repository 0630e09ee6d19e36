#[taskflow::task]
fn sum(values: &[u32]) -> u32 {
    values.iter().sum()
}

fn main() {}
