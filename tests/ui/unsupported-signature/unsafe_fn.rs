#[taskflow::task]
unsafe fn poke(addr: usize) {
    let _ = addr;
}

fn main() {}
