//! Shared code of shmstore's fuzz targets: the zoo of `layout_check`, the
//! objects the seed stores and `segment_open` use, the structure-aware
//! mutations of segment images, and the operation sequences of `arena_ops`
//! with their model.
#![cfg_attr(fuzzing, feature(cfg_sanitize))]

#[cfg(fuzzing)]
mod asan;
pub mod image;
pub mod objects;
pub mod ops;
pub mod zoo;
