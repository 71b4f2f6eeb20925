//! A WASI command component (world `wasi:cli/command`), for the wrong-world test.

fn main() {
    println!("not a plugin");
}
