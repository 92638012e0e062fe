//! The binaries' allocator: mimalloc, asked as C's `malloc` is asked wherever `malloc`'s own
//! alignment is enough.
//!
//! mimalloc rather than glibc's malloc: a `GET /orders/{id}` allocates over a hundred times,
//! and glibc's malloc and free took 18% of its instructions; with mimalloc, callgrind counted
//! 8 to 11% fewer instructions a request in either service.
//!
//! Not the mimalloc crate's own `MiMalloc`, which asks `mi_malloc_aligned` for every
//! allocation: mimalloc 3 serves an aligned request above 1 KiB whose size class is not a
//! power of two by over-allocating and aligning by hand, even for an alignment of 8. An order
//! met that path about forty times (boxed futures, header maps, buffers), at about
//! 250 instructions each.

use std::{
    alloc::{GlobalAlloc, Layout},
    ffi::c_void,
};

use libmimalloc_sys as mi;

/// The alignment of every block of at least this size that `mi_malloc` answers: mimalloc's
/// `MI_MAX_ALIGN_SIZE`, C's `max_align_t`. A smaller block is aligned to its size class, which
/// is at least its size.
const MALLOC_ALIGN: usize = 16;

/// mimalloc as the global allocator.
pub struct Mimalloc;

/// Whether `mi_malloc` of `size` bytes is aligned to `align`, as std's `System` allocator
/// decides for `malloc`.
fn malloc_aligns(align: usize, size: usize) -> bool {
    align <= MALLOC_ALIGN && align <= size
}

// SAFETY: every block comes from mimalloc, aligned as its layout asks: by `mi_malloc`,
// `mi_zalloc` and `mi_realloc` only where `malloc_aligns` holds, otherwise by their aligned
// forms; every block is given back to `mi_free`, which takes blocks of either kind.
unsafe impl GlobalAlloc for Mimalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: mimalloc's allocation functions take any size and power-of-two alignment.
        unsafe {
            if malloc_aligns(layout.align(), layout.size()) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        unsafe {
            if malloc_aligns(layout.align(), layout.size()) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` was answered by this allocator, so by mimalloc.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was answered by this allocator, so by mimalloc; the new block is
        // aligned as `layout` asks, by the same rule as `alloc`.
        unsafe {
            if malloc_aligns(layout.align(), new_size) {
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

    const SIZES: [usize; 10] = [1, 7, 8, 9, 24, 1000, 1500, 5000, 70_000, 3 << 20];
    const ALIGNS: [usize; 8] = [1, 2, 4, 8, 16, 32, 64, 4096];

    fn aligned(ptr: *mut u8, align: usize) -> bool {
        !ptr.is_null() && (ptr as usize).is_multiple_of(align)
    }

    #[test]
    fn every_block_is_aligned_as_asked_and_keeps_its_contents_as_it_grows_and_shrinks() {
        let allocator = Mimalloc;
        for size in SIZES {
            for align in ALIGNS {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero sizes and power-of-two alignments; each block is written
                // and read within its size, and freed once, with the layout it has then.
                unsafe {
                    let mut block = allocator.alloc(layout);
                    assert!(aligned(block, align), "{size} bytes at {align}");
                    block.write_bytes(0x5a, size);
                    let mut current = layout;
                    for new_size in [size * 3, size / 2 + 1] {
                        block = allocator.realloc(block, current, new_size);
                        assert!(
                            aligned(block, align),
                            "{size} to {new_size} bytes at {align}"
                        );
                        let kept = current.size().min(new_size);
                        let contents = std::slice::from_raw_parts(block, kept);
                        assert!(contents.iter().all(|&b| b == 0x5a), "{size} to {new_size}");
                        block.write_bytes(0x5a, new_size);
                        current = Layout::from_size_align(new_size, align).unwrap();
                    }
                    allocator.dealloc(block, current);

                    let zeroed = allocator.alloc_zeroed(layout);
                    assert!(aligned(zeroed, align), "{size} zeroed bytes at {align}");
                    let contents = std::slice::from_raw_parts(zeroed, size);
                    assert!(contents.iter().all(|&b| b == 0), "{size} zeroed bytes");
                    allocator.dealloc(zeroed, layout);
                }
            }
        }
    }
}
