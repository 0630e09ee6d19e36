//! The analysed signature of a `#[task]` fn: what the expansion needs, and every reason the fn
//! cannot be a task, each reported on the token that causes it.

use syn::visit::Visit;
use syn::{FnArg, Ident, ItemFn, Pat, ReturnType, Type};

use crate::errors::Errors;

/// One parameter: its name (the field of `Args`) and its type, both with the user's spans.
pub(crate) struct Param {
    pub(crate) name: Ident,
    pub(crate) ty: Type,
}

/// How the fn's return value becomes the task's outcome.
pub(crate) enum Output {
    /// No return type, or `()`: success with no result.
    Unit,
    /// A type whose name ends in `Result` (`Result`, `anyhow::Result`, `io::Result`, ...):
    /// `Ok` is the result, `Err` a failed attempt.
    Result,
    /// Any other type: the value is the result.
    Plain(Box<Type>),
}

/// A fn that passed every check.
pub(crate) struct TaskFn {
    pub(crate) params: Vec<Param>,
    pub(crate) output: Output,
    pub(crate) is_async: bool,
}

impl TaskFn {
    /// Checks the signature. Every problem is pushed to `errors`; `None` when there was one.
    pub(crate) fn analyse(item: &ItemFn, errors: &mut Errors) -> Option<TaskFn> {
        let mut errs = Vec::new();
        let sig = &item.sig;
        if let Some(unsafety) = &sig.unsafety {
            errs.push(syn::Error::new_spanned(
                unsafety,
                "`#[task]` cannot be applied to an `unsafe fn`: a task runs without a caller to uphold its safety contract; make the fn safe and call the unsafe code inside",
            ));
        }
        if let Some(abi) = &sig.abi {
            errs.push(syn::Error::new_spanned(
                abi,
                "`#[task]` cannot be applied to an `extern` fn: remove the ABI",
            ));
        }
        if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
            errs.push(syn::Error::new_spanned(
                &sig.generics,
                "`#[task]` fns cannot be generic: a stored task is run again from its name and JSON arguments alone, so every parameter needs a concrete type",
            ));
        }
        if let Some(variadic) = &sig.variadic {
            errs.push(syn::Error::new_spanned(variadic, "`#[task]` fns cannot be variadic"));
        }

        let mut params = Vec::new();
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(receiver) => errs.push(syn::Error::new_spanned(
                    receiver.self_token,
                    "`#[task]` cannot be applied to a method taking `self`: a task is run from its stored arguments alone; make it a free fn and pass what it needs as arguments",
                )),
                FnArg::Typed(typed) => {
                    let name = match &*typed.pat {
                        Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => {
                            Some(pat.ident.clone())
                        }
                        other => {
                            errs.push(syn::Error::new_spanned(
                                other,
                                "`#[task]` parameters must be plain names such as `pair: (u8, u8)`, because each becomes a named field of the stored arguments; destructure inside the body instead",
                            ));
                            None
                        }
                    };
                    let before_ty = errs.len();
                    check_owned(&typed.ty, &mut errs);
                    if let (Some(name), true) = (name, errs.len() == before_ty) {
                        params.push(Param { name, ty: (*typed.ty).clone() });
                    }
                }
            }
        }

        let output = match &sig.output {
            ReturnType::Default => Some(Output::Unit),
            ReturnType::Type(_, ty) => match &**ty {
                Type::Tuple(tuple) if tuple.elems.is_empty() => Some(Output::Unit),
                Type::ImplTrait(_) => {
                    errs.push(syn::Error::new_spanned(
                        ty,
                        "`#[task]` fns cannot return `impl Trait`: name the type, or write an `async fn` instead of returning `impl Future`",
                    ));
                    None
                }
                Type::Path(path)
                    if path.qself.is_none()
                        && path
                            .path
                            .segments
                            .last()
                            .is_some_and(|s| s.ident.to_string().ends_with("Result")) =>
                {
                    Some(Output::Result)
                }
                other => Some(Output::Plain(Box::new(other.clone()))),
            },
        };

        let failed = !errs.is_empty();
        for err in errs {
            errors.push(err);
        }
        if failed {
            return None;
        }
        Some(TaskFn { params, output: output?, is_async: sig.asyncness.is_some() })
    }
}

/// Rejects a parameter type that borrows: the arguments are stored as JSON and outlive the
/// request that enqueued them. The error suggests the owned type.
fn check_owned(ty: &Type, errs: &mut Vec<syn::Error>) {
    struct Borrows<'a> {
        errs: &'a mut Vec<syn::Error>,
        outer: &'a Type,
    }
    impl<'ast> Visit<'ast> for Borrows<'_> {
        fn visit_type_reference(&mut self, reference: &'ast syn::TypeReference) {
            let owned = owned_suggestion(&reference.elem);
            let msg = if matches!(self.outer, Type::Reference(outer) if outer == reference) {
                format!(
                    "`#[task]` parameters must be owned, because the arguments are stored as JSON and outlive the caller: use `{owned}` instead"
                )
            } else {
                format!(
                    "`#[task]` parameters must not contain borrowed data, because the arguments are stored as JSON and outlive the caller: use `{owned}` instead of this reference"
                )
            };
            self.errs.push(syn::Error::new_spanned(reference, msg));
        }
        fn visit_type_impl_trait(&mut self, it: &'ast syn::TypeImplTrait) {
            self.errs.push(syn::Error::new_spanned(
                it,
                "`#[task]` parameters cannot be `impl Trait`: a stored task is run again from its JSON arguments, so name a concrete type",
            ));
        }
        fn visit_type_trait_object(&mut self, it: &'ast syn::TypeTraitObject) {
            self.errs.push(syn::Error::new_spanned(
                it,
                "`#[task]` parameters cannot be trait objects: name a concrete type that implements `Serialize` and `Deserialize`",
            ));
        }
        fn visit_lifetime(&mut self, lifetime: &'ast syn::Lifetime) {
            if lifetime.ident != "static" {
                self.errs.push(syn::Error::new_spanned(
                    lifetime,
                    "`#[task]` parameters cannot borrow: use an owned type without lifetimes",
                ));
            }
        }
    }
    let mut visitor = Borrows { errs, outer: ty };
    visitor.visit_type(ty);
}

/// The owned type a newcomer should write instead of `&elem`.
fn owned_suggestion(elem: &Type) -> String {
    let text = quote::ToTokens::to_token_stream(elem).to_string().replace(' ', "");
    match elem {
        Type::Path(p) if p.path.is_ident("str") => "String".to_owned(),
        Type::Path(p) if p.path.is_ident("Path") => "PathBuf".to_owned(),
        Type::Slice(slice) => {
            format!(
                "Vec<{}>",
                quote::ToTokens::to_token_stream(&slice.elem).to_string().replace(' ', "")
            )
        }
        _ => text,
    }
}
