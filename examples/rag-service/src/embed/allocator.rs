//! glibc allocator settings for the model's large, short-lived buffers.
//!
//! A forward pass allocates activation tensors of several MiB to tens of
//! MiB per layer and frees them at once. With glibc's defaults, blocks above
//! the (dynamic) mmap threshold get fresh pages from the kernel every time
//! and freed heap tops are trimmed back, so every layer pays page faults
//! and zeroing again. Raising `mmap_threshold` to 32 MiB (glibc's 64-bit
//! maximum) and never trimming keeps those pages in the process (64 → ~100
//! sentences/s on two cores, as measured for the example). The cost is
//! memory held at its high-water mark (a few hundred MiB for batches of 32
//! texts of 256 tokens).
//!
//! This is `mallopt(M_MMAP_THRESHOLD, 32 MiB)` and `mallopt(M_TRIM_THRESHOLD,
//! -1)`, but the workspace forbids `unsafe` code, so the same settings are
//! given as glibc tunables, which glibc reads only when a process starts:
//! [`tune_allocator`] re-executes the binary once with `GLIBC_TUNABLES` set.

/// The `GLIBC_TUNABLES` entries [`tune_allocator`] adds: mmap threshold
/// 32 MiB, trim threshold 1 TiB (never reached, so the heap is never trimmed).
pub const TUNABLES: &str =
    "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1099511627776";

/// Applies [`TUNABLES`] to this process: call it first thing in `main`,
/// before any thread starts. On Linux with glibc, when `GLIBC_TUNABLES` does
/// not already set the mmap threshold, the program is executed again in
/// place (same pid, arguments and environment, plus the tunables), so this
/// call does not return then; when the tunables are already there (the
/// second time round, or chosen by the user) it returns at once. If the
/// re-execution fails the program goes on with glibc's defaults and the
/// reason is returned, for the caller to log. Elsewhere it does nothing.
pub fn tune_allocator() -> Result<(), std::io::Error> {
    reexec_with_tunables()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn reexec_with_tunables() -> Result<(), std::io::Error> {
    use std::os::unix::process::CommandExt;
    let current = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if current.contains("glibc.malloc.mmap_threshold") {
        return Ok(());
    }
    let tunables = if current.is_empty() {
        TUNABLES.to_owned()
    } else {
        format!("{current}:{TUNABLES}")
    };
    let exe = std::env::current_exe()?;
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    // `exec` returns only when it failed.
    Err(std::process::Command::new(exe)
        .arg0(arg0)
        .args(args)
        .env("GLIBC_TUNABLES", tunables)
        .exec())
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn reexec_with_tunables() -> Result<(), std::io::Error> {
    Ok(())
}
