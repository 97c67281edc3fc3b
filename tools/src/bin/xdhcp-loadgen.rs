fn main() {
    eprintln!("xdhcp-loadgen: not yet written");
    std::process::exit(2);
}
