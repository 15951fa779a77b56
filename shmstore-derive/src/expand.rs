//! The derive's pipeline: parse attributes, run every check, then generate.

use proc_macro2::TokenStream;
use syn::{Data, DeriveInput, Fields, Member};

use crate::attr;
use crate::check;
use crate::codegen::{self, Body, Container, Field, Variant};
use crate::errors::Errors;
use crate::repr;

/// Expands `#[derive(ShmSafe)]` on `input`, or returns every error found.
pub(crate) fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();

    let attrs = attr::parse_container(&input.attrs, &mut errors);
    let hints = repr::parse_hints(&input.attrs, &mut errors);
    check::check_no_lifetimes(&input.generics, &mut errors);

    let body = match &input.data {
        Data::Struct(data) => {
            let repr = repr::struct_repr(&input.ident, &hints, &mut errors);
            check::check_fields(&data.fields, &mut errors);
            repr.map(|repr| Body::Struct {
                repr,
                fields: fields(&data.fields),
            })
        }
        Data::Enum(data) => {
            let repr = repr::enum_repr(&input.ident, &hints, &mut errors);
            check::check_enum_variants(&input.ident, data, &mut errors);
            repr.map(|repr| Body::Enum {
                repr,
                variants: data
                    .variants
                    .iter()
                    .map(|v| Variant {
                        ident: &v.ident,
                        discriminant: v.discriminant.as_ref().map(|(_, expr)| expr),
                    })
                    .collect(),
            })
        }
        Data::Union(data) => {
            errors.push(syn::Error::new(
                data.union_token.span,
                "`ShmSafe` cannot be derived for a union: which field is live is not recorded, \
                 so another process cannot check the bytes; use a #[repr(C)] struct with a tag \
                 field (a fieldless #[repr(u8)] enum) and a byte array, or a fieldless enum",
            ));
            None
        }
    };

    errors.finish()?;
    let Some(body) = body else {
        // Unreachable: a missing body always comes with an error.
        return Err(syn::Error::new(
            input.ident.span(),
            "cannot derive `ShmSafe` for this type",
        ));
    };

    let name = match &attrs.name {
        Some(lit) => lit.value(),
        None => codegen::unraw(&input.ident),
    };
    let krate = attrs.krate.unwrap_or_else(|| syn::parse_quote!(::shmstore));

    Ok(codegen::generate(&Container {
        ident: &input.ident,
        generics: &input.generics,
        name,
        krate,
        body,
    }))
}

fn fields(fields: &Fields) -> Vec<Field<'_>> {
    fields
        .iter()
        .enumerate()
        .map(|(index, field)| match &field.ident {
            Some(ident) => Field {
                name: codegen::unraw(ident),
                member: Member::Named(ident.clone()),
                ty: &field.ty,
            },
            None => Field {
                name: index.to_string(),
                member: Member::Unnamed(syn::Index {
                    index: index as u32,
                    span: proc_macro2::Span::call_site(),
                }),
                ty: &field.ty,
            },
        })
        .collect()
}
