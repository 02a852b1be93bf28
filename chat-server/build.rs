//! Rebuilds the server when a migration is added or changed: `refinery::embed_migrations!`
//! reads `migrations/` at compile time, and Cargo does not know it depends on those files.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
