//! The `#[task]` attribute of [taskflow](https://docs.rs/taskflow). Depend on `taskflow` and use
//! it as `taskflow::task`; the documentation lives there.
//!
//! Each expansion is a fixed pipeline: parse the keys ([`args`]), check the signature
//! ([`func`]), then either expand ([`expand`]) or, on any error, emit the user's fn with the
//! errors and a stub ([`fallback`]). Set `TASKFLOW_MACROS_DEBUG=1` while building to print every
//! expansion to stderr.

mod args;
mod duration;
mod errors;
mod expand;
mod fallback;
mod func;
mod schedule;

use proc_macro::TokenStream;

use crate::args::TaskArgs;
use crate::errors::Errors;
use crate::func::TaskFn;

/// Declares a background task. See `taskflow::task` for the documentation.
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    let output = task_impl(attr.into(), item.into());
    if std::env::var_os("TASKFLOW_MACROS_DEBUG").is_some() {
        eprintln!("{output}");
    }
    output.into()
}

fn task_impl(
    attr: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    let mut errors = Errors::default();
    let args = TaskArgs::parse(attr, &mut errors);
    let item_fn = match syn::parse2::<syn::Item>(item.clone()) {
        Ok(syn::Item::Fn(item_fn)) => item_fn,
        Ok(other) => {
            let error = syn::Error::new_spanned(
                item_kind_token(&other).unwrap_or_else(|| quote::quote!(#other)),
                "`#[task]` can only be applied to a free `fn` or `async fn`",
            )
            .into_compile_error();
            return quote::quote!(#item #error);
        }
        Err(err) => {
            let error = err.into_compile_error();
            return quote::quote!(#item #error);
        }
    };
    if let Some(blocking) = args.blocking.span().filter(|_| item_fn.sig.asyncness.is_some()) {
        errors.push(syn::Error::new(
            blocking,
            "`blocking` applies only to sync fns: an `async fn` always runs on the async runtime; remove `blocking` or make the fn sync",
        ));
    }
    let task = TaskFn::analyse(&item_fn, &mut errors);
    args.schedule.check(item_fn.sig.inputs.len(), &mut errors);
    match (errors.combined(), task) {
        (None, Some(task)) => expand::expand(&item_fn, &args, &task),
        (Some(error), _) => fallback::fallback(&item_fn, &args, error),
        (None, None) => unreachable!("a signature that fails analysis always reports an error"),
    }
}

/// The keyword that names what kind of item this is (`struct`, `impl`, ...), for a precise span.
fn item_kind_token(item: &syn::Item) -> Option<proc_macro2::TokenStream> {
    use quote::ToTokens;
    Some(match item {
        syn::Item::Struct(i) => i.struct_token.into_token_stream(),
        syn::Item::Enum(i) => i.enum_token.into_token_stream(),
        syn::Item::Impl(i) => i.impl_token.into_token_stream(),
        syn::Item::Trait(i) => i.trait_token.into_token_stream(),
        syn::Item::Mod(i) => i.mod_token.into_token_stream(),
        syn::Item::Static(i) => i.static_token.into_token_stream(),
        syn::Item::Const(i) => i.const_token.into_token_stream(),
        syn::Item::Type(i) => i.type_token.into_token_stream(),
        syn::Item::Use(i) => i.use_token.into_token_stream(),
        syn::Item::Union(i) => i.union_token.into_token_stream(),
        _ => return None,
    })
}
