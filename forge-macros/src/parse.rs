//! Reads the annotated item: an inherent `impl` block holding one `async fn`.
//!
//! Every mistake found is reported, each spanned on the offending tokens and
//! naming the valid forms; several mistakes in one method are reported
//! together.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{
    FnArg, GenericArgument, ImplItem, ImplItemFn, Item, ItemImpl, PathArguments, ReturnType, Type,
};

/// The accepted method shape, quoted in error messages.
const FORM: &str = "async fn NAME(&self, query: &str) -> Result<String, E>";
/// The accepted parameter lists, quoted in error messages.
const PARAMS: &str = "`(&self, query: &str)`, optionally followed by `batch: &Batch` and/or `session: &Session<'_>`, in that order";

/// What the macro needs to know about the runner.
pub struct RunnerImpl {
    /// The impl block, emitted unchanged.
    pub item: ItemImpl,
    /// The struct the impl block is for (`Self`).
    pub self_ty: Type,
    /// The last identifier of the struct's path, for the default name.
    pub type_ident: syn::Ident,
    /// The runner method.
    pub method: syn::Ident,
    /// Whether the method takes `batch: &Batch` after the query.
    pub takes_batch: bool,
    /// Whether the method takes `session: &Session<'_>` last.
    pub takes_session: bool,
    /// Span of the `Ok` type (first argument of `Result`).
    pub ok_span: Span,
    /// Span of the error type (second argument of `Result`, or the whole
    /// `Result` alias when it has one argument).
    pub err_span: Span,
}

/// Collects several errors and reports them together.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn spanned(&mut self, tokens: impl quote::ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// Parses the item `#[forge_runner]` is placed on.
pub fn parse(item: Item) -> syn::Result<RunnerImpl> {
    let item = match item {
        Item::Impl(item) => item,
        Item::Fn(f) => {
            return Err(syn::Error::new(
                f.sig.fn_token.span,
                "`#[forge_runner]` goes on the `impl` block that holds the runner method, \
                 not on a free function: `#[forge_runner] impl MyBot { async fn answer(&self, query: &str) -> Result<String, E> { ... } }`",
            ))
        }
        Item::Struct(s) => {
            return Err(syn::Error::new(
                s.struct_token.span,
                "`#[forge_runner]` goes on the struct's `impl` block, not on the struct: \
                 `#[forge_runner] impl MyBot { async fn answer(&self, query: &str) -> Result<String, E> { ... } }`",
            ))
        }
        other => {
            return Err(syn::Error::new(
                first_span(&other),
                "`#[forge_runner]` goes on an inherent `impl` block: \
                 `#[forge_runner] impl MyBot { async fn answer(&self, query: &str) -> Result<String, E> { ... } }`",
            ))
        }
    };

    if let Some((_, trait_path, _)) = &item.trait_ {
        return Err(syn::Error::new_spanned(
            trait_path,
            "`#[forge_runner]` goes on an inherent `impl MyBot { ... }` block, not on a trait impl; \
             it writes the `Runner` impl for you",
        ));
    }
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(
            &item.generics,
            "generic runners are not supported: `#[forge_runner]` needs a concrete type it can build from the suite's mapping",
        ));
    }
    if let Some(unsafety) = &item.unsafety {
        return Err(syn::Error::new_spanned(
            unsafety,
            "`unsafe impl` is not supported by `#[forge_runner]`",
        ));
    }
    let self_ty = (*item.self_ty).clone();
    let type_ident = match &self_ty {
        Type::Path(path) if path.qself.is_none() => path
            .path
            .segments
            .last()
            .map(|segment| segment.ident.clone()),
        _ => None,
    }
    .ok_or_else(|| {
        syn::Error::new_spanned(
            &self_ty,
            "`#[forge_runner]` needs an `impl` block for a named struct: `impl MyBot { ... }`",
        )
    })?;

    let method = single_method(&item)?;
    let sig = analyse(method)?;
    Ok(RunnerImpl {
        self_ty,
        type_ident,
        method: method.sig.ident.clone(),
        takes_batch: sig.takes_batch,
        takes_session: sig.takes_session,
        ok_span: sig.ok_span,
        err_span: sig.err_span,
        item,
    })
}

/// The block's only item, which must be a method.
fn single_method(item: &ItemImpl) -> syn::Result<&ImplItemFn> {
    let mut methods = item.items.iter();
    match (methods.next(), methods.next()) {
        (None, _) => Err(syn::Error::new(
            item.brace_token.span.join(),
            format!("this `impl` block has no runner method; expected one `{FORM}`"),
        )),
        (Some(ImplItem::Fn(method)), None) => Ok(method),
        (Some(other), None) => Err(syn::Error::new_spanned(
            other,
            format!("expected the runner method `{FORM}`"),
        )),
        (Some(_), Some(second)) => Err(syn::Error::new_spanned(
            second,
            "a `#[forge_runner]` impl block holds exactly one method, the runner method; \
             put helper methods and constants in another `impl` block",
        )),
    }
}

/// What the method's signature says.
struct Signature {
    takes_batch: bool,
    takes_session: bool,
    ok_span: Span,
    err_span: Span,
}

/// Checks the method's signature, reporting every mistake at once.
fn analyse(method: &ImplItemFn) -> syn::Result<Signature> {
    let sig = &method.sig;
    let mut errors = Errors::default();

    if sig.asyncness.is_none() {
        errors.spanned(
            sig.fn_token,
            format!("the runner method must be an `async fn`: `{FORM}`"),
        );
    }
    if let Some(constness) = &sig.constness {
        errors.spanned(constness, "the runner method cannot be `const`");
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.spanned(unsafety, "the runner method cannot be `unsafe`");
    }
    if let Some(abi) = &sig.abi {
        errors.spanned(abi, "the runner method cannot have an `extern` ABI");
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.spanned(&sig.generics, "the runner method cannot be generic");
    }
    if let Some(variadic) = &sig.variadic {
        errors.spanned(variadic, "the runner method cannot be variadic");
    }

    // The receiver: `&self` only.
    let mut inputs = sig.inputs.iter().peekable();
    match inputs.peek() {
        Some(FnArg::Receiver(receiver)) => {
            inputs.next();
            let plain_ref = receiver.colon_token.is_none()
                && receiver.reference.is_some()
                && receiver.mutability.is_none();
            if !plain_ref {
                let message = if receiver.colon_token.is_some() {
                    format!("the runner method takes plain `&self`: `{FORM}`")
                } else if receiver.reference.is_none() {
                    format!(
                        "the runner method takes `&self`, not `self`: one runner answers every turn of the suite; `{FORM}`"
                    )
                } else {
                    format!(
                        "the runner method takes `&self`, not `&mut self`: one runner answers many sessions at once \
                         (keep mutable state behind a `Mutex`); `{FORM}`"
                    )
                };
                errors.spanned(receiver, message);
            }
        }
        _ => errors.push(syn::Error::new(
            sig.paren_token.span.join(),
            format!("the runner method must take `&self` first: `{FORM}`"),
        )),
    }

    // The parameters, identified by type: `&str`, `&Batch`, `&Session`.
    let mut takes_query = false;
    let mut takes_batch = false;
    let mut takes_session = false;
    let mut bad_params = false;
    for (index, input) in inputs.enumerate() {
        let FnArg::Typed(typed) = input else {
            errors.spanned(input, "unexpected receiver");
            continue;
        };
        let kind = param_kind(&typed.ty);
        if index == 0 && kind.is_none() {
            bad_params = true;
            errors.spanned(
                &typed.ty,
                format!("the first parameter is the query, `query: &str`; the runner method takes {PARAMS}"),
            );
            continue;
        }
        let ok = match kind {
            Some(Param::Query) => !takes_query && !takes_batch && !takes_session,
            Some(Param::Batch) => takes_query && !takes_batch && !takes_session,
            Some(Param::Session) => takes_query && !takes_session,
            None => false,
        };
        if !ok {
            bad_params = true;
            let message = match kind {
                None => format!("unexpected parameter type; the runner method takes {PARAMS}"),
                Some(_) => format!("parameter out of order; the runner method takes {PARAMS}"),
            };
            errors.spanned(&typed.ty, message);
        }
        match kind {
            Some(Param::Query) => takes_query = true,
            Some(Param::Batch) => takes_batch = true,
            Some(Param::Session) => takes_session = true,
            None => {}
        }
    }
    if !takes_query && !bad_params {
        errors.push(syn::Error::new(
            sig.paren_token.span.join(),
            format!("the runner method takes the query: {PARAMS}"),
        ));
    }

    // The return type: `Result<T, E>` (or a one-argument `Result` alias).
    let (ok_span, err_span) = match result_args(&sig.output) {
        Some(spans) => spans,
        None => {
            let message = "the runner method must return `Result<String, E>` (`E: Display`), \
                           `Result<Reply, E>`, or a `Result` of anything `Into<Reply>`";
            match &sig.output {
                ReturnType::Default => errors.push(syn::Error::new(
                    sig.paren_token.span.close(),
                    format!("{message}; it returns nothing"),
                )),
                ReturnType::Type(_, ty) => errors.spanned(ty, message),
            }
            (Span::call_site(), Span::call_site())
        }
    };

    errors.finish()?;
    Ok(Signature {
        takes_batch,
        takes_session,
        ok_span,
        err_span,
    })
}

/// The kinds of parameter a runner method may take after `&self`.
#[derive(Clone, Copy)]
enum Param {
    Query,
    Batch,
    Session,
}

/// `&str` is the query, `&Batch` the batch, `&Session<'_>` the session.
fn param_kind(ty: &Type) -> Option<Param> {
    let Type::Reference(reference) = ty else {
        return None;
    };
    if reference.mutability.is_some() {
        return None;
    }
    let Type::Path(path) = &*reference.elem else {
        return None;
    };
    if path.qself.is_some() {
        return None;
    }
    let last = path.path.segments.last()?;
    match last.ident.to_string().as_str() {
        "str" if path.path.segments.len() == 1 && last.arguments.is_empty() => Some(Param::Query),
        "Batch" if last.arguments.is_empty() => Some(Param::Batch),
        "Session" => Some(Param::Session),
        _ => None,
    }
}

/// The spans of `T` and `E` in `-> Result<T, E>` (any path ending in
/// `Result`; a one-argument alias such as `io::Result<T>` gives the whole
/// type's span for `E`).
fn result_args(output: &ReturnType) -> Option<(Span, Span)> {
    let ReturnType::Type(_, ty) = output else {
        return None;
    };
    let Type::Path(path) = &**ty else {
        return None;
    };
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let types: Vec<&Type> = args
        .args
        .iter()
        .filter_map(|arg| match arg {
            GenericArgument::Type(ty) => Some(ty),
            _ => None,
        })
        .collect();
    match types.as_slice() {
        [ok] => Some((ok.span(), ty.span())),
        [ok, err] => Some((ok.span(), err.span())),
        _ => None,
    }
}

/// The span of an item's first meaningful token, for errors about the
/// whole item.
fn first_span(item: &Item) -> Span {
    use quote::ToTokens;
    let tokens = match item {
        Item::Enum(i) => i.enum_token.to_token_stream(),
        Item::Trait(i) => i.trait_token.to_token_stream(),
        Item::Mod(i) => i.mod_token.to_token_stream(),
        Item::Const(i) => i.const_token.to_token_stream(),
        Item::Static(i) => i.static_token.to_token_stream(),
        Item::Type(i) => i.type_token.to_token_stream(),
        Item::Union(i) => i.union_token.to_token_stream(),
        Item::Use(i) => i.use_token.to_token_stream(),
        other => other.to_token_stream(),
    };
    tokens.span()
}
