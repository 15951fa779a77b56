//! `#[shm(...)]` attributes.
//!
//! On the type: `name = "..."` pins the recorded type name, `crate = "path"`
//! (or `crate = path`) names the runtime crate. Anywhere else `#[shm]` is an
//! error, so that a misplaced attribute is never silently ignored.

use syn::{Attribute, LitStr, Path};

use crate::errors::Errors;

/// The `#[shm(...)]` options of the deriving type.
#[derive(Default)]
pub(crate) struct ContainerAttrs {
    /// `#[shm(name = "...")]`.
    pub(crate) name: Option<LitStr>,
    /// `#[shm(crate = "...")]`.
    pub(crate) krate: Option<Path>,
}

/// Parses every `#[shm(...)]` on the type, reporting unknown and duplicate
/// keys.
pub(crate) fn parse_container(attrs: &[Attribute], errors: &mut Errors) -> ContainerAttrs {
    let mut out = ContainerAttrs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("shm")) {
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                let lit: LitStr = meta.value()?.parse()?;
                if lit.value().is_empty() {
                    return Err(syn::Error::new(lit.span(), "the type name cannot be empty"));
                }
                if out.name.is_some() {
                    return Err(meta.error("duplicate `name`; give it once"));
                }
                out.name = Some(lit);
                Ok(())
            } else if meta.path.is_ident("crate") {
                let value = meta.value()?;
                let path = if value.peek(LitStr) {
                    let lit: LitStr = value.parse()?;
                    lit.parse::<Path>().map_err(|_| {
                        syn::Error::new(
                            lit.span(),
                            "`crate` must be the path of the shmstore crate, for example \
                             `crate = \"shmstore\"` or `crate = \"my_facade::shmstore\"`",
                        )
                    })?
                } else {
                    value.parse::<Path>()?
                };
                if out.krate.is_some() {
                    return Err(meta.error("duplicate `crate`; give it once"));
                }
                out.krate = Some(path);
                Ok(())
            } else {
                Err(meta
                    .error("unknown `shm` option; expected `name = \"...\"` or `crate = \"path\"`"))
            }
        });
        errors.take(result);
    }
    out
}

/// Reports any `#[shm(...)]` on a field or variant, which takes none.
pub(crate) fn reject_shm(attrs: &[Attribute], place: &str, errors: &mut Errors) {
    for attr in attrs.iter().filter(|a| a.path().is_ident("shm")) {
        errors.push(syn::Error::new_spanned(
            attr,
            format!("`#[shm(...)]` is not supported on {place}; put it on the type"),
        ));
    }
}
