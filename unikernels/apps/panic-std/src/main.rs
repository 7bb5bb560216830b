//! A std program that panics: the monitor must contain it and report the message and the
//! exit status, while the other sandboxes go on.

fn main() {
    println!("panic-std: about to panic");
    let table: Vec<u32> = (1..=3).collect();
    let wanted = std::env::args().count() + 9; // out of range on purpose
    match table.get(wanted) {
        Some(v) => println!("panic-std: unexpectedly found {v}"),
        None => panic!(
            "panic-std: index {wanted} is out of range for {} entries",
            table.len()
        ),
    }
}
