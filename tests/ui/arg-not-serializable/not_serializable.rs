pub struct Connection;

#[taskflow::task]
fn ping(host: String, conn: Connection) {
    let _ = (host, conn);
}

fn main() {}
