//! Links gcc's unwinder statically on GNU/Linux, so `mara` does not load
//! `libgcc_s.so` (issue 16).
//!
//! Every `mara` command is a process of its own, and a small claim is measured
//! against one `git update-ref`: startup counts. Rust's standard library takes
//! its unwinder (`_Unwind_*`) from the shared `libgcc_s.so.1`, whose constructor
//! asks the CPU for its features with a dozen CPUID instructions; on a virtual
//! machine each one traps to the hypervisor (6 us here). Loading it, binding its
//! symbols and that constructor were a twentieth of a claim on a 400-task board.
//! The same unwinder comes as a static archive with gcc (`libgcc_eh.a`, what
//! Rust itself links for `+crt-static`): linked whole, it defines `_Unwind_*`
//! before `-lgcc_s` is reached, and `--as-needed` then drops `libgcc_s.so`.
//! The binary stays a position-independent executable against the shared C
//! library (fully static glibc is not an option here: clap's and serde's
//! derive macros cannot be built for a `+crt-static` host).
//!
//! Where the archive is not found (another C compiler, another target), nothing
//! changes: the standard library's own `-lgcc_s` links as before.

// A build script reads what cargo tells it through the environment.
#![allow(clippy::disallowed_methods)]

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CC");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if target_os != "linux" || target_env != "gnu" {
        return;
    }
    let Some(dir) = libgcc_eh_dir() else {
        println!("cargo::warning=libgcc_eh.a not found: mara links libgcc_s.so as usual");
        return;
    };
    println!("cargo::rustc-link-search=native={}", dir.display());
    // `+whole-archive`: the standard library's references to `_Unwind_*` come
    // later on the link line than this crate's own libraries, so only a whole
    // archive defines them in time; `-bundle`: linked where a binary is linked,
    // not copied into the rlib.
    println!("cargo::rustc-link-lib=static:+whole-archive,-bundle=gcc_eh");
}

/// The folder of gcc's `libgcc_eh.a`, as the C compiler that links mara reports it.
fn libgcc_eh_dir() -> Option<PathBuf> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let out = Command::new(cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    // A compiler that does not know the file prints its bare name back.
    if !out.status.success() || !path.is_absolute() || !path.is_file() {
        return None;
    }
    path.parent().map(PathBuf::from)
}
