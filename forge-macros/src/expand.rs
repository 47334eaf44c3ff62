//! Writes the code: the user's impl block unchanged, a name marker that makes
//! two runners with one name in one module a compile error, and, inside
//! `const _: () = { ... };`, the `Runner` impl and its `inventory`
//! registration. Generated code names only paths under the forge crate.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, Item, Path};

use crate::attr::{self, Args};
use crate::parse::{self, RunnerImpl};

/// Expands `#[forge_runner(args)] item`.
pub fn forge_runner(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    // Report bad arguments and a bad item together.
    let args = Args::parse(args);
    let runner = syn::parse2::<Item>(item).and_then(parse::parse);
    let (args, runner) = match (args, runner) {
        (Ok(args), Ok(runner)) => (args, runner),
        (Err(mut a), Err(b)) => {
            a.combine(b);
            return Err(a);
        }
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    Ok(expand(&args, &runner))
}

fn expand(args: &Args, runner: &RunnerImpl) -> TokenStream {
    let krate: Path = args
        .krate
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(::forge));
    let (name, name_span) = attr::runner_name(args, &runner.type_ident);
    let marker = marker_ident(&name, name_span);
    let item = &runner.item;
    let self_ty = &runner.self_ty;
    let method = &runner.method;

    let batch = quote!(__forge_batch);
    let session = quote!(__forge_session);
    let mut call_args = vec![quote!(&#batch.query)];
    if runner.takes_batch {
        call_args.push(batch.clone());
    }
    if runner.takes_session {
        call_args.push(session.clone());
    }

    // Spanned on the user's `Result<T, E>` so that a `T` that is not a reply
    // or an `E` that is not `Display` is reported there.
    let into_reply = respan(
        quote!(#krate::__private::into_reply(__forge_answer)),
        runner.ok_span,
    );
    let into_error = respan(
        quote!((&#krate::__private::ErrorWrap(__forge_error)).__forge_into_run_error()),
        runner.err_span,
    );
    // Spanned on the struct, so that a struct without `Deserialize` is
    // reported there.
    let config = respan(
        quote!(#krate::__private::runner_config::<#self_ty>),
        self_ty.span(),
    );
    // Spanned on the name, so that a second runner with it points there.
    let marker = quote_spanned! {name_span=>
        /// Marks the runner name as used in this module, so that two
        /// `#[forge_runner]`s with one name are a compile error.
        #[doc(hidden)]
        #[allow(non_camel_case_types, dead_code)]
        struct #marker;
    };

    quote! {
        #item

        #marker

        const _: () = {
            #[#krate::__private::async_trait]
            impl #krate::Runner for #self_ty {
                async fn call(
                    &self,
                    #batch: &#krate::Batch,
                    #session: &#krate::Session<'_>,
                ) -> ::core::result::Result<#krate::Reply, #krate::RunError> {
                    #[allow(unused_imports)]
                    use #krate::__private::{ViaDisplay as _, ViaRunError as _};
                    match <#self_ty>::#method(self, #(#call_args),*).await {
                        ::core::result::Result::Ok(__forge_answer) => {
                            ::core::result::Result::Ok(#into_reply)
                        }
                        ::core::result::Result::Err(__forge_error) => {
                            ::core::result::Result::Err(#into_error)
                        }
                    }
                }
            }

            fn __forge_build(
                config: #krate::__private::serde_json::Value,
                _context: &#krate::__private::BuildContext,
            ) -> ::core::result::Result<
                #krate::__private::Arc<dyn #krate::Runner>,
                #krate::ConfigError,
            > {
                let runner = #config(#name, config)?;
                ::core::result::Result::Ok(#krate::__private::Arc::new(runner))
            }

            #krate::__private::inventory::submit! {
                #krate::__private::RunnerType {
                    name: #name,
                    build: __forge_build,
                }
            }
        };
    }
}

/// `tokens` with every span set to `span`, so that type errors in them are
/// reported on the user's tokens rather than on the attribute.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let TokenTree::Group(group) = &token {
                let mut inner = Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                token = TokenTree::Group(inner);
            } else {
                token.set_span(span);
            }
            token
        })
        .collect()
}

/// The identifier of the item that marks `name` as used: readable when the
/// name is letters, digits and `-` (`weather-bot` ->
/// `forge_runner_named_weather_bot`), hex-encoded otherwise, so that two
/// different names never share a marker.
fn marker_ident(name: &str, span: Span) -> Ident {
    let readable = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let ident = if readable {
        format!("forge_runner_named_{}", name.replace('-', "_"))
    } else {
        let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
        format!("forge_runner_hex_{hex}")
    };
    Ident::new(&ident, span)
}
