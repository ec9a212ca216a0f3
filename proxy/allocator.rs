//! The global allocator: mimalloc, asked the way its fast paths expect.
//!
//! The `mimalloc` crate's allocator sends every request through
//! `mi_malloc_aligned`. In mimalloc 3, an aligned request for a block over
//! 1 KiB whose size is not a power of two takes the over-allocating slow
//! path even when the alignment is 8: the boxed request future, the write
//! and read buffers all did, several times per proxied request. Plain
//! `mi_malloc` already aligns every block to 16 bytes (to its size, below
//! that), so only larger alignments need the aligned calls.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment every mimalloc block of at least this size has.
const BLOCK_ALIGN: usize = 16;

pub struct MiMalloc;

/// Whether a block of `size` from plain `mi_malloc` is aligned enough.
fn plain(size: usize, align: usize) -> bool {
    align <= BLOCK_ALIGN && align <= size
}

// SAFETY (for each method): the calls keep GlobalAlloc's contract because
// mimalloc returns blocks of at least the size asked, aligned as `plain`
// says or as asked of the aligned calls, or null on failure; `mi_free` and
// `mi_realloc*` accept any block either kind of call returned.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe {
            if plain(layout.size(), layout.align()) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe {
            if plain(layout.size(), layout.align()) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe {
            if plain(new_size, layout.align()) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_aligned_as_asked() {
        for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for size in [1, 7, 8, 15, 16, 24, 100, 1000, 1500, 3000, 5000, 70_000] {
                if size < align && align > BLOCK_ALIGN {
                    continue;
                }
                let layout = Layout::from_size_align(size, align).expect("layout");
                // SAFETY: a non-zero size; the block is freed with the same layout.
                unsafe {
                    let p = MiMalloc.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    p.write_bytes(0xa5, size);
                    let q = MiMalloc.realloc(p, layout, size * 3);
                    assert_eq!(
                        q as usize % align,
                        0,
                        "realloc to {} align {align}",
                        size * 3
                    );
                    assert_eq!(*q.add(size - 1), 0xa5, "contents kept");
                    MiMalloc.dealloc(q, Layout::from_size_align(size * 3, align).expect("layout"));
                }
            }
        }
    }
}
