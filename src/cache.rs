//! Prefetch hints: fetching state a few steps before it is used, so that
//! the cache misses of consecutive events overlap.

/// Hints the cache to fetch the line holding `p`; a no-op where unsupported.
#[inline]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint to the cache; it never faults,
    // whatever the address, and reads nothing into the program.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p.cast::<i8>(), std::arch::x86_64::_MM_HINT_T0)
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Prefetches the cache lines of `len` bytes from `p`.
#[inline]
pub fn prefetch_bytes(p: *const u8, len: usize) {
    let first = p as usize & !63;
    let end = p as usize + len;
    for line in (first..end).step_by(64) {
        prefetch(line as *const u8);
    }
}
