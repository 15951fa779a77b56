//! Rules the input must follow, one `check_*` function per rule.
//!
//! Each check reports into [`Errors`] with a span on the offending item and
//! never stops early, so a single compile shows every problem. The checks
//! of field types are syntactic: they recognise well-known types that can
//! never be shared (`Vec`, `&T`, `usize`, ...) and say what to use instead.
//! Every other field type is left to the compiler, through a
//! `where Field: ShmSafe` bound whose error message comes from
//! `#[diagnostic::on_unimplemented]` on the trait.

use quote::ToTokens;
use syn::{
    DataEnum, Fields, GenericArgument, GenericParam, Generics, PathArguments, Type, TypePath,
};

use crate::attr;
use crate::errors::Errors;

/// Lifetime parameters would let a value borrow from one process.
pub(crate) fn check_no_lifetimes(generics: &Generics, errors: &mut Errors) {
    for param in &generics.params {
        if let GenericParam::Lifetime(lt) = param {
            errors.push(syn::Error::new_spanned(
                &lt.lifetime,
                "a type that lives in shared memory cannot have lifetime parameters: it outlives \
                 every borrow of the process that wrote it; remove the lifetime (and the \
                 references that need it)",
            ));
        }
    }
}

/// Every field: no `#[shm]`, and no well-known unshareable type.
pub(crate) fn check_fields(fields: &Fields, errors: &mut Errors) {
    for field in fields {
        attr::reject_shm(&field.attrs, "fields", errors);
        check_field_type(&field.ty, errors);
    }
}

/// An enum must be fieldless and have at least one variant.
pub(crate) fn check_enum_variants(ident: &syn::Ident, data: &DataEnum, errors: &mut Errors) {
    if data.variants.is_empty() {
        errors.push(syn::Error::new(
            ident.span(),
            format!(
                "`{ident}` has no variants, so no value of it can exist in shared memory; \
                 add a variant, or use `()` for an empty value"
            ),
        ));
    }
    for variant in &data.variants {
        attr::reject_shm(&variant.attrs, "enum variants", errors);
        if !matches!(variant.fields, Fields::Unit) {
            errors.push(syn::Error::new_spanned(
                &variant.fields,
                format!(
                    "variant `{}` carries data; `ShmSafe` only supports fieldless enums, because \
                     the layout of an enum with data is not defined; use a #[repr(C)] struct \
                     with a tag field (a fieldless #[repr(u8)] enum) and the data in further \
                     fields",
                    variant.ident
                ),
            ));
        }
    }
}

/// Reports a field type (or a type nested in it, through arrays and
/// `Option`) that is known never to be shareable.
pub(crate) fn check_field_type(ty: &Type, errors: &mut Errors) {
    if let Some(error) = forbidden(ty) {
        errors.push(error);
    }
}

/// What to use instead of dynamic dispatch.
const DISPATCH: &str = "store a fieldless #[repr(u8)] enum naming the behaviour and `match` on it";

/// The message for a reference or raw pointer `shown` to `elem`.
fn address_message(shown: &str, elem: &Type) -> String {
    let instead = match strip(elem) {
        Type::Path(p) if p.qself.is_none() && p.path.is_ident("str") => {
            "store the text inline as a fixed-size byte array `[u8; N]` with a length field"
                .to_string()
        }
        Type::Slice(s) => format!(
            "store the elements inline as a fixed-size array `[{}; N]`",
            display(&s.elem)
        ),
        Type::TraitObject(_) | Type::ImplTrait(_) => DISPATCH.to_string(),
        other => format!(
            "store the `{}` inline, or refer to another object in the store by a relative offset",
            display(other)
        ),
    };
    format!(
        "`{shown}` is an address in this process's memory and means nothing in another process \
         (each maps the segment at its own address); {instead}"
    )
}

/// `ty` without parentheses and invisible groups.
fn strip(ty: &Type) -> &Type {
    match ty {
        Type::Paren(inner) => strip(&inner.elem),
        Type::Group(inner) => strip(&inner.elem),
        other => other,
    }
}

fn forbidden(ty: &Type) -> Option<syn::Error> {
    let shown = display(ty);
    let error = |message: String| Some(syn::Error::new_spanned(ty, message));
    match ty {
        Type::Paren(inner) => forbidden(&inner.elem),
        Type::Group(inner) => forbidden(&inner.elem),
        Type::Array(array) => forbidden(&array.elem),
        Type::Reference(r) => error(address_message(&shown, &r.elem)),
        Type::Ptr(p) => error(address_message(&shown, &p.elem)),
        Type::BareFn(_) => error(format!(
            "`{shown}` is the address of code in this process; another process loads code at \
             other addresses (or is another program); store a fieldless #[repr(u8)] enum naming \
             the function and `match` on it"
        )),
        Type::TraitObject(_) | Type::ImplTrait(_) => error(format!(
            "`{shown}` is not a fixed-size value and its methods are found through a pointer \
             into this process's code; {DISPATCH}"
        )),
        Type::Slice(s) => {
            let elem = display(&s.elem);
            error(format!(
                "`{shown}` has no fixed size; use a fixed-size array `[{elem}; N]`, or store the \
                 elements as a slice with `Store::insert_slice`"
            ))
        }
        Type::Tuple(t) if !t.elems.is_empty() => error(format!(
            "the tuple `{shown}` has no defined layout (Rust may reorder its fields in each \
             build); use a #[repr(C)] struct with named fields"
        )),
        Type::Path(path) => forbidden_path(ty, path, &shown),
        _ => None,
    }
}

/// The first generic type argument of the last segment, if any.
fn first_type_arg(path: &TypePath) -> Option<&Type> {
    let last = path.path.segments.last()?;
    match &last.arguments {
        PathArguments::AngleBracketed(args) => args.args.iter().find_map(|a| match a {
            GenericArgument::Type(t) => Some(t),
            _ => None,
        }),
        _ => None,
    }
}

/// Names recognised even when written bare: primitives, the prelude, and
/// std types whose names nobody reuses for a shareable type.
const UNAMBIGUOUS: &[&str] = &[
    "Option",
    "Vec",
    "VecDeque",
    "LinkedList",
    "BinaryHeap",
    "HashMap",
    "BTreeMap",
    "HashSet",
    "BTreeSet",
    "String",
    "CString",
    "OsString",
    "PathBuf",
    "Box",
    "Rc",
    "Arc",
    "NonNull",
    "AtomicPtr",
    "usize",
    "isize",
    "AtomicUsize",
    "AtomicIsize",
    "NonZeroUsize",
    "NonZeroIsize",
    "RefCell",
];

/// Whether `path` names the std type `last`: a path through `std`, `core`
/// or `alloc` (`std::sync::Mutex`), or a bare name from [`UNAMBIGUOUS`]. A
/// bare `Mutex` or `File` may well be the user's own shareable type, and is
/// left to the trait bound.
fn is_std_path(path: &TypePath, last: &str) -> bool {
    if path.qself.is_some() {
        return false;
    }
    let segments = &path.path.segments;
    if segments.len() == 1 {
        return path.path.leading_colon.is_none() && UNAMBIGUOUS.contains(&last);
    }
    matches!(
        segments[0].ident.to_string().as_str(),
        "std" | "core" | "alloc"
    )
}

fn forbidden_path(ty: &Type, path: &TypePath, shown: &str) -> Option<syn::Error> {
    let last = path.path.segments.last()?.ident.to_string();
    if !is_std_path(path, &last) {
        return None;
    }
    let arg = first_type_arg(path).map(display);
    let elem = arg.as_deref().unwrap_or("T");
    let heap = "is a pointer to this process's heap and means nothing in another process";
    let message = match last.as_str() {
        "Option" => {
            // `Option<Box<T>>`, `Option<&T>`, ...: report the pointer inside.
            if let Some(inner) = first_type_arg(path) {
                if let Some(error) = forbidden(inner) {
                    return Some(error);
                }
            }
            format!(
                "`{shown}` has no layout that `ShmSafe` can describe (where and how `None` is \
                 stored depends on `{elem}`); store a `bool` (or a tag enum) next to the value, \
                 or use a sentinel value"
            )
        }
        "Vec" | "VecDeque" | "LinkedList" | "BinaryHeap" => format!(
            "`{shown}` {heap}; use a fixed-size array `[{elem}; N]`, or store the elements as a \
             slice with `Store::insert_slice`"
        ),
        "HashMap" | "BTreeMap" | "HashSet" | "BTreeSet" => format!(
            "`{shown}` {heap}; use a fixed-size array of #[repr(C)] entries, or store each entry \
             as its own named object in the store"
        ),
        "String" | "CString" | "OsString" | "PathBuf" => format!(
            "`{shown}` {heap}; use a fixed-size byte array `[u8; N]` with a length field, or \
             store the text as a slice with `Store::insert_slice`"
        ),
        "Box"
            if first_type_arg(path)
                .is_some_and(|t| matches!(strip(t), Type::TraitObject(_) | Type::ImplTrait(_))) =>
        {
            format!("`{shown}` {heap}, and its methods are found through a pointer into this process's code; {DISPATCH}")
        }
        "Box" => format!(
            "`{shown}` {heap}; store the `{elem}` inline, or as its own object in the store"
        ),
        "Rc" | "Arc" | "Weak" => format!(
            "`{shown}` {heap}, and its reference count is only seen by this process; store the \
             `{elem}` inline, or share it as its own named object in the store"
        ),
        "NonNull" | "AtomicPtr" => format!(
            "`{shown}` is an address in this process's memory and means nothing in another \
             process (each maps the segment at its own address); store the value inline, or \
             refer to another object in the store by a relative offset"
        ),
        "usize" | "isize" | "AtomicUsize" | "AtomicIsize" | "NonZeroUsize" | "NonZeroIsize" => {
            let fixed = match last.as_str() {
                "usize" => "u64",
                "isize" => "i64",
                "AtomicUsize" => "AtomicU64",
                "AtomicIsize" => "AtomicI64",
                "NonZeroUsize" => "NonZeroU64",
                _ => "NonZeroI64",
            };
            format!(
                "`{shown}`'s width differs between 32-bit and 64-bit processes, which may share \
                 a segment; use `{fixed}`"
            )
        }
        "Mutex" | "RwLock" | "Condvar" => format!(
            "`{shown}` only synchronises threads of this process; in shared memory use \
             `shmstore::ShmMutex` (a process-shared, robust lock)"
        ),
        "File" | "OwnedFd" | "BorrowedFd" | "TcpStream" | "TcpListener" | "UdpSocket"
        | "UnixStream" | "UnixListener" | "Child" | "JoinHandle" | "Thread" => format!(
            "`{shown}` is a handle that only this process can use (a file descriptor or thread); \
             share the resource some other way and store plain data here"
        ),
        "Cell" | "RefCell" => format!(
            "`{shown}` is not safe to mutate from several processes; use an atomic \
             (`AtomicU32`, ...) or `shmstore::ShmMutex`"
        ),
        _ => return None,
    };
    Some(syn::Error::new_spanned(ty, message))
}

/// A type as a user would write it: `Vec<u8>`, `&'a str`, `[u8; 4]`.
pub(crate) fn display(ty: &Type) -> String {
    let raw = ty.to_token_stream().to_string();
    let mut out = raw;
    for (from, to) in [
        (" < ", "<"),
        ("< ", "<"),
        (" <", "<"),
        (" >", ">"),
        (" , ", ", "),
        (" ,", ","),
        (" :: ", "::"),
        (":: ", "::"),
        (" ;", ";"),
        ("[ ", "["),
        (" ]", "]"),
        ("( ", "("),
        (" )", ")"),
        ("& ", "&"),
        ("* const ", "*const "),
        ("* mut ", "*mut "),
        ("fn (", "fn("),
    ] {
        out = out.replace(from, to);
    }
    out
}
