//! glibc malloc settings for training processes: keep freed memory for the next step.
//!
//! Every training step frees and allocates again the same large buffers (activations,
//! gradients, AdamW's temporaries; MiniLM's word-embedding gradient alone is 45 MiB). With
//! glibc's defaults, blocks above the adaptive mmap threshold (at most 32 MiB) are mapped
//! afresh for each allocation and the top of the heap is returned to the kernel when enough
//! of it is free: every step then faults its buffers' pages in again, zeroed by the kernel —
//! 16 % of full fine-tuning's CPU samples on SST-2 were in the kernel doing that (`perf`).
//! With every block up to 1 GiB served from the heap and the heap never trimmed, the pages
//! stay in the process: 0.85× the training time of full fine-tuning on short SST-2 batches
//! (docs/BENCHMARKS.md, "Allocator settings").
//!
//! Nothing measured changes: the counting allocator counts the bytes asked for, not the
//! pages the process holds, and the loss curve is the same to the bit. Memory freed after
//! the peak stays with the process until it exits.

/// Blocks up to this size come from the heap rather than their own mapping.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 1 << 30;

/// Applies the settings (see the module docs); `true` when the allocator accepted them,
/// `false` where the C library is not glibc (nothing to do there).
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` only sets allocator parameters; called with documented options
        // and in-range values, it cannot invalidate any allocation.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn large_buffers_come_from_the_heap_not_a_fresh_mapping() {
        assert!(super::keep_freed_memory());
        // SAFETY: `mallinfo2` only reads the allocator's statistics.
        let mapped = || unsafe { libc::mallinfo2() }.hblkhd;
        let before = mapped();
        // 8 MiB: far above glibc's initial 128 KiB threshold, so mapped under its defaults.
        let buffer = std::hint::black_box(vec![1u8; 8 << 20]);
        assert_eq!(
            mapped(),
            before,
            "an 8 MiB buffer was given its own mapping"
        );
        drop(buffer);
    }
}
