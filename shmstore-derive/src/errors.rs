//! Collecting every error of one derive invocation.

/// Accumulates spanned errors so that one compile reports every problem
/// (every bad field, every bad `repr` hint), not just the first.
#[derive(Default)]
pub(crate) struct Errors {
    combined: Option<syn::Error>,
}

impl Errors {
    /// Records one error.
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.combined {
            Some(all) => all.combine(error),
            None => self.combined = Some(error),
        }
    }

    /// Records the error of `result`, if any, and returns its value.
    pub(crate) fn take<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.push(error);
                None
            }
        }
    }

    /// `Err` with every recorded error, or `Ok` if there was none.
    pub(crate) fn finish(self) -> syn::Result<()> {
        match self.combined {
            Some(all) => Err(all),
            None => Ok(()),
        }
    }
}
