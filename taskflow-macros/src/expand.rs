//! Turns a checked `#[task]` fn into its module: the argument struct, the handle, the typed
//! `enqueue` stubs, one impl of `taskflow::Task` and one registration. All logic (decoding,
//! running, panic capture, retries) lives in ordinary runtime functions that this code calls.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, ItemFn};

use crate::args::TaskArgs;
use crate::duration;
use crate::func::{Output, TaskFn};

/// The root path of the runtime crate: `::taskflow`, or what `crate = "..."` says.
pub(crate) fn runtime_path(args: &TaskArgs) -> TokenStream {
    match args.krate.get() {
        Some(path) => quote!(#path),
        None => quote!(::taskflow),
    }
}

/// Attributes that must apply to every item generated for the fn (`#[cfg]`), and those that
/// document it.
fn split_attrs(attrs: &[Attribute]) -> (Vec<&Attribute>, Vec<&Attribute>) {
    let cfg = attrs.iter().filter(|a| a.path().is_ident("cfg")).collect();
    let doc = attrs.iter().filter(|a| a.path().is_ident("doc")).collect();
    (cfg, doc)
}

/// The `TaskOptions` constant built from the attribute's keys; unset keys keep the runtime's
/// defaults, so the generated code states only what the user wrote.
fn options(krate: &TokenStream, name: &str, args: &TaskArgs, is_async: bool) -> TokenStream {
    let mut calls = Vec::new();
    if let Some(v) = args.retries.get() {
        calls.push(quote!(.retries(#v)));
    }
    if let Some(v) = args.delay.get() {
        let d = duration::tokens(krate, v);
        calls.push(quote!(.delay(#d)));
    }
    if let Some(v) = args.backoff.get() {
        calls.push(quote!(.backoff(#v)));
    }
    if let Some(v) = args.max_delay.get() {
        let d = duration::tokens(krate, v);
        calls.push(quote!(.max_delay(#d)));
    }
    if let Some(v) = args.timeout.get() {
        let d = duration::tokens(krate, v);
        calls.push(quote!(.timeout(#d)));
    }
    if let Some(v) = args.priority.get() {
        calls.push(quote!(.priority(#v)));
    }
    if let Some(v) = args.eager.get() {
        calls.push(quote!(.eager(#v)));
    }
    if let Some(v) = args.requeue_on_interrupt.get() {
        calls.push(quote!(.requeue_on_interrupt(#v)));
    }
    if let Some(v) = args.queue.get() {
        calls.push(quote!(.queue(#v)));
    }
    if let Some(v) = args.concurrency.get() {
        calls.push(quote!(.concurrency(#v)));
    }
    if let Some(v) = args.jitter.get() {
        calls.push(quote!(.jitter(#v)));
    }
    if let Some(spec) = args.schedule.expand(krate) {
        calls.push(quote!(.schedule(#spec)));
    }
    let blocking = !is_async && args.blocking.get().copied().unwrap_or(true);
    calls.push(quote!(.blocking(#blocking)));
    quote!(#krate::TaskOptions::new(#name) #(#calls)*)
}

/// The full expansion for a valid fn.
pub(crate) fn expand(item: &ItemFn, args: &TaskArgs, task: &TaskFn) -> TokenStream {
    let krate = runtime_path(args);
    let private = quote!(#krate::__private);
    let serde_path = quote!(#private::serde).to_string();
    let ident = &item.sig.ident;
    let vis = &item.vis;
    let name = args.name.get().cloned().unwrap_or_else(|| ident.to_string());
    let (cfg_attrs, doc_attrs) = split_attrs(&item.attrs);

    let names: Vec<_> = task.params.iter().map(|p| &p.name).collect();
    let types: Vec<_> = task.params.iter().map(|p| &p.ty).collect();

    // `From` for the value itself (one parameter) or a tuple in order (zero, or several).
    let (from_ty, from_pat) = match task.params.len() {
        1 => (quote!(#(#types)*), quote!(#(#names)*)),
        _ => (quote!((#(#types,)*)), quote!((#(#names,)*))),
    };

    // The user's fn, unchanged but for its name and visibility: `f::call`.
    let mut call_fn = item.clone();
    call_fn.sig.ident = format_ident!("call", span = ident.span());
    call_fn.vis = syn::parse_quote!(pub);

    let convert = match &task.output {
        Output::Unit => quote! {
            let () = __taskflow_output;
            #private::Result::Ok(#private::Option::None)
        },
        Output::Result => quote! {
            match __taskflow_output {
                #private::Result::Ok(__taskflow_value) => #private::success(&__taskflow_value),
                #private::Result::Err(__taskflow_error) => {
                    #[allow(unused_imports)]
                    use #private::{ProbeStdError as _, ProbeDynError as _, ProbeDynSendSyncError as _, ProbeDisplay as _};
                    #private::Result::Err((&&&#private::ErrorProbe(&__taskflow_error)).__taskflow_failure())
                }
            }
        },
        Output::Plain(ty) => {
            let check = quote_spanned! {ty.span()=>
                #private::assert_result::<#ty>();
            };
            quote! {
                #check
                #private::success(&__taskflow_output)
            }
        }
    };

    let invoke_body = if task.is_async {
        quote_spanned! {item.sig.ident.span()=>
            #private::Invocation::future(async move {
                let __taskflow_output = call(#(#names),*).await;
                #convert
            })
        }
    } else {
        let blocking = args.blocking.get().copied().unwrap_or(true);
        let ctor = if blocking { quote!(blocking) } else { quote!(inline) };
        quote! {
            #private::Invocation::#ctor(move || {
                let __taskflow_output = call(#(#names),*);
                #convert
            })
        }
    };

    // Each parameter type must be storable; the bound is checked at the parameter's own span.
    let arg_checks = types.iter().map(|ty| {
        quote_spanned! {ty.span()=> #private::assert_argument::<#ty>(); }
    });

    let options = options(&krate, &name, args, task.is_async);
    let args_doc = format!(
        "The arguments of the `{name}` task: one field per parameter, same names, same types."
    );
    let handle_doc = format!("The `{name}` task as a value: pass it to `Tasks::add_task`.");

    quote! {
        #(#cfg_attrs)*
        #(#doc_attrs)*
        #[allow(non_camel_case_types, non_snake_case, non_upper_case_globals, clippy::module_name_repetitions)]
        #vis mod #ident {
            #[allow(unused_imports)]
            use super::*;

            #[doc = #args_doc]
            #[derive(#private::serde::Serialize, #private::serde::Deserialize, ::core::fmt::Debug, ::core::clone::Clone)]
            #[serde(crate = #serde_path)]
            pub struct Args {
                #( #[allow(missing_docs)] pub #names: #types, )*
            }

            impl ::core::convert::From<#from_ty> for Args {
                #[inline]
                fn from(#from_pat: #from_ty) -> Self {
                    Args { #(#names),* }
                }
            }

            #[doc = #handle_doc]
            #[derive(::core::clone::Clone, ::core::marker::Copy, ::core::fmt::Debug, ::core::default::Default)]
            pub struct #ident;

            #call_fn

            static OPTIONS: #krate::TaskOptions = #options;

            impl #krate::Task for #ident {
                type Args = Args;

                #[inline]
                fn options() -> &'static #krate::TaskOptions {
                    &OPTIONS
                }

                fn invoke(__taskflow_args: Args) -> #krate::Invocation {
                    #(#arg_checks)*
                    let Args { #(#names),* } = __taskflow_args;
                    #invoke_body
                }
            }

            impl #krate::IntoTaskArgs<#ident> for Args {
                #[inline]
                fn into_args(self) -> Args {
                    self
                }
            }

            impl #krate::IntoTaskArgs<#ident> for #from_ty {
                #[inline]
                fn into_args(self) -> Args {
                    ::core::convert::From::from(self)
                }
            }

            /// Enqueues this task with its parameters, typed exactly as the fn declares them.
            #[inline]
            pub fn enqueue(__taskflow_tasks: &#krate::Tasks, #(#names: #types),*) -> #krate::TaskId {
                __taskflow_tasks.add_task(#ident, Args { #(#names),* })
            }

            /// Enqueues this task with per-call options, which override the `#[task]` defaults.
            #[inline]
            pub fn enqueue_with(
                __taskflow_tasks: &#krate::Tasks,
                __taskflow_options: #krate::EnqueueOptions,
                #(#names: #types),*
            ) -> #krate::TaskId {
                __taskflow_tasks.add_task_with(#ident, Args { #(#names),* }, __taskflow_options)
            }

            #private::inventory::submit! {
                #private::Registration::new(
                    &OPTIONS,
                    #private::invoke_json::<#ident>,
                    ::core::module_path!(),
                    ::core::file!(),
                    ::core::line!(),
                )
            }
        }

        #(#cfg_attrs)*
        #(#doc_attrs)*
        #[allow(non_upper_case_globals)]
        #vis const #ident: #ident::#ident = #ident::#ident;
    }
}
