//! `#[repr(...)]`: every hint as written, folded into a representation that
//! can only hold the combinations the derive accepts.
//!
//! Parsing keeps each hint with its span ([`Hint`]); [`struct_repr`] and
//! [`enum_repr`] then fold the hints into [`StructRepr`] or [`IntRepr`],
//! pointing every error at the hint that causes it. Code generation only
//! ever sees the folded types, so it cannot meet `packed`, `Rust`, `usize`
//! or a struct without `C`/`transparent`.

use proc_macro2::{Ident, Span};
use quote::format_ident;
use syn::{parenthesized, Attribute, LitInt};

use crate::errors::Errors;

/// The representation of a struct the derive accepts.
///
/// `align(N)` is accepted with `C` and folded into [`StructRepr::C`]: the
/// generated layout records `align_of::<Self>()`, which includes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StructRepr {
    /// `#[repr(C)]`, possibly with `align(N)`.
    C,
    /// `#[repr(transparent)]`.
    Transparent,
}

/// The fixed-width integer representation of a fieldless enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IntRepr {
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
}

impl IntRepr {
    fn from_name(name: &str) -> Option<IntRepr> {
        Some(match name {
            "u8" => IntRepr::U8,
            "u16" => IntRepr::U16,
            "u32" => IntRepr::U32,
            "u64" => IntRepr::U64,
            "i8" => IntRepr::I8,
            "i16" => IntRepr::I16,
            "i32" => IntRepr::I32,
            "i64" => IntRepr::I64,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            IntRepr::U8 => "u8",
            IntRepr::U16 => "u16",
            IntRepr::U32 => "u32",
            IntRepr::U64 => "u64",
            IntRepr::I8 => "i8",
            IntRepr::I16 => "i16",
            IntRepr::I32 => "i32",
            IntRepr::I64 => "i64",
        }
    }

    /// The integer type itself (`u8`, `i32`, ...).
    pub(crate) fn ty(self) -> Ident {
        format_ident!("{}", self.name())
    }

    /// The unsigned integer of the same width, used to report raw bits.
    pub(crate) fn unsigned_ty(self) -> Ident {
        let name = match self {
            IntRepr::U8 | IntRepr::I8 => "u8",
            IntRepr::U16 | IntRepr::I16 => "u16",
            IntRepr::U32 | IntRepr::I32 => "u32",
            IntRepr::U64 | IntRepr::I64 => "u64",
        };
        format_ident!("{}", name)
    }
}

/// One `#[repr]` hint as written, with its span.
#[derive(Debug, Clone)]
pub(crate) enum Hint {
    C(Span),
    Transparent(Span),
    Int(IntRepr, Span),
    Align(Span),
    Packed(Span),
    Rust(Span),
    /// `usize` or `isize`.
    PointerSized(&'static str, Span),
    /// `u128` or `i128`.
    Wide(&'static str, Span),
    /// Anything else (`simd`, a misspelling); rustc reports it too.
    Other(String, Span),
}

impl Hint {
    fn span(&self) -> Span {
        match self {
            Hint::C(s)
            | Hint::Transparent(s)
            | Hint::Int(_, s)
            | Hint::Align(s)
            | Hint::Packed(s)
            | Hint::Rust(s)
            | Hint::PointerSized(_, s)
            | Hint::Wide(_, s)
            | Hint::Other(_, s) => *s,
        }
    }
}

/// Collects every hint of every `#[repr(...)]` attribute.
pub(crate) fn parse_hints(attrs: &[Attribute], errors: &mut Errors) -> Vec<Hint> {
    let mut hints = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident("repr")) {
        let result = attr.parse_nested_meta(|meta| {
            let Some(ident) = meta.path.get_ident() else {
                return Err(meta.error("unknown `repr` hint"));
            };
            let span = ident.span();
            let name = ident.to_string();
            let hint = match name.as_str() {
                "C" => Hint::C(span),
                "transparent" => Hint::Transparent(span),
                "Rust" => Hint::Rust(span),
                "usize" => Hint::PointerSized("usize", span),
                "isize" => Hint::PointerSized("isize", span),
                "u128" => Hint::Wide("u128", span),
                "i128" => Hint::Wide("i128", span),
                "align" => {
                    let content;
                    parenthesized!(content in meta.input);
                    content.parse::<LitInt>()?;
                    Hint::Align(span)
                }
                "packed" => {
                    if meta.input.peek(syn::token::Paren) {
                        let content;
                        parenthesized!(content in meta.input);
                        content.parse::<LitInt>()?;
                    }
                    Hint::Packed(span)
                }
                other => match IntRepr::from_name(other) {
                    Some(int) => Hint::Int(int, span),
                    None => {
                        // Skip whatever arguments follow; rustc reports the
                        // unknown hint itself, we only add what to do.
                        if meta.input.peek(syn::token::Paren) {
                            let content;
                            parenthesized!(content in meta.input);
                            let _: proc_macro2::TokenStream = content.parse()?;
                        }
                        Hint::Other(name, span)
                    }
                },
            };
            hints.push(hint);
            Ok(())
        });
        errors.take(result);
    }
    hints
}

const PACKED: &str = "`repr(packed)` is not supported by `ShmSafe`: fields would be unaligned, \
    and creating a reference to an unaligned field is undefined behaviour (atomics and locks \
    in shared memory need their alignment too); remove `packed` and add explicit padding \
    fields (for example `_pad: [u8; 3]`) to get the layout you want";

fn rust_error(span: Span) -> syn::Error {
    syn::Error::new(
        span,
        "`repr(Rust)` lets the compiler choose (and change between builds) the order and \
         offsets of fields, so another process cannot know them; use #[repr(C)]",
    )
}

fn other_error(name: &str, span: Span) -> syn::Error {
    syn::Error::new(
        span,
        format!("`repr({name})` is not supported by `ShmSafe`; use #[repr(C)] on a struct, or #[repr(u8)] (u16, u32, u64, i8, ...) on a fieldless enum"),
    )
}

/// Folds the hints of a struct; `ident` is where a missing repr is reported.
pub(crate) fn struct_repr(
    ident: &Ident,
    hints: &[Hint],
    errors: &mut Errors,
) -> Option<StructRepr> {
    let mut repr: Option<(StructRepr, Span)> = None;
    let mut align: Option<Span> = None;
    let mut ok = true;
    let mut fail = |errors: &mut Errors, e: syn::Error| {
        errors.push(e);
        ok = false;
    };
    for hint in hints {
        let this = match hint {
            Hint::C(_) => StructRepr::C,
            Hint::Transparent(_) => StructRepr::Transparent,
            Hint::Align(span) => {
                align = Some(*span);
                continue;
            }
            Hint::Packed(span) => {
                fail(errors, syn::Error::new(*span, PACKED));
                continue;
            }
            Hint::Rust(span) => {
                fail(errors, rust_error(*span));
                continue;
            }
            Hint::Int(..) | Hint::PointerSized(..) | Hint::Wide(..) => {
                fail(
                    errors,
                    syn::Error::new(
                        hint.span(),
                        "an integer `repr` only applies to enums; a struct that lives in shared memory needs #[repr(C)]",
                    ),
                );
                continue;
            }
            Hint::Other(name, span) => {
                fail(errors, other_error(name, *span));
                continue;
            }
        };
        match repr {
            Some((previous, _)) if previous != this => fail(
                errors,
                syn::Error::new(
                    hint.span(),
                    "a struct cannot be both `repr(C)` and `repr(transparent)`; keep one",
                ),
            ),
            _ => repr = Some((this, hint.span())),
        }
    }
    if let (Some((StructRepr::Transparent, _)), Some(span)) = (repr, align) {
        fail(
            errors,
            syn::Error::new(
                span,
                "`align` cannot be combined with `repr(transparent)`; use #[repr(C, align(N))]",
            ),
        );
    }
    match repr {
        Some((repr, _)) if ok => Some(repr),
        Some(_) => None,
        None => {
            if ok {
                errors.push(syn::Error::new(
                    ident.span(),
                    format!(
                        "`{ident}` needs a defined layout to live in shared memory: add #[repr(C)] \
                         (or #[repr(transparent)] for a single-field wrapper); without it Rust may \
                         lay the fields out differently in each build"
                    ),
                ));
            }
            None
        }
    }
}

/// Folds the hints of a fieldless enum; `ident` is where a missing repr is
/// reported.
pub(crate) fn enum_repr(ident: &Ident, hints: &[Hint], errors: &mut Errors) -> Option<IntRepr> {
    let mut repr: Option<IntRepr> = None;
    let mut ok = true;
    let mut fail = |errors: &mut Errors, e: syn::Error| {
        errors.push(e);
        ok = false;
    };
    for hint in hints {
        match hint {
            Hint::Int(int, span) => match repr {
                Some(previous) if previous != *int => fail(
                    errors,
                    syn::Error::new(*span, "conflicting integer `repr` hints; keep one"),
                ),
                _ => repr = Some(*int),
            },
            Hint::C(span) => fail(
                errors,
                syn::Error::new(
                    *span,
                    "`repr(C)` on an enum gives its discriminant the size of a C `int`, which \
                     depends on the target; use an explicit fixed-width integer such as \
                     #[repr(u8)] or #[repr(u32)] (and no `C`)",
                ),
            ),
            Hint::PointerSized(name, span) => {
                let fixed = if *name == "usize" { "u32` or `u64" } else { "i32` or `i64" };
                fail(
                    errors,
                    syn::Error::new(
                        *span,
                        format!(
                            "`repr({name})` is 4 bytes in a 32-bit process and 8 bytes in a 64-bit \
                             one, and both may map the same segment; use a fixed-width integer: \
                             `{fixed}` (or a smaller one such as `u8`)"
                        ),
                    ),
                )
            }
            Hint::Wide(name, span) => fail(
                errors,
                syn::Error::new(
                    *span,
                    format!(
                        "`repr({name})` is not supported: discriminants are recorded as `i128`; \
                         use `u64`, `i64` or a smaller integer"
                    ),
                ),
            ),
            Hint::Transparent(span) => fail(
                errors,
                syn::Error::new(
                    *span,
                    "a fieldless enum cannot be `repr(transparent)`; use #[repr(u8)] (or u16, u32, ...)",
                ),
            ),
            Hint::Align(span) => fail(
                errors,
                syn::Error::new(
                    *span,
                    "`align` on an enum is not supported; wrap the enum in a #[repr(C, align(N))] struct",
                ),
            ),
            Hint::Packed(span) => fail(errors, syn::Error::new(*span, PACKED)),
            Hint::Rust(span) => fail(errors, rust_error(*span)),
            Hint::Other(name, span) => fail(errors, other_error(name, *span)),
        }
    }
    match repr {
        Some(int) if ok => Some(int),
        Some(_) => None,
        None => {
            if ok {
                errors.push(syn::Error::new(
                    ident.span(),
                    format!(
                        "`{ident}` needs an explicit fixed-width discriminant to live in shared \
                         memory: add #[repr(u8)] (or u16, u32, u64, i8, i16, i32, i64); without \
                         it Rust chooses the discriminant's size"
                    ),
                ));
            }
            None
        }
    }
}
