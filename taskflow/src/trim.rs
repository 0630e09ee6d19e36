//! Giving freed heap memory back to the operating system after a large prune.
//!
//! glibc's allocator keeps the pages of freed blocks for reuse, in one arena per thread that
//! allocated them, so a process that pruned a million finished tasks keeps its peak resident
//! size until something asks for the pages back. Elsewhere (musl, macOS, jemalloc, mimalloc)
//! this does nothing: those allocators return memory on their own or have their own knobs.

/// How many records a prune must have freed before giving memory back is worth its cost (it
/// walks every arena's free lists).
pub(crate) const WORTH_TRIMMING: usize = 1_000;

/// Asks the allocator to return free pages to the operating system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub(crate) fn return_free_memory() {
    unsafe extern "C" {
        /// glibc: releases free memory from the top of the heap and, since glibc 2.8, free
        /// whole pages inside every arena (`madvise(MADV_DONTNEED)`). Returns 1 if any was
        /// released.
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: malloc_trim takes no pointers and is safe to call from any thread at any time;
    // it only takes each arena's lock while it walks that arena.
    unsafe {
        malloc_trim(0);
    }
}

/// Asks the allocator to return free pages to the operating system.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn return_free_memory() {}
