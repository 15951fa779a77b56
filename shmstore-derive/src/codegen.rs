//! Code generation, from input that has passed every check.
//!
//! Everything is emitted inside `const _: () = { ... };` with fully
//! qualified `::core::` paths and the runtime crate's path taken from
//! [`Container::krate`], so the output neither leaks names into the user's
//! module nor depends on what the user has imported.

use proc_macro2::{Group, Ident, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{Generics, Member, Path, Type, WherePredicate};

use crate::repr::{IntRepr, StructRepr};

/// A type that passed every check, ready for code generation.
pub(crate) struct Container<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) generics: &'a Generics,
    /// The recorded type name.
    pub(crate) name: String,
    /// The runtime crate (`::shmstore` unless `#[shm(crate = ...)]`).
    pub(crate) krate: Path,
    pub(crate) body: Body<'a>,
}

/// What the type is made of.
pub(crate) enum Body<'a> {
    Struct {
        repr: StructRepr,
        fields: Vec<Field<'a>>,
    },
    Enum {
        repr: IntRepr,
        variants: Vec<Variant<'a>>,
    },
}

/// One enum variant.
pub(crate) struct Variant<'a> {
    pub(crate) ident: &'a Ident,
    /// The explicit discriminant, if written (`A = 3`).
    pub(crate) discriminant: Option<&'a syn::Expr>,
}

/// One struct field.
pub(crate) struct Field<'a> {
    /// The recorded name: the identifier, or `"0"`, `"1"`, ... for tuple
    /// fields.
    pub(crate) name: String,
    pub(crate) member: Member,
    pub(crate) ty: &'a Type,
}

/// The whole derive output.
pub(crate) fn generate(input: &Container<'_>) -> TokenStream {
    let krate = &input.krate;
    let ident = input.ident;
    let generics = bounded_generics(input);
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let name = &input.name;
    let align_message = format!(
        "`{ident}` is aligned to more than 4096 bytes (a page); a store's mappings are only \
         page-aligned, so such an alignment cannot hold in every process: use at most align(4096)"
    );
    let Items {
        support,
        kind,
        has_invalid,
        immovable,
        check_bytes,
        init_in_place,
        trace,
    } = match &input.body {
        Body::Struct { repr, fields } => struct_items(krate, *repr, fields),
        Body::Enum { repr, variants } => enum_items(krate, *repr, variants),
    };

    let drop_guard = drop_guard(input, &generics);
    let movable = movable_impl(input, &generics);
    let align_guard = align_guard(input, &align_message);

    quote! {
        const _: () = {
            #drop_guard

            #align_guard

            #support

            // SAFETY: every check this derive makes before emitting this impl
            // is what the `ShmSafe` contract asks for:
            // - no absolute addresses: every field type is `ShmSafe` (the
            //   where clause), and the derive refused well-known pointer
            //   types by name with a clearer message;
            // - a defined layout: `repr(C)`/`repr(transparent)` or a
            //   fixed-width integer repr (packed, Rust and pointer-sized
            //   reprs were refused), and `LAYOUT` is built from the
            //   compiler's own `size_of`, `align_of` and `offset_of!`;
            // - no drop glue: fields are `ShmSafe` (so have none) and the
            //   type's own `Drop` impl is refused by the guard above and by
            //   the assertion in `LAYOUT`;
            // - `check_bytes` checks every field that has invalid bit
            //   patterns (or, for an enum, accepts exactly the declared
            //   discriminants), so accepted bytes are a valid value;
            // - interior mutability and `init_in_place` are delegated to the
            //   fields, which uphold the contract themselves.
            #[automatically_derived]
            unsafe impl #impl_generics #krate::ShmSafe for #ident #ty_generics #where_clause {
                const LAYOUT: &'static #krate::TypeLayout = {
                    ::core::assert!(::core::mem::align_of::<Self>() <= 4096, #align_message);
                    &#krate::TypeLayout {
                        name: #name,
                        size: ::core::mem::size_of::<Self>(),
                        align: ::core::mem::align_of::<Self>(),
                        kind: #kind,
                    }
                };

                const HAS_INVALID_BIT_PATTERNS: bool = #has_invalid;

                const IMMOVABLE: bool = #immovable;

                #check_bytes

                #init_in_place

                #trace
            }

            #movable
        };
    }
}

/// `unsafe impl ShmMovable` for the type, bounded on every field being
/// movable: a struct with a `ShmMutex` field is not, so no guard hands out
/// `&mut` to it. The field bounds are written `for<'__shm> Field:
/// ShmMovable` so that a bound on a concrete, unmovable field type is
/// evaluated where the impl is used (making the type simply not movable),
/// instead of being refused as a trivially false bound where it is written.
fn movable_impl(input: &Container<'_>, generics: &Generics) -> TokenStream {
    let krate = &input.krate;
    let ident = input.ident;
    let mut generics = generics.clone();
    if let Body::Struct { fields, .. } = &input.body {
        let predicates: Vec<WherePredicate> = fields
            .iter()
            .map(|field| {
                let ty = field.ty;
                syn::parse_quote!(for<'__shm> #ty: #krate::ShmMovable)
            })
            .collect();
        generics.make_where_clause().predicates.extend(predicates);
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    quote! {
        // SAFETY: `ShmMovable` asks that the type have no part initialised
        // in place: an enum has none, and a struct has none exactly when
        // every field has none, which the bounds require. `IMMOVABLE` above
        // is then `false` (the OR of the fields' flags).
        #[automatically_derived]
        unsafe impl #impl_generics #krate::ShmMovable for #ident #ty_generics #where_clause {}
    }
}

/// The type's generics with `T: ShmSafe` on every type parameter and
/// `FieldTy: ShmSafe` for every field, the latter spanned on the field's
/// type so that an error points at the field.
fn bounded_generics(input: &Container<'_>) -> Generics {
    let krate = &input.krate;
    let mut generics = input.generics.clone();
    for param in generics.type_params_mut() {
        param.bounds.push(syn::parse_quote!(#krate::ShmSafe));
    }
    let params: Vec<String> = input
        .generics
        .type_params()
        .map(|p| p.ident.to_string())
        .collect();
    if let Body::Struct { fields, .. } = &input.body {
        let predicates: Vec<WherePredicate> = fields
            .iter()
            // A field of a concrete type needs no bound: the impl's body
            // (its `LAYOUT`, spanned at the field) requires it, with the
            // same error. A bound on it would be evaluated where the impl is
            // chosen, which recurses forever for a type that holds a
            // container of itself (`next: RelPtr<Self>`).
            .filter(|field| mentions_any(field.ty.to_token_stream(), &params))
            .map(|field| {
                let ty = field.ty;
                // Every token of the predicate carries the field type's span
                // (the crate path too), so the compiler points at the field.
                let span = ty.span();
                let krate = respan(krate.to_token_stream(), span);
                syn::parse_quote_spanned!(span=> #ty: #krate::ShmSafe)
            })
            .collect();
        generics.make_where_clause().predicates.extend(predicates);
    }
    generics
}

/// `true` if `tokens` name one of `params` (a type parameter).
fn mentions_any(tokens: TokenStream, params: &[String]) -> bool {
    tokens.into_iter().any(|t| match t {
        TokenTree::Ident(i) => params.iter().any(|p| i == p),
        TokenTree::Group(g) => mentions_any(g.stream(), params),
        _ => false,
    })
}

/// Refuses a type with its own `Drop` impl when the type is defined, not
/// only when its `LAYOUT` is first evaluated.
///
/// Drop glue from fields is fine (shmstore's containers free their buffers
/// when dropped); only the type's own `Drop` impl is refused, with the
/// coherence trick of `pin-project`: a blanket impl of a local trait for
/// every `T: Drop`
/// conflicts with the impl for the type exactly when the type implements
/// `Drop` (for some or all parameters). The trait's name carries the
/// message: a value in shared memory is never dropped by the store (other
/// processes may still use it, and a crash skips drop glue).
///
/// A non-generic type also gets a free constant with a readable message:
/// the type needs dropping though none of its fields does, so it implements
/// `Drop` itself.
fn drop_guard(input: &Container<'_>, generics: &Generics) -> TokenStream {
    let ident = input.ident;
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let message = format!(
        "`{ident}` implements `Drop`, but a value in shared memory is never dropped by the store \
         (other processes may still use it, and a crash skips drop glue); remove the `Drop` \
         impl and release resources explicitly"
    );
    let readable = if input.generics.params.is_empty() {
        let field_tys: Vec<&Type> = match &input.body {
            Body::Struct { fields, .. } => fields.iter().map(|f| f.ty).collect(),
            Body::Enum { .. } => Vec::new(),
        };
        quote_spanned! {ident.span()=>
            const _: () = ::core::assert!(
                !(::core::mem::needs_drop::<#ident>()
                    && !(false #(|| ::core::mem::needs_drop::<#field_tys>())*)),
                #message
            );
        }
    } else {
        TokenStream::new()
    };
    quote_spanned! {ident.span()=>
        #readable
        #[allow(dead_code)]
        trait ShmSafeTypesMustNotImplementDrop {}
        #[allow(drop_bounds)]
        impl<T: ::core::ops::Drop> ShmSafeTypesMustNotImplementDrop for T {}
        impl #impl_generics ShmSafeTypesMustNotImplementDrop for #ident #ty_generics #where_clause {}
    }
}

/// Refuses a non-generic type aligned to more than a page when it is
/// defined (a generic one is refused by the assertion in its `LAYOUT`).
fn align_guard(input: &Container<'_>, message: &str) -> TokenStream {
    let ident = input.ident;
    if !input.generics.params.is_empty() {
        return TokenStream::new();
    }
    quote_spanned! {ident.span()=>
        const _: () = ::core::assert!(::core::mem::align_of::<#ident>() <= 4096, #message);
    }
}

/// `tokens` with every span (inside groups too) set to `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let TokenTree::Group(group) = &token {
                let mut new = Group::new(group.delimiter(), respan(group.stream(), span));
                new.set_span(span);
                token = TokenTree::Group(new);
            } else {
                token.set_span(span);
            }
            token
        })
        .collect()
}

/// The pieces of the impl that depend on the kind of type.
struct Items {
    /// Items placed beside the impl, inside the `const _` block.
    support: TokenStream,
    /// The `LayoutKind` expression.
    kind: TokenStream,
    has_invalid: TokenStream,
    immovable: TokenStream,
    check_bytes: TokenStream,
    init_in_place: TokenStream,
    trace: TokenStream,
}

fn struct_items(krate: &Path, repr: StructRepr, fields: &[Field<'_>]) -> Items {
    let transparent = repr == StructRepr::Transparent;
    let names = fields.iter().map(|f| &f.name);
    let members: Vec<&Member> = fields.iter().map(|f| &f.member).collect();
    let tys: Vec<&Type> = fields.iter().map(|f| f.ty).collect();

    let kind = quote! {
        #krate::LayoutKind::Struct {
            transparent: #transparent,
            fields: &[#(
                #krate::FieldLayout {
                    name: #names,
                    offset: ::core::mem::offset_of!(Self, #members),
                    ty: <#tys as #krate::ShmSafe>::LAYOUT,
                }
            ),*],
        }
    };

    let has_invalid = quote! {
        false #(|| <#tys as #krate::ShmSafe>::HAS_INVALID_BIT_PATTERNS)*
    };

    let immovable = quote! {
        false #(|| <#tys as #krate::ShmSafe>::IMMOVABLE)*
    };

    let check_bytes = quote! {
        unsafe fn check_bytes(
            ptr: *const Self,
        ) -> ::core::result::Result<(), #krate::InvalidBitPattern> {
            #(
                if <#tys as #krate::ShmSafe>::HAS_INVALID_BIT_PATTERNS {
                    // SAFETY: the caller guarantees that `ptr` is aligned and
                    // valid for reads of `size_of::<Self>()` initialised
                    // bytes. `addr_of!((*ptr).field)` only computes the
                    // address of a field inside that range (no reference is
                    // created, so the bytes need not be a valid `Self` yet).
                    // The field is aligned because `Self` is `repr(C)` or
                    // `repr(transparent)` (never packed) and `ptr` is
                    // aligned, and its bytes lie within the caller's range:
                    // the field's own `check_bytes` precondition.
                    unsafe {
                        <#tys as #krate::ShmSafe>::check_bytes(
                            ::core::ptr::addr_of!((*ptr).#members),
                        )
                    }
                    .map_err(|e| e.within(::core::mem::offset_of!(Self, #members)))?;
                }
            )*
            let _ = ptr;
            ::core::result::Result::Ok(())
        }
    };

    let init_in_place = quote! {
        unsafe fn init_in_place(
            ptr: *mut Self,
        ) -> ::core::result::Result<(), #krate::Error> {
            #(
                // SAFETY: the caller guarantees that `ptr` is aligned, valid
                // for reads and writes of the whole value, holds a valid
                // `Self` and is reachable by no one else. Each field pointer
                // from `addr_of_mut!` (no reference created) is therefore
                // aligned (never packed), valid for the field's bytes, holds
                // a valid field value and is unshared: the field's own
                // `init_in_place` precondition. Fields are disjoint, so one
                // field's initialisation cannot disturb another's.
                unsafe {
                    <#tys as #krate::ShmSafe>::init_in_place(
                        ::core::ptr::addr_of_mut!((*ptr).#members),
                    )
                }?;
            )*
            let _ = ptr;
            ::core::result::Result::Ok(())
        }
    };

    let trace = quote! {
        fn trace(&self, visit: &mut dyn ::core::ops::FnMut(u64)) {
            #(<#tys as #krate::ShmSafe>::trace(&self.#members, visit);)*
            let _ = visit;
        }
    };

    Items {
        support: TokenStream::new(),
        kind,
        has_invalid,
        immovable,
        check_bytes,
        init_in_place,
        trace,
    }
}

fn enum_items(krate: &Path, repr: IntRepr, variants: &[Variant<'_>]) -> Items {
    let int = repr.ty();
    let uint = repr.unsigned_ty();
    let names = variants.iter().map(|v| unraw(v.ident));
    let idents: Vec<&Ident> = variants.iter().map(|v| v.ident).collect();
    let shadow_variants = variants.iter().map(|v| {
        let ident = v.ident;
        match v.discriminant {
            Some(expr) => quote!(#ident = #expr),
            None => quote!(#ident),
        }
    });

    // The discriminants are read from a fieldless copy of the enum rather
    // than with `Self::Variant as #int`: the compiler refuses that cast for
    // an enum with a `Drop` impl, which would bury the clear error of the
    // drop guard under an obscure one. Same repr, same variants in the same
    // order, same discriminant expressions: same values.
    let shadow = quote! {
        #[allow(dead_code, non_camel_case_types)]
        #[repr(#int)]
        enum __ShmSafeDiscriminants {
            #(#shadow_variants),*
        }
    };

    let kind = quote! {
        #krate::LayoutKind::Enum {
            repr: <#int as #krate::ShmSafe>::LAYOUT,
            variants: &[#(
                #krate::VariantLayout {
                    name: #names,
                    discriminant: __ShmSafeDiscriminants::#idents as #int as i128,
                }
            ),*],
        }
    };

    let check_bytes = quote! {
        unsafe fn check_bytes(
            ptr: *const Self,
        ) -> ::core::result::Result<(), #krate::InvalidBitPattern> {
            // Every variant may reach this process as bytes written by
            // another one, accepted here; name them so that a variant never
            // constructed in this program is not reported as dead code.
            if false {
                let _ = [#(Self::#idents),*];
            }
            // SAFETY: the caller guarantees that `ptr` is aligned for `Self`
            // and valid for reads of `size_of::<Self>()` initialised bytes.
            // A fieldless enum with `repr(#int)` has exactly the size and
            // alignment of `#int` and stores its discriminant there, so
            // reading it as `#int` (any bit pattern is a valid integer) is in
            // bounds and aligned. The bytes are a valid `Self` exactly when
            // the integer is one of the declared discriminants, which is
            // what is compared.
            let value: #int = unsafe { ptr.cast::<#int>().read() };
            if #(value == __ShmSafeDiscriminants::#idents as #int)||* {
                ::core::result::Result::Ok(())
            } else {
                ::core::result::Result::Err(#krate::InvalidBitPattern::new(
                    <Self as #krate::ShmSafe>::LAYOUT.name,
                    value as #uint as u128,
                ))
            }
        }
    };

    Items {
        support: shadow,
        kind,
        has_invalid: quote!(true),
        immovable: quote!(false),
        check_bytes,
        init_in_place: TokenStream::new(),
        trace: TokenStream::new(),
    }
}

/// An identifier as written but without `r#`.
pub(crate) fn unraw(ident: &Ident) -> String {
    syn::ext::IdentExt::unraw(ident).to_string()
}
