//! Rebuilds the crate when a migration changes (they are embedded) and exposes a fingerprint of
//! the migrations, which the test kit uses to name its template database.

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::path::Path;
use std::{env, fs, io};

fn main() -> io::Result<()> {
    let migrations = Path::new(&env::var("CARGO_MANIFEST_DIR").map_err(io::Error::other)?)
        .join("../../migrations/postgres");
    println!("cargo:rerun-if-changed={}", migrations.display());
    let mut hasher = DefaultHasher::new();
    fingerprint(&migrations, &mut hasher)?;
    println!(
        "cargo:rustc-env=MARKETS_MIGRATIONS_FINGERPRINT={:016x}",
        hasher.finish()
    );
    Ok(())
}

fn fingerprint(dir: &Path, hasher: &mut DefaultHasher) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|entry| entry.path());
    for entry in entries {
        let path = entry.path();
        println!("cargo:rerun-if-changed={}", path.display());
        hasher.write(
            path.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        if path.is_dir() {
            fingerprint(&path, hasher)?;
        } else {
            hasher.write(&fs::read(&path)?);
        }
    }
    Ok(())
}
