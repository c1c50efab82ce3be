//! Two link settings for the `mara` binary on GNU/Linux, both about start-up
//! (issue 16): every `mara` command is a process of its own, and a small claim
//! is measured against one `git update-ref`, so what a process pays before
//! `main` counts.
//!
//! * gcc's unwinder is linked statically, so `mara` does not load `libgcc_s.so`.
//!   Rust's standard library takes its unwinder (`_Unwind_*`) from that shared
//!   library, whose constructor asks the CPU for its features with a dozen CPUID
//!   instructions; on a virtual machine each one traps to the hypervisor (6 us
//!   here). Loading it, binding its symbols and that constructor were a
//!   twentieth of a claim on a 400-task board. The same unwinder comes with gcc
//!   as a static archive (`libgcc_eh.a`, what Rust itself links for
//!   `+crt-static`): linked whole, it defines `_Unwind_*` before `-lgcc_s` is
//!   reached, and `--as-needed` then drops `libgcc_s.so`. Where the archive is
//!   not found, the standard library's own `-lgcc_s` links as before.
//!
//! * The binary is linked as a fixed-address executable (`-no-pie`), not a
//!   position-independent one. A position-independent binary is relocated at
//!   every start: 16,000 pointers written into 290 KB of otherwise shared pages,
//!   each page copied on its first write, 0.12 ms of a 2.1 ms claim (1.46x
//!   `git update-ref` on the merges benchmark, 1.39x without). The trade: the
//!   binary's own code is not placed at a random address (the C library, the
//!   heap and the stack still are), as Go links its binaries by default. mara
//!   takes no code or paths from the board (DESIGN.md, "Trust"); a build that
//!   prefers the hardening sets `MARA_PIE=1` (`MARA_PIE=1 cargo build --release`).
//!
//! A fully static glibc binary would start faster still, but is not an option
//! with cargo: clap's and serde's derive macros cannot be built for a
//! `+crt-static` host.

// A build script reads what cargo tells it through the environment.
#![allow(clippy::disallowed_methods)]

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CC");
    println!("cargo::rerun-if-env-changed=MARA_PIE");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if target_os != "linux" || target_env != "gnu" {
        return;
    }
    if std::env::var("MARA_PIE").map_or(true, |v| v != "1") {
        println!("cargo::rustc-link-arg-bins=-no-pie");
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
