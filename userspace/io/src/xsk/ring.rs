//! The four single-producer / single-consumer rings shared with the kernel.
//!
//! Each ring is a power-of-two array of descriptors plus a producer and a
//! consumer index (free-running u32, wrapping) in memory mapped from the
//! socket. The side that writes descriptors publishes them with a Release
//! store of the producer index; the reading side loads it with Acquire before
//! reading descriptors, and gives slots back with a Release store of the
//! consumer index (so its reads complete before the producer may overwrite).
//!
//! We keep cached copies of both indices so that the shared cache lines are
//! touched only once per batch: `cached_prod`/`cached_cons` are our own view,
//! refreshed from the kernel's index only when the cached view says the ring
//! is full (producer side) or empty (consumer side).

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// One mmap'd ring region; unmapped on drop.
pub(crate) struct RingMap {
    ptr: NonNull<u8>,
    len: usize,
}

impl RingMap {
    /// Maps `len` bytes of the socket `fd` at page offset `pgoff`.
    pub(crate) fn map(fd: i32, len: usize, pgoff: u64) -> Result<Self, i32> {
        // SAFETY: a fresh shared mapping of the socket's ring; the kernel
        // checks offset and length.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(crate::sys::last_errno());
        }
        match NonNull::new(p.cast::<u8>()) {
            Some(ptr) => Ok(Self { ptr, len }),
            None => Err(libc::ENOMEM),
        }
    }
}

impl Drop for RingMap {
    fn drop(&mut self) {
        // SAFETY: we own this mapping and nothing refers to it any more (the
        // ring holding raw pointers into it is being dropped with it).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// Pointers into a mapped ring, from the kernel's `xdp_ring_offset`.
struct Raw<T> {
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    desc: *mut T,
    mask: u32,
    size: u32,
    _map: RingMap,
}

impl<T> Raw<T> {
    /// # Safety
    /// `off` must be the kernel's offsets for this ring and `map` the whole
    /// mapping of a ring of `size` entries of `T`.
    unsafe fn new(map: RingMap, off: &libc::xdp_ring_offset, size: u32) -> Self {
        let base = map.ptr.as_ptr();
        // SAFETY: offsets come from XDP_MMAP_OFFSETS and lie inside the
        // mapping, which the caller sized as `off.desc + size * sizeof(T)`.
        unsafe {
            Self {
                producer: base.add(off.producer as usize).cast(),
                consumer: base.add(off.consumer as usize).cast(),
                flags: base.add(off.flags as usize).cast(),
                desc: base.add(off.desc as usize).cast(),
                mask: size - 1,
                size,
                _map: map,
            }
        }
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: aligned u32 inside the live mapping, only accessed atomically.
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as above.
        unsafe { &*self.consumer }
    }

    fn needs_wakeup(&self) -> bool {
        // SAFETY: as above. Relaxed: the flag is a hint re-checked every flush.
        unsafe { (*self.flags).load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0 }
    }
}

/// A ring we produce into (fill, tx).
pub(crate) struct ProdRing<T: Copy> {
    raw: Raw<T>,
    /// Next slot we will write (may be ahead of the published producer).
    cached_prod: u32,
    /// Last consumer index read from the kernel.
    cached_cons: u32,
    /// Producer index last stored to the shared ring.
    published: u32,
}

impl<T: Copy> ProdRing<T> {
    /// # Safety
    /// As [`Raw::new`].
    pub(crate) unsafe fn new(map: RingMap, off: &libc::xdp_ring_offset, size: u32) -> Self {
        // SAFETY: forwarded contract.
        let raw = unsafe { Raw::new(map, off, size) };
        let prod = raw.producer().load(Ordering::Relaxed);
        let cons = raw.consumer().load(Ordering::Acquire);
        Self {
            raw,
            cached_prod: prod,
            cached_cons: cons,
            published: prod,
        }
    }

    /// Free slots, refreshing the kernel's consumer index only if fewer than
    /// `want` are free in our cached view.
    pub(crate) fn free(&mut self, want: u32) -> u32 {
        let used = self.cached_prod.wrapping_sub(self.cached_cons);
        let free = self.raw.size - used;
        if free >= want {
            return free;
        }
        self.cached_cons = self.raw.consumer().load(Ordering::Acquire);
        self.raw.size - self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Writes one descriptor in the next slot. The caller must have seen
    /// `free() >= 1` for it (checked again here: returns false when full).
    pub(crate) fn push(&mut self, v: T) -> bool {
        if self.cached_prod.wrapping_sub(self.cached_cons) >= self.raw.size && self.free(1) == 0 {
            return false;
        }
        let ix = (self.cached_prod & self.raw.mask) as usize;
        // SAFETY: `ix < size`; the slot is ours until published, as the
        // consumer index shows it free.
        unsafe { self.raw.desc.add(ix).write(v) };
        self.cached_prod = self.cached_prod.wrapping_add(1);
        true
    }

    /// Publishes everything pushed since the last submit (one store).
    pub(crate) fn submit(&mut self) {
        if self.published != self.cached_prod {
            self.raw
                .producer()
                .store(self.cached_prod, Ordering::Release);
            self.published = self.cached_prod;
        }
    }

    /// Published descriptors the kernel has not consumed yet.
    pub(crate) fn kernel_pending(&self) -> u32 {
        self.published
            .wrapping_sub(self.raw.consumer().load(Ordering::Acquire))
    }

    pub(crate) fn needs_wakeup(&self) -> bool {
        self.raw.needs_wakeup()
    }
}

/// A ring we consume from (rx, completion).
pub(crate) struct ConsRing<T: Copy> {
    raw: Raw<T>,
    /// Last producer index read from the kernel.
    cached_prod: u32,
    /// Next slot we will read.
    cached_cons: u32,
}

impl<T: Copy> ConsRing<T> {
    /// # Safety
    /// As [`Raw::new`].
    pub(crate) unsafe fn new(map: RingMap, off: &libc::xdp_ring_offset, size: u32) -> Self {
        // SAFETY: forwarded contract.
        let raw = unsafe { Raw::new(map, off, size) };
        let cons = raw.consumer().load(Ordering::Relaxed);
        let prod = raw.producer().load(Ordering::Acquire);
        Self {
            raw,
            cached_prod: prod,
            cached_cons: cons,
        }
    }

    /// Up to `max` entries ready to read, refreshing the producer index only
    /// when the cached view has fewer than `max`.
    pub(crate) fn available(&mut self, max: u32) -> u32 {
        let mut n = self.cached_prod.wrapping_sub(self.cached_cons);
        if n < max {
            self.cached_prod = self.raw.producer().load(Ordering::Acquire);
            n = self.cached_prod.wrapping_sub(self.cached_cons);
        }
        // The kernel never produces more than `size` ahead; clamp anyway so a
        // corrupted index cannot make us read stale slots as new.
        n.min(max).min(self.raw.size)
    }

    /// The `i`-th available entry (`i < available()`).
    pub(crate) fn get(&self, i: u32) -> T {
        let ix = (self.cached_cons.wrapping_add(i) & self.raw.mask) as usize;
        // SAFETY: `ix < size`; the producer index (Acquire) covers this slot.
        unsafe { self.raw.desc.add(ix).read() }
    }

    /// Gives `n` read entries back to the kernel (one store).
    pub(crate) fn release(&mut self, n: u32) {
        if n == 0 {
            return;
        }
        self.cached_cons = self.cached_cons.wrapping_add(n);
        self.raw
            .consumer()
            .store(self.cached_cons, Ordering::Release);
    }
}
