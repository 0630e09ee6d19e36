use std::rc::Rc;

#[taskflow::task]
async fn local(n: u32) {
    let shared = Rc::new(n);
    std::future::ready(()).await;
    let _ = shared;
}

fn main() {}
