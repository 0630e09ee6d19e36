//! What `#[task]` emits when the fn cannot be a task: the user's item unchanged, the errors, and
//! a stub module with the generated names, so callers of `f::enqueue` or `f::Args` see the real
//! mistake instead of a cascade of "cannot find" errors.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{FnArg, ItemFn};

use crate::args::TaskArgs;
use crate::expand::runtime_path;

pub(crate) fn fallback(item: &ItemFn, args: &TaskArgs, error: syn::Error) -> TokenStream {
    let krate = runtime_path(args);
    let ident = &item.sig.ident;
    let vis = &item.vis;
    let generics = &item.sig.generics;
    let inputs: Vec<_> =
        item.sig.inputs.iter().filter(|input| matches!(input, FnArg::Typed(_))).collect();
    let error = error.into_compile_error();
    if item.sig.receiver().is_some() {
        // Inside an `impl` block, where a module cannot go: the error alone.
        return quote!(#item #error);
    }
    quote! {
        #item

        #[allow(non_camel_case_types, non_snake_case, dead_code, unused_variables, clippy::all)]
        #vis mod #ident {
            #[allow(unused_imports)]
            use super::*;

            /// Stub: `#[task]` failed on this fn; see the error reported on it.
            pub struct Args {}

            /// Stub: `#[task]` failed on this fn; see the error reported on it.
            pub fn enqueue #generics (__taskflow_tasks: &#krate::Tasks, #(#inputs),*) -> #krate::TaskId {
                ::core::unreachable!()
            }

            /// Stub: `#[task]` failed on this fn; see the error reported on it.
            pub fn enqueue_with #generics (
                __taskflow_tasks: &#krate::Tasks,
                __taskflow_options: #krate::EnqueueOptions,
                #(#inputs),*
            ) -> #krate::TaskId {
                ::core::unreachable!()
            }
        }

        #error
    }
}
