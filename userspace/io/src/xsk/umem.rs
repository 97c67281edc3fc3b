//! The UMEM area: one anonymous mapping split into equal frames.

use std::ptr::NonNull;

const HUGE_PAGE: usize = 2 << 20;

/// An anonymous, pre-faulted mapping; unmapped on drop.
pub(crate) struct UmemArea {
    ptr: NonNull<u8>,
    len: usize,
    huge: bool,
}

impl UmemArea {
    /// Maps `len` bytes. With `hugepages`, tries 2 MiB pages first (fewer TLB
    /// misses) and falls back to normal pages, logging why.
    pub(crate) fn new(len: usize, hugepages: bool) -> Result<Self, i32> {
        if hugepages {
            let huge_len = len.div_ceil(HUGE_PAGE) * HUGE_PAGE;
            match Self::map(huge_len, libc::MAP_HUGETLB) {
                Ok(p) => {
                    return Ok(Self {
                        ptr: p,
                        len: huge_len,
                        huge: true,
                    })
                }
                Err(e) => tracing::warn!(
                    "UMEM: no huge pages for {huge_len} bytes ({}); using normal pages \
                     (reserve some with vm.nr_hugepages)",
                    crate::sys::errno_text(e, None)
                ),
            }
        }
        let ptr = Self::map(len, 0)?;
        Ok(Self {
            ptr,
            len,
            huge: false,
        })
    }

    fn map(len: usize, extra: i32) -> Result<NonNull<u8>, i32> {
        // SAFETY: a fresh private anonymous mapping.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE | extra,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(crate::sys::last_errno());
        }
        NonNull::new(p.cast::<u8>()).ok_or(libc::ENOMEM)
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_huge(&self) -> bool {
        self.huge
    }
}

impl Drop for UmemArea {
    fn drop(&mut self) {
        // SAFETY: we own the mapping; the socket that registered it is closed
        // before (field order in `XskSocket`), and the kernel holds its own
        // page references until it has released the UMEM.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}
