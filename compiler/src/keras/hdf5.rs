//! The one path by which the front-end touches HDF5 data from a file. `hdf5-reader` checks what
//! it reads, but the bytes come from anywhere: a panic inside it on malformed data must become
//! an error naming what was being read, never take the process down.

use std::panic::{AssertUnwindSafe, catch_unwind};

/// The HDF5 reader panicked on malformed data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Panicked;

/// Run one HDF5 access (opening a file, a group, an attribute or a dataset, or reading one);
/// `Err(Panicked)` when the reader panicked, else what it returned.
pub fn guard<T>(access: impl FnOnce() -> T) -> Result<T, Panicked> {
    catch_unwind(AssertUnwindSafe(access)).map_err(|_| Panicked)
}
