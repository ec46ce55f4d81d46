//! Lays out the code `paygress serve` runs while it starts and idles in one place of the
//! optimised `paygress` binary, so an idle service maps a few MiB of its code instead of
//! most of it (the kernel maps an executable in 64 KiB runs around each page touched;
//! docs/BENCHMARKS.md, "Idle RSS").
//!
//! `startup.order` lists those functions as the linker
//! names them; it is written by `cargo xtask startup-order` (valgrind's callgrind under
//! the bench's start-up scenario) and handed to lld as `--symbol-ordering-file`. Names
//! that no longer exist are skipped; after a toolchain or dependency update, regenerate.

use std::env;
use std::path::Path;

fn main() {
    println!("cargo::rerun-if-changed=startup.order");
    println!("cargo::rerun-if-env-changed=PAYGRESS_NO_SYMBOL_ORDER");
    let var = |k: &str| env::var(k).unwrap_or_default();
    // Where rustc links through its own lld by default (x86_64 Linux with glibc, Rust
    // 1.90 on): GNU ld has no `--symbol-ordering-file`. A toolchain told otherwise
    // (linker features, flavour or `-fuse-ld`) is left alone, as is any debug build.
    let lld_by_default = var("CARGO_CFG_TARGET_ARCH") == "x86_64"
        && var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu";
    let rustflags = var("CARGO_ENCODED_RUSTFLAGS");
    let linker_chosen = [
        "linker-features",
        "linker-flavor",
        "fuse-ld",
        "link-self-contained",
    ]
    .iter()
    .any(|f| rustflags.contains(f));
    if !lld_by_default
        || linker_chosen
        || var("PROFILE") != "release"
        || env::var_os("PAYGRESS_NO_SYMBOL_ORDER").is_some()
    {
        return;
    }
    let order = Path::new(&var("CARGO_MANIFEST_DIR")).join("startup.order");
    println!(
        "cargo::rustc-link-arg-bin=paygress=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    println!("cargo::rustc-link-arg-bin=paygress=-Wl,--no-warn-symbol-ordering");
}
