//! Raw access to the store's allocator, for benchmarks and fuzz targets.

use super::*;

impl Store {
    /// Allocates `size` bytes from the store's allocator and returns their
    /// offset. Exposed for benchmarks and fuzzing; not part of the stable
    /// API.
    #[doc(hidden)]
    pub fn alloc_raw(&self, size: u64) -> Result<u64> {
        self.with_arena(|a| a.alloc(size))
    }

    /// Frees an offset returned by [`Store::alloc_raw`].
    ///
    /// # Safety
    ///
    /// `offset` was returned by [`Store::alloc_raw`] on this store (in any
    /// process) and has not been freed since, and nothing — no handle, no
    /// object, no container — refers to its memory: freeing memory that an
    /// object or a live handle uses lets the allocator hand it out again
    /// while it is read as that object.
    #[doc(hidden)]
    pub unsafe fn free_raw(&self, offset: u64) -> Result<()> {
        self.with_arena(|a| a.free(offset))
    }
}
