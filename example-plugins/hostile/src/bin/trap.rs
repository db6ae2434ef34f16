//! `trap`: dies at once: the `unreachable` instruction in wasm (a trap), `abort()` natively
//! (SIGABRT).

fn main() {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    std::process::abort();
}
