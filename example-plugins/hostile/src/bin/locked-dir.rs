//! `locked-dir`: in its working directory, makes a directory holding a file, takes every access
//! to that directory away from its owner (mode 000, through the directory's descriptor), and
//! prints a clean verdict: a tree its host, running as the same user, can neither list nor
//! empty until it gives the access back. Native only: a wasm plugin has no working directory.

fn main() {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let locked = std::fs::create_dir("locked")
            .and_then(|()| std::fs::write("locked/file", b"left behind"))
            .and_then(|()| std::fs::File::open("locked"))
            .and_then(|dir| dir.set_permissions(std::fs::Permissions::from_mode(0o000)));
        if let Err(e) = locked {
            eprintln!("locked-dir: {e}");
            std::process::exit(1);
        }
    }
    println!("{}", hostile::verdict(0, ""));
}
