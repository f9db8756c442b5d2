//! Rebuild the plugins when what shapes their link changes: the static-link wrapper, the
//! ordering linker and its list of hot functions (cargo tracks none of them otherwise).
fn main() {
    for path in [
        "hot-symbols.txt",
        "../../scripts/link-ordered",
        "../../scripts/rustc-wrapper",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
}
