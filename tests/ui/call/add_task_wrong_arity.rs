use taskflow::{Tasks, task};

#[task]
fn resize_image(image_id: u64, width: u32, height: u32) {
    let _ = (image_id, width, height);
}

fn main() {
    let tasks = Tasks::recording();
    tasks.add_task(resize_image, (7, 800));
}
