//! `sleep`: sleeps 1000 s without reading stdin. Sleeping is a blocking host call, not wasm
//! code, so an epoch deadline alone does not interrupt it: the host needs its outer timeout.

fn main() {
    std::thread::sleep(std::time::Duration::from_secs(1000));
}
