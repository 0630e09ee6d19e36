//! Collects every independent mistake of one `#[task]` so a single compile reports them all.

/// A list of errors that are folded into one `syn::Error` at the end.
#[derive(Default)]
pub(crate) struct Errors {
    list: Vec<syn::Error>,
}

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        self.list.push(error);
    }

    /// Folds the collected errors into one, or `None` when there were none.
    pub(crate) fn combined(self) -> Option<syn::Error> {
        self.list.into_iter().reduce(|mut all, next| {
            all.combine(next);
            all
        })
    }
}
