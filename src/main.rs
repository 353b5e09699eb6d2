//! `gsv` command line: serve, synth, parity, bench, phonemize.
fn main() {
    println!("gsv {}", env!("CARGO_PKG_VERSION"));
}
