struct Mailer;

impl Mailer {
    #[taskflow::task]
    fn send(&self, address: String) {
        let _ = address;
    }
}

fn main() {}
