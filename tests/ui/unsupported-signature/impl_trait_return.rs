#[taskflow::task]
fn later(n: u32) -> impl std::future::Future<Output = u32> {
    async move { n }
}

fn main() {}
