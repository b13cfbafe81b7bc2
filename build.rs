//! One link setting for the `msr-billing` binary: relative relocations packed (`DT_RELR`).
//!
//! The binary is position-independent, so every pointer in its read-only data (vtables, string
//! tables, the futures' poll tables) needs a relocation that the loader applies at start. As plain
//! `.rela.dyn` entries they were 1.7 MB, all of it read, and so resident, before `main`; packed they
//! are a few KiB (BENCHMARKS.md, peak memory). The loader must understand the packed form: glibc
//! does from 2.36 on and then defines the symbol version `GLIBC_ABI_DT_RELR`, which the linker makes
//! the binary require. So the setting is used only when the C library that will load the binary has
//! it; elsewhere the binary is linked as before.

use std::path::Path;

/// Where the C library of a Linux system lives (Debian and Ubuntu, then Fedora and Arch).
const LIBC_PATHS: [&str; 4] = [
    "/lib/x86_64-linux-gnu/libc.so.6",
    "/lib/aarch64-linux-gnu/libc.so.6",
    "/lib64/libc.so.6",
    "/usr/lib/libc.so.6",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let native = var("HOST") == var("TARGET");
    let glibc = var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu";
    if native && glibc && LIBC_PATHS.iter().any(|p| loads_relr(Path::new(p))) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether this C library defines the version that packed relocations require.
fn loads_relr(libc: &Path) -> bool {
    const VERSION: &[u8] = b"GLIBC_ABI_DT_RELR";
    std::fs::read(libc).is_ok_and(|bytes| bytes.windows(VERSION.len()).any(|w| w == VERSION))
}
