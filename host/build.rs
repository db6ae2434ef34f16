fn main(){
  let out = std::env::var("OUT_DIR").unwrap();
  let p = format!("{out}/dummy.wasm");
  std::fs::write(&p, b"\0asm\x01\0\0\0").unwrap();
  for n in ["EICAR","SHA256_BLOCKLIST","FILETYPE"] { println!("cargo:rustc-env=CORDON_BUILTIN_{n}={p}"); }
}
