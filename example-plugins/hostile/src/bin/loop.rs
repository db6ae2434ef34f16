//! `loop`: spins forever without reading stdin or writing anything. Only the host's deadline
//! (epoch interruption for wasm, a kill of the process group natively) stops it.

fn main() {
    let mut counter: u64 = 0;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}
