//! `#[derive(ShmSafe)]` for [shmstore](https://docs.rs/shmstore).
//!
//! This crate is re-exported by `shmstore` as `shmstore::ShmSafe` (the
//! derive and the trait share the name); depend on `shmstore`, not on this
//! crate. See [`macro@ShmSafe`] for what the derive accepts and generates.
//!
//! The crate is organised as parse → check → generate:
//!
//! - `repr` folds `#[repr(...)]` hints into a representation that can only
//!   hold accepted combinations, `attr` parses `#[shm(...)]`;
//! - `check` holds one `check_*` function per rule, each reporting every
//!   violation with a span (errors are collected, never `panic!`ed);
//! - `codegen` emits the impl, only for input that passed every check.

mod attr;
mod check;
mod codegen;
mod errors;
mod expand;
mod repr;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

/// Derives `shmstore::ShmSafe`: marks a type whose bytes mean the same thing
/// in every process that maps them, and generates its compile-time layout,
/// its check of raw bytes, its in-place initialisation and its trace.
///
/// # Accepted input
///
/// - Structs (named, tuple or unit) with `#[repr(C)]` (optionally with
///   `align(N)`) or `#[repr(transparent)]`, whose fields are all `ShmSafe`.
///   Type parameters get a `T: ShmSafe` bound, and every field a
///   `FieldType: ShmSafe` bound, so a field of a wrong type is reported at
///   the field.
/// - Fieldless enums with an explicit fixed-width integer repr:
///   `#[repr(u8)]`, `u16`, `u32`, `u64`, `i8`, `i16`, `i32` or `i64`.
///   Explicit discriminants (`A = 3`) are fine.
///
/// # Attributes
///
/// On the type only:
///
/// - `#[shm(name = "Name")]` pins the type name recorded in the layout
///   (by default the identifier). The name is part of the fingerprint, so
///   pinning it lets a type be renamed in code without changing stored
///   data's fingerprint.
/// - `#[shm(crate = "path")]` (or `crate = path`) names the runtime crate
///   when it is not reachable as `::shmstore`, for example when it is
///   renamed in `Cargo.toml` or re-exported by another crate.
///
/// # Generated code
///
/// An `unsafe impl ShmSafe` inside `const _: () = { ... };` with:
///
/// - `LAYOUT`: the name, `size_of`/`align_of` of the type and, for a
///   struct, every field's name (`"0"`, `"1"`, ... for tuple fields),
///   `offset_of!` and the field type's layout; for an enum, the repr's
///   layout and every variant with its discriminant. The fingerprint is
///   computed from it at compile time, so reordering fields, changing a
///   field's type or name, or changing the repr changes the fingerprint.
/// - `IMMOVABLE`: `true` if any field holds parts initialised in place
///   (a `ShmMutex`), so that no guard hands out `&mut` to the value;
/// - `HAS_INVALID_BIT_PATTERNS`: `true` if any field has invalid bit
///   patterns (`bool`, `char`, enums, ...); always `true` for an enum.
/// - `check_bytes`: checks each such field in place, through raw pointers,
///   reporting the offset of the bad bytes from the start of the value; for
///   an enum, accepts exactly the declared discriminants.
/// - `init_in_place` and `trace`: called on every field in order.
///
/// # Errors
///
/// Each problem is a compile error pointing at its cause, and one compile
/// reports all of them:
///
/// - no `#[repr]`, `repr(Rust)`, or an integer repr on a struct: add
///   `#[repr(C)]`;
/// - `repr(packed)`: fields would be unaligned and references to them
///   undefined behaviour; remove it and add explicit padding fields;
/// - on an enum: no integer repr, `repr(C)`, `repr(usize)`/`repr(isize)`
///   (their width differs between 32- and 64-bit processes), `u128`/`i128`,
///   `align`, or variants with data (use a `#[repr(C)]` struct with a tag
///   field), or no variants at all;
/// - unions, and lifetime parameters;
/// - fields of well-known types that cannot be shared, each with what to
///   use instead: `Vec`, `String`, `Box`, `Rc`/`Arc` and other heap types;
///   `&T`, `&mut T`, `*const T`, `*mut T`, `NonNull`; `fn(..)` pointers;
///   trait objects; tuples; slices; `Option<..>`; `usize`/`isize` (use
///   `u64`/`i64`); `std::sync::Mutex` (use `ShmMutex`); file and thread
///   handles. These are recognised by name (bare, or through `std`, `core`
///   or `alloc`); any other type that is not `ShmSafe` fails the field's
///   trait bound, with the trait's own explanation;
/// - an `impl Drop` for the type: values in shared memory are never dropped;
/// - an alignment above 4096 (`#[repr(C, align(8192))]`): mappings are only
///   page-aligned, so it could not hold in every process;
/// - `#[shm(...)]` with an unknown option, or on a field or variant.
///
/// # Example
///
/// ```rust,ignore
/// use shmstore::ShmSafe;
///
/// #[derive(ShmSafe)]
/// #[repr(u8)]
/// enum State {
///     Idle = 0,
///     Busy = 1,
/// }
///
/// #[derive(ShmSafe)]
/// #[repr(C)]
/// #[shm(name = "Job")]
/// struct Job<T> {
///     id: u64,
///     state: State,
///     done: bool,
///     payload: [T; 4],
/// }
///
/// let layout = <Job<u32> as ShmSafe>::LAYOUT;
/// assert_eq!(layout.name, "Job");
/// assert!(<Job<u32> as ShmSafe>::HAS_INVALID_BIT_PATTERNS);
/// println!("{layout}");
/// // Job (size 32, align 8, fingerprint 0x...)
/// //   id: u64 (offset 0, size 8, align 8)
/// //   state: State (offset 8, size 1, align 1)
/// //     Idle = 0 (u8)
/// //     Busy = 1 (u8)
/// //   done: bool (offset 9, size 1, align 1)
/// //   payload: [u32; 4] (offset 12, size 16, align 4)
/// ```
///
/// And what the compiler says about a field that cannot be shared:
///
/// ```text
/// error: `Vec<u8>` is a pointer to this process's heap and means nothing in
///        another process; use a fixed-size array `[u8; N]`, or store the
///        elements as a slice with `Store::insert_slice`
///   |
/// 5 |     data: Vec<u8>,
///   |           ^^^^^^^
/// ```
#[proc_macro_derive(ShmSafe, attributes(shm))]
pub fn derive_shm_safe(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
