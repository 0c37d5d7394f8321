//! The CLI's global allocator: an arena in front of the system allocator.
//! A CLI run is one short process that builds a checkpoint's listing out of
//! tens of thousands of small allocations (pickle values, keys, shapes);
//! glibc's malloc spent a third of `inspect`'s instructions on them, and
//! faulting in its heap page by page most of the rest of the kernel's time.
//! Here a small allocation is a pointer bump through a chunk of one region
//! that asks the kernel for transparent huge pages (one fault per 2 MiB
//! instead of one per 4 KiB) past its first chunk, which has ordinary pages
//! so that a small run does not clear a whole huge page (and has them all
//! faulted in by one call, not one fault per page). Each thread bumps
//! through chunks of its own, so the common case touches no shared atomic.
//!
//! Memory that is touched costs more than the work done in it here: a 2 MiB
//! huge page takes ~0.25 ms to clear on this project's machine and a 4 KiB
//! fault ~1.5 µs, against ~1 ms for the whole parse of a ViT-H `.pt`'s
//! pickle. So freed blocks are reused rather than left behind: the newest
//! block, freed, steps the bump pointer back over it (and the newest block
//! grows in place), and any other freed block goes on its thread's list for
//! its size class, from which the next request that fits takes it. A
//! parser's temporaries (a text's bytes, a tuple's items, the old buffer of
//! a vector that doubled) then cost no new memory.
//!
//! Memory stays bounded: the arena is `ARENA_BYTES` of address space,
//! touched only as it fills; allocations larger than `LARGEST_IN_ARENA`
//! (read buffers, tensors, output files' chunks) and everything after the
//! arena is full go to the system allocator and are freed as usual.
//!
//! Only the binary uses it; the library (and the page's wasm) keeps the
//! default allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

/// Address space reserved for the arena.
const ARENA_BYTES: usize = 64 << 20;
/// Larger allocations skip the arena (they are few, and worth freeing). A
/// pickle's object table for a ViT-H state dict (~650 KB) still fits.
const LARGEST_IN_ARENA: usize = 1 << 20;
/// What a thread claims of the arena at a time to bump through.
const CHUNK: usize = 256 << 10;
/// Larger blocks are claimed from the arena directly, so a chunk's unused
/// tail is never more than this.
const LARGEST_FROM_CHUNK: usize = CHUNK / 8;
/// Transparent huge pages are 2 MiB on x86_64 and aarch64.
const HUGE_PAGE: usize = 2 << 20;
/// The arena's first bytes (the first thread's first chunk) are backed by
/// ordinary pages and the rest by huge pages: a run that allocates little
/// (`--version`, a usage error, a small file) faults in a few 4 KiB pages
/// instead of clearing a whole huge page (measured: `--version` 1.77 ->
/// 1.62 ms without huge pages), while a large listing still gets huge
/// pages past its first chunk.
const SMALL_PAGES: usize = CHUNK;
/// Freed blocks are kept by size class: class `k` holds blocks of at least
/// `SMALLEST_FREED << k` bytes, up to `LARGEST_IN_ARENA`.
const SMALLEST_FREED: usize = 8;
const SIZE_CLASSES: usize = 18;

const UNMAPPED: u8 = 0;
const MAPPING: u8 = 1;
const READY: u8 = 2;
const UNAVAILABLE: u8 = 3;

static STATE: AtomicU8 = AtomicU8::new(UNMAPPED);
static BASE: AtomicUsize = AtomicUsize::new(0);
/// Offset of the first byte of the arena no thread has claimed; it only
/// grows, so what lies past it is fresh from the kernel (zero).
static CLAIMED: AtomicUsize = AtomicUsize::new(0);
/// Set by `reuse_freed_memory`: nothing new is bumped or claimed.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// One thread's part of the arena.
struct Local {
    /// The chunk being bumped through: the next free address and its end
    /// (both 0 before the first chunk).
    next: Cell<usize>,
    end: Cell<usize>,
    /// Bytes of the chunk below this address may have been handed out
    /// before (and freed back over); bytes above it are zero.
    written: Cell<usize>,
    /// The first freed block of each size class (0: none); each block holds
    /// the address of the next in its first bytes.
    freed: [Cell<usize>; SIZE_CLASSES],
}

thread_local! {
    /// Const and without a destructor, so using it never allocates; a
    /// thread that ends leaves its chunk's tail and its freed blocks unused.
    static LOCAL: Local = const {
        Local {
            next: Cell::new(0),
            end: Cell::new(0),
            written: Cell::new(0),
            freed: [const { Cell::new(0) }; SIZE_CLASSES],
        }
    };
}

/// For `verify`: serve every later allocation the arena's freed blocks do
/// not cover from the system allocator, and keep its freed blocks for reuse.
/// The forward pass allocates and frees buffers once per operation
/// (matrices of a few MB, SGEMM's packing buffers of a few hundred KB), and
/// first touches of fresh memory are what cost: measured on a ViT-B-16
/// forward, the kernel clearing pages took a fifth of the time. The arena
/// keeps blocks only by power-of-two classes, so it is closed to new ones
/// (its blocks stay valid); and glibc by default unmaps blocks over its
/// mmap threshold and trims a large free heap top, so both thresholds are
/// raised. Memory stays bounded by the pass's own peak plus the trim
/// threshold.
pub fn reuse_freed_memory() {
    CLOSED.store(true, Ordering::Relaxed);
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters. 32 MiB is glibc's
    // largest mmap threshold.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}

pub struct CliAllocator;

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
            ARENA_BYTES + HUGE_PAGE + SMALL_PAGES,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        );
        if base == libc::MAP_FAILED {
            return None;
        }
        // The part after the small-page head starts on a huge-page
        // boundary, so the kernel can back it with them.
        let aligned = (base as usize + SMALL_PAGES).next_multiple_of(HUGE_PAGE);
        libc::madvise(
            (aligned - SMALL_PAGES) as *mut libc::c_void,
            SMALL_PAGES,
            libc::MADV_NOHUGEPAGE,
        );
        // And faulted in by one call rather than page by page: a fault
        // costs ~1.8 µs on this project's machine, and every run touches
        // most of the head (measured: `inspect --json` of a ViT-H `.pt`
        // 192 -> 126 faults, 2.22 -> 2.05 ms; `--version` 1.13 -> 1.09
        // ms). Kernels before 5.14 refuse the advice: the head is then
        // faulted in as it is touched, as before.
        libc::madvise(
            (aligned - SMALL_PAGES) as *mut libc::c_void,
            SMALL_PAGES,
            libc::MADV_POPULATE_WRITE,
        );
        libc::madvise(
            aligned as *mut libc::c_void,
            ARENA_BYTES - SMALL_PAGES,
            libc::MADV_HUGEPAGE,
        );
        Some(aligned - SMALL_PAGES)
    }
}

#[cfg(not(target_os = "linux"))]
fn map_arena() -> Option<usize> {
    None
}

/// Claim `size` bytes aligned to `align` of the arena for one thread: a
/// chunk, or a block too large to bump from one. Fresh memory (zero).
fn claim(size: usize, align: usize) -> Option<usize> {
    if CLOSED.load(Ordering::Relaxed) {
        return None;
    }
    let base = arena_base()?;
    let mut claimed = CLAIMED.load(Ordering::Relaxed);
    loop {
        let start = (base + claimed).next_multiple_of(align) - base;
        let end = start.checked_add(size)?;
        if end > ARENA_BYTES {
            return None;
        }
        match CLAIMED.compare_exchange_weak(claimed, end, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return Some(base + start),
            Err(current) => claimed = current,
        }
    }
}

/// The class whose every block holds `size` bytes (rounding up), if any.
fn class_for_request(size: usize) -> Option<usize> {
    let units = size.max(SMALLEST_FREED).div_ceil(SMALLEST_FREED);
    let class = units.next_power_of_two().trailing_zeros() as usize;
    (class < SIZE_CLASSES).then_some(class)
}

/// The class a freed block of `size` bytes belongs to (rounding down).
fn class_of_block(size: usize) -> Option<usize> {
    if size < SMALLEST_FREED {
        return None;
    }
    let class = (size / SMALLEST_FREED).ilog2() as usize;
    (class < SIZE_CLASSES).then_some(class)
}

impl Local {
    /// A block for `layout` and how many of its first bytes may be dirty
    /// (handed out before); `None` sends the request to the system.
    fn allocate(&self, layout: Layout) -> Option<(usize, usize)> {
        let size = layout.size();
        if size > LARGEST_IN_ARENA {
            return None;
        }
        if let Some(block) = self.take_freed(layout) {
            return Some((block, size));
        }
        if CLOSED.load(Ordering::Relaxed) {
            return None;
        }
        if let Some(block) = self.bump(layout) {
            return Some(block);
        }
        if size > LARGEST_FROM_CHUNK {
            return claim(size, layout.align()).map(|block| (block, 0));
        }
        // Cache-line aligned: a coarser alignment would skip bytes of a huge
        // page that is already cleared.
        let chunk = claim(CHUNK, 64)?;
        self.next.set(chunk);
        self.end.set(chunk + CHUNK);
        self.written.set(chunk);
        self.bump(layout)
    }

    /// A block from this thread's chunk, when it has room.
    fn bump(&self, layout: Layout) -> Option<(usize, usize)> {
        let next = self.next.get();
        if next == 0 {
            return None;
        }
        let start = next.next_multiple_of(layout.align());
        let end = start.checked_add(layout.size())?;
        if end > self.end.get() {
            return None;
        }
        self.next.set(end);
        let written = self.written.get();
        self.written.set(written.max(end));
        Some((start, written.min(end).saturating_sub(start)))
    }

    /// A freed block that holds `layout`, taken off this thread's lists.
    fn take_freed(&self, layout: Layout) -> Option<usize> {
        let class = class_for_request(layout.size())?;
        let head = self.freed[class].get();
        if head == 0 || !head.is_multiple_of(layout.align()) {
            return None;
        }
        // SAFETY: `head` is a freed arena block of at least SMALLEST_FREED
        // bytes whose first bytes `release` wrote.
        let next = unsafe { (head as *const usize).read_unaligned() };
        self.freed[class].set(next);
        Some(head)
    }

    /// Give back an arena block: step the bump pointer back over it when it
    /// is the newest, else file it by size class (a block too small to hold
    /// a link stays unused).
    fn release(&self, block: usize, size: usize) {
        if block + size == self.next.get() {
            self.next.set(block);
            return;
        }
        if let Some(class) = class_of_block(size) {
            // SAFETY: the block is the caller's to give up and at least
            // SMALLEST_FREED bytes long.
            unsafe { (block as *mut usize).write_unaligned(self.freed[class].get()) };
            self.freed[class].set(block);
        }
    }

    /// Grow the newest block in place; false when it is not the newest or
    /// the chunk has no room.
    fn grow(&self, block: usize, size: usize, new_size: usize) -> bool {
        if block + size != self.next.get() {
            return false;
        }
        match block.checked_add(new_size) {
            Some(end) if end <= self.end.get() => {
                self.next.set(end);
                self.written.set(self.written.get().max(end));
                true
            }
            _ => false,
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
// returned to it) or a range of the arena that no live block overlaps: the
// arena is split into disjoint claims, each thread bumps only through its
// own chunk, and a block is bumped over again or taken off a free list only
// after it was given back.
unsafe impl GlobalAlloc for CliAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match LOCAL.try_with(|local| local.allocate(layout)) {
            Ok(Some((block, _))) => block as *mut u8,
            // SAFETY: the caller's layout contract passes through.
            _ => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match LOCAL.try_with(|local| local.allocate(layout)) {
            Ok(Some((block, dirty))) => {
                // Bytes never handed out are fresh from the kernel, so
                // zero; only the part that was needs clearing.
                // SAFETY: the block is `layout.size()` bytes, and `dirty`
                // is at most that.
                unsafe { std::ptr::write_bytes(block as *mut u8, 0, dirty) };
                block as *mut u8
            }
            // SAFETY: as above.
            _ => unsafe { System.alloc_zeroed(layout) },
        }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        if in_arena(pointer) {
            // A thread that is ending leaves the block unused.
            let _ = LOCAL.try_with(|local| local.release(pointer as usize, layout.size()));
        } else {
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
        let grown = new_size <= LARGEST_IN_ARENA
            && LOCAL
                .try_with(|local| local.grow(pointer as usize, layout.size(), new_size))
                .unwrap_or(false);
        if grown {
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
            // `layout.size()` bytes long; the old one is then given up.
            unsafe {
                std::ptr::copy_nonoverlapping(pointer, moved, layout.size());
                self.dealloc(pointer, layout);
            }
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

    /// Whether the `len` bytes at `block` are all `byte`.
    ///
    /// # Safety
    /// `block` points at `len` readable bytes.
    unsafe fn all_bytes(block: *const u8, len: usize, byte: u8) -> bool {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts(block, len) }
            .iter()
            .all(|b| *b == byte)
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
        assert!(unsafe { all_bytes(a, 100, 0xab) });
    }

    /// The VMA flags (`/proc/self/smaps`) of the mapping that starts at
    /// `address`.
    #[cfg(target_os = "linux")]
    fn vma_flags_at(address: usize) -> Option<String> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut starts_here = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ') {
                if let Some((start, _)) = range.split_once('-') {
                    if let Ok(start) = usize::from_str_radix(start, 16) {
                        starts_here = start == address;
                        continue;
                    }
                }
            }
            if starts_here {
                if let Some(flags) = line.strip_prefix("VmFlags:") {
                    return Some(flags.trim().to_string());
                }
            }
        }
        None
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn the_first_chunk_has_small_pages_and_the_rest_huge_ones() {
        let Some(base) = arena_base() else {
            return;
        };
        let huge_start = base + SMALL_PAGES;
        assert_eq!(huge_start % HUGE_PAGE, 0, "huge part is not 2 MiB aligned");
        let head = vma_flags_at(base).expect("the head is its own mapping");
        let rest = vma_flags_at(huge_start).expect("the rest is its own mapping");
        assert!(head.split(' ').any(|f| f == "nh"), "head flags: {head}");
        assert!(rest.split(' ').any(|f| f == "hg"), "rest flags: {rest}");
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
            // Another block after it, so growing has to move it.
            let after = allocate(layout);
            let grown = CliAllocator.realloc(block, layout, 4096);
            assert_ne!(grown, block, "a block that is not the newest moves");
            CliAllocator.dealloc(after, layout);
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
            assert!(all_bytes(zeroed, 1000, 0));
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

    #[test]
    fn size_classes_hold_what_they_promise() {
        for size in [1, 7, 8, 9, 16, 100, 4096, 4097, LARGEST_IN_ARENA] {
            let class = class_for_request(size).expect("class");
            // Every block filed under that class holds the request.
            assert!(SMALLEST_FREED << class >= size, "{size}");
        }
        for size in [8, 9, 15, 16, 1000, LARGEST_IN_ARENA] {
            let class = class_of_block(size).expect("class");
            // A block is filed under a class it fills.
            assert!(SMALLEST_FREED << class <= size, "{size}");
        }
        assert_eq!(class_of_block(7), None, "too small to hold a link");
        assert_eq!(class_for_request(LARGEST_IN_ARENA * 2), None);
    }

    #[test]
    fn the_newest_block_is_reused_when_freed_and_grows_in_place() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let layout = Layout::from_size_align(256, 8).expect("layout");
        let older = allocate(layout);
        let newest = allocate(layout);
        // SAFETY: each block is 256 bytes and live until freed below; the
        // reads stay within the sizes the blocks were given.
        unsafe {
            std::ptr::write_bytes(newest, 0x5a, 256);
            CliAllocator.dealloc(newest, layout);
            let again = allocate(layout);
            assert_eq!(again, newest, "the freed newest block is handed out again");
            // Growing the newest block keeps its address and contents.
            let grown = CliAllocator.realloc(again, layout, 8192);
            assert_eq!(grown, again);
            assert!(all_bytes(grown, 256, 0x5a));
            std::ptr::write_bytes(grown, 0x77, 8192);
            let grown_layout = Layout::from_size_align(8192, 8).expect("layout");
            CliAllocator.dealloc(grown, grown_layout);
            // A zeroed block over bytes that were written and freed is
            // still all zero, fresh bytes past them included.
            let zeroed_layout = Layout::from_size_align(16384, 8).expect("layout");
            let zeroed = CliAllocator.alloc_zeroed(zeroed_layout);
            assert_eq!(zeroed, newest);
            assert!(all_bytes(zeroed, 16384, 0));
            // A freed block that is not the newest is handed out again to
            // the next request it holds, and cleared when that asks for
            // zeroed memory.
            std::ptr::write_bytes(older, 0x33, 256);
            CliAllocator.dealloc(older, layout);
            let smaller = Layout::from_size_align(200, 8).expect("layout");
            let reused = CliAllocator.alloc_zeroed(smaller);
            assert_eq!(reused, older);
            assert!(all_bytes(reused, 200, 0));
            // One too large for it comes from elsewhere.
            CliAllocator.dealloc(reused, smaller);
            let larger = Layout::from_size_align(300, 8).expect("layout");
            let elsewhere = allocate(larger);
            assert_ne!(elsewhere, older);
            CliAllocator.dealloc(elsewhere, larger);
            CliAllocator.dealloc(zeroed, zeroed_layout);
        }
    }
}
