//! A std program that ends with a non-zero exit status (3), which the summary and
//! `quest-build run`'s status must show. Before that it asks for a host file, which a
//! Quest sandbox does not have: the open must fail with an ordinary I/O error (the
//! monitor answers Hermit's file hypercall with "failed"), and the program goes on.

fn main() {
    match std::fs::read_to_string("/root/quest-has-no-host-files.txt") {
        Ok(text) => println!(
            "exit-code-std: unexpectedly read {} bytes from a host file",
            text.len()
        ),
        Err(e) => println!("exit-code-std: opening a host file failed as expected: {e}"),
    }
    println!("exit-code-std: exiting with status 3");
    std::process::exit(3);
}
