//! The CLI's global allocator: a bump arena in front of the system
//! allocator. A CLI run is one short process that builds a checkpoint's
//! listing out of tens of thousands of small allocations (pickle values,
//! keys, shapes) and frees them all at the end; glibc's malloc spent a third
//! of `inspect`'s instructions on that, and faulting in its heap page by
//! page most of the rest of the kernel's time. Here a small allocation is a
//! pointer bump in one region that asks the kernel for transparent huge
//! pages (one fault per 2 MiB instead of one per 4 KiB), and freeing it is a
//! no-op: its bytes come back when the process exits.
//!
//! Memory stays bounded: the arena is `ARENA_BYTES` of address space,
//! touched only as it fills; allocations larger than `LARGEST_IN_ARENA`
//! (read buffers, tensors, output files' chunks) and everything after the
//! arena is full go to the system allocator and are freed as usual. A long
//! command that churns small allocations (verify's forward pass) fills the
//! arena once and then runs on the system allocator.
//!
//! Only the binary uses it; the library (and the page's wasm) keeps the
//! default allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// Address space reserved for the arena.
const ARENA_BYTES: usize = 64 << 20;
/// Larger allocations skip the arena (they are few, and worth freeing).
const LARGEST_IN_ARENA: usize = 256 << 10;
/// Transparent huge pages are 2 MiB on x86_64 and aarch64.
const HUGE_PAGE: usize = 2 << 20;

const UNMAPPED: u8 = 0;
const MAPPING: u8 = 1;
const READY: u8 = 2;
const UNAVAILABLE: u8 = 3;

/// For `verify`: serve every later allocation from the system allocator and
/// keep its freed blocks for reuse. The forward pass allocates and frees
/// buffers once per operation (matrices of a few MB, SGEMM's packing
/// buffers of a few hundred KB), and first touches of fresh memory are what
/// cost: measured on a ViT-B-16 forward, the kernel clearing pages took a
/// fifth of the time. The arena never reuses a block, so it is closed to new
/// ones (its blocks stay valid); and glibc by default unmaps blocks over its
/// mmap threshold and trims a large free heap top, so both thresholds are
/// raised. Memory stays bounded by the pass's own peak plus the trim
/// threshold.
pub fn reuse_freed_memory() {
    NEXT.store(ARENA_BYTES, Ordering::Relaxed);
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters. 32 MiB is glibc's
    // largest mmap threshold.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}

pub struct CliAllocator;

static STATE: AtomicU8 = AtomicU8::new(UNMAPPED);
static BASE: AtomicUsize = AtomicUsize::new(0);
/// Offset of the first free byte in the arena.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The arena's base address, mapping it on first use; `None` when it could
/// not be mapped (then everything goes to the system allocator).
fn arena_base() -> Option<usize> {
    loop {
        match STATE.load(Ordering::Acquire) {
            READY => return Some(BASE.load(Ordering::Relaxed)),
            UNAVAILABLE => return None,
            UNMAPPED => {
                if STATE
                    .compare_exchange(UNMAPPED, MAPPING, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    let mapped = map_arena();
                    if let Some(base) = mapped {
                        BASE.store(base, Ordering::Relaxed);
                    }
                    let state = if mapped.is_some() { READY } else { UNAVAILABLE };
                    STATE.store(state, Ordering::Release);
                }
            }
            _ => std::hint::spin_loop(),
        }
    }
}

#[cfg(target_os = "linux")]
fn map_arena() -> Option<usize> {
    // SAFETY: an anonymous private mapping with no address hint touches no
    // existing memory; the result is checked before use. madvise only
    // changes how the kernel backs the new range (its failure is harmless).
    unsafe {
        let base = libc::mmap(
            std::ptr::null_mut(),
            ARENA_BYTES + HUGE_PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        );
        if base == libc::MAP_FAILED {
            return None;
        }
        // Start on a huge-page boundary so the kernel can back it with them.
        let aligned = (base as usize).next_multiple_of(HUGE_PAGE);
        libc::madvise(
            aligned as *mut libc::c_void,
            ARENA_BYTES,
            libc::MADV_HUGEPAGE,
        );
        Some(aligned)
    }
}

#[cfg(not(target_os = "linux"))]
fn map_arena() -> Option<usize> {
    None
}

/// A block of the arena, or `None` when it does not fit.
fn bump(layout: Layout) -> Option<*mut u8> {
    if layout.size() > LARGEST_IN_ARENA {
        return None;
    }
    let base = arena_base()?;
    let mut next = NEXT.load(Ordering::Relaxed);
    loop {
        let start = (base + next).next_multiple_of(layout.align()) - base;
        let end = start.checked_add(layout.size())?;
        if end > ARENA_BYTES {
            return None;
        }
        match NEXT.compare_exchange_weak(next, end, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return Some((base + start) as *mut u8),
            Err(current) => next = current,
        }
    }
}

fn in_arena(pointer: *mut u8) -> bool {
    if STATE.load(Ordering::Acquire) != READY {
        return false;
    }
    let base = BASE.load(Ordering::Relaxed);
    (base..base + ARENA_BYTES).contains(&(pointer as usize))
}

// SAFETY: every block handed out is either the system allocator's (and
// returned to it) or a fresh, aligned, non-overlapping range of the arena
// (bump only moves forward, atomically), which is never reused.
unsafe impl GlobalAlloc for CliAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match bump(layout) {
            Some(pointer) => pointer,
            // SAFETY: the caller's layout contract passes through.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // Arena memory is fresh from the kernel (zero) and never reused.
        match bump(layout) {
            Some(pointer) => pointer,
            // SAFETY: as above.
            None => unsafe { System.alloc_zeroed(layout) },
        }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        if !in_arena(pointer) {
            // SAFETY: not an arena block, so the system allocator's.
            unsafe { System.dealloc(pointer, layout) }
        }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !in_arena(pointer) {
            // SAFETY: the system allocator's block, with the caller's contract.
            return unsafe { System.realloc(pointer, layout, new_size) };
        }
        if new_size <= layout.size() {
            return pointer;
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        // SAFETY: `new_layout` is valid and non-zero (it is larger than a
        // valid layout's size).
        let moved = unsafe { self.alloc(new_layout) };
        if !moved.is_null() {
            // SAFETY: both blocks are live, distinct, and at least
            // `layout.size()` bytes long.
            unsafe { std::ptr::copy_nonoverlapping(pointer, moved, layout.size()) };
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Allocate through the arena allocator itself (the test binary's
    /// global allocator is the system's).
    fn allocate(layout: Layout) -> *mut u8 {
        // SAFETY: every layout below has a non-zero size.
        let pointer = unsafe { CliAllocator.alloc(layout) };
        assert!(!pointer.is_null());
        assert_eq!(pointer as usize % layout.align(), 0, "{layout:?}");
        pointer
    }

    #[test]
    fn small_blocks_come_from_the_arena_large_ones_from_the_system() {
        let small = Layout::from_size_align(100, 16).expect("layout");
        let large = Layout::from_size_align(LARGEST_IN_ARENA + 1, 8).expect("layout");
        let a = allocate(small);
        let b = allocate(small);
        let big = allocate(large);
        if cfg!(target_os = "linux") {
            assert!(in_arena(a) && in_arena(b));
            assert!(!in_arena(big));
        }
        assert!(
            a != b && (b as usize).abs_diff(a as usize) >= 100,
            "blocks overlap"
        );
        // SAFETY: each pointer came from `allocate` with that layout.
        unsafe {
            std::ptr::write_bytes(a, 0xab, 100);
            std::ptr::write_bytes(big, 0xcd, large.size());
            CliAllocator.dealloc(big, large);
            CliAllocator.dealloc(b, small);
        }
        // SAFETY: `a` is still live and 100 bytes long.
        assert!(unsafe { std::slice::from_raw_parts(a, 100) }
            .iter()
            .all(|byte| *byte == 0xab));
    }

    #[test]
    fn realloc_keeps_the_contents_and_zeroed_blocks_are_zero() {
        let layout = Layout::from_size_align(64, 8).expect("layout");
        let block = allocate(layout);
        // SAFETY: `block` is 64 bytes; realloc is given its layout; every
        // read stays within the sizes the blocks were given.
        unsafe {
            for i in 0..64 {
                *block.add(i) = i as u8;
            }
            let same = CliAllocator.realloc(block, layout, 32);
            assert_eq!(same, block, "shrinking stays in place");
            let grown = CliAllocator.realloc(block, layout, 4096);
            assert!(!grown.is_null());
            let contents = std::slice::from_raw_parts(grown, 64);
            assert!(contents
                .iter()
                .enumerate()
                .all(|(i, byte)| *byte == i as u8));
            // Grown past the arena's limit: the block moves to the system
            // allocator with its contents.
            let grown_layout = Layout::from_size_align(4096, 8).expect("layout");
            let moved = CliAllocator.realloc(grown, grown_layout, LARGEST_IN_ARENA * 2);
            assert!(!in_arena(moved));
            assert!(std::slice::from_raw_parts(moved, 64)
                .iter()
                .enumerate()
                .all(|(i, byte)| *byte == i as u8));
            let moved_layout = Layout::from_size_align(LARGEST_IN_ARENA * 2, 8).expect("layout");
            CliAllocator.dealloc(moved, moved_layout);
            let zeroed_layout = Layout::from_size_align(1000, 8).expect("layout");
            let zeroed = CliAllocator.alloc_zeroed(zeroed_layout);
            assert!(std::slice::from_raw_parts(zeroed, 1000)
                .iter()
                .all(|byte| *byte == 0));
        }
    }

    #[test]
    fn many_threads_get_disjoint_blocks() {
        let layout = Layout::from_size_align(24, 8).expect("layout");
        let blocks: Vec<Vec<usize>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| (0..1000).map(|_| allocate(layout) as usize).collect()))
                .collect();
            workers
                .into_iter()
                .map(|worker| worker.join().expect("thread"))
                .collect()
        });
        let mut all: Vec<usize> = blocks.into_iter().flatten().collect();
        all.sort_unstable();
        assert!(all.windows(2).all(|pair| pair[1] - pair[0] >= 24));
    }
}
