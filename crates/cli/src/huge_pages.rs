//! The binary's allocator: the system's, plus a hint that large blocks be
//! backed by transparent huge pages (Linux, where THP is in `madvise` mode,
//! as on Debian). A simulation at 10^6 nodes reads a random node's slot, and
//! often a random row of a protocol's per-peer table, at every event; with
//! 4 KiB pages each of those reads also misses the TLB. The hint is given
//! before the block is first touched, so the kernel can fault huge pages in
//! directly. It changes how memory is backed, never its contents.

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks this large get the hint (smaller ones would round up wastefully).
const LARGE: usize = 4 << 20;
const HUGE_PAGE: usize = 2 << 20;

pub struct HugePages;

fn advise(ptr: *mut u8, size: usize) {
    #[cfg(target_os = "linux")]
    if !ptr.is_null() && size >= LARGE {
        let start = (ptr as usize).next_multiple_of(HUGE_PAGE);
        let end = (ptr as usize + size) / HUGE_PAGE * HUGE_PAGE;
        if end > start {
            // SAFETY: the range lies inside the block just allocated;
            // MADV_HUGEPAGE neither reads nor writes it.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, size);
}

// SAFETY: every call is forwarded to `System` unchanged; `advise` only adds
// a hint about the block `System` returned.
unsafe impl GlobalAlloc for HugePages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        advise(p, layout.size());
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        advise(p, layout.size());
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        advise(p, new_size);
        p
    }
}
