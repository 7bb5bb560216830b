//! A std program that ends with a non-zero exit status (3), which the summary and
//! `quest-build run`'s status must show.

fn main() {
    println!("exit-code-std: exiting with status 3");
    std::process::exit(3);
}
