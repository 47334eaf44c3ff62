//! The attribute's arguments: `#[forge_runner(name = "...", crate = "...")]`.

use proc_macro2::{Span, TokenStream};
use syn::parse::Parser;
use syn::{LitStr, Path};

/// The arguments every `#[forge_runner]` accepts, for error messages.
const EXPECTED: &str = "expected one of: `name`, `crate`";

/// Parsed `#[forge_runner(...)]` arguments.
#[derive(Default)]
pub struct Args {
    /// `name = "..."`: the runner type name suites use; `None` means the
    /// struct's name in kebab-case.
    pub name: Option<LitStr>,
    /// `crate = "..."`: the path of the forge crate; `None` means `::forge`.
    pub krate: Option<Path>,
}

impl Args {
    /// Parses the tokens inside `#[forge_runner(...)]`.
    pub fn parse(tokens: TokenStream) -> syn::Result<Self> {
        let mut args = Args::default();
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("name") {
                if args.name.is_some() {
                    return Err(meta.error("`name` is given twice"));
                }
                let lit = string_value(&meta, "name = \"my-bot\"")?;
                validate_name(&lit)?;
                args.name = Some(lit);
                Ok(())
            } else if meta.path.is_ident("crate") {
                if args.krate.is_some() {
                    return Err(meta.error("`crate` is given twice"));
                }
                let lit = string_value(&meta, "crate = \"my_forge\"")?;
                let path = lit.parse::<Path>().map_err(|_| {
                    syn::Error::new(
                        lit.span(),
                        "`crate` must be the path of the forge crate, like `crate = \"my_forge\"`",
                    )
                })?;
                args.krate = Some(path);
                Ok(())
            } else {
                let key = meta
                    .path
                    .get_ident()
                    .map(|ident| format!("`{ident}`"))
                    .unwrap_or_else(|| "argument".to_owned());
                Err(meta.error(format!("unknown `forge_runner` argument {key}; {EXPECTED}")))
            }
        });
        parser.parse2(tokens)?;
        Ok(args)
    }
}

/// The string literal after `key =`, with an example of the right form in
/// the error.
fn string_value(meta: &syn::meta::ParseNestedMeta<'_>, example: &str) -> syn::Result<LitStr> {
    let value = meta
        .value()
        .map_err(|_| meta.error(format!("expected a value: `{example}`")))?;
    let expr: syn::Expr = value.parse()?;
    match expr {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(lit),
            ..
        }) => Ok(lit),
        other => Err(syn::Error::new_spanned(
            other,
            format!("expected a string literal: `{example}`"),
        )),
    }
}

/// Runner names are what suites write after `type:`; keep them to plain
/// characters so they read well in YAML and in error messages.
fn validate_name(lit: &LitStr) -> syn::Result<()> {
    let name = lit.value();
    if name.is_empty() {
        return Err(syn::Error::new(lit.span(), "the runner name is empty"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(syn::Error::new(
            lit.span(),
            format!(
                "invalid character {bad:?} in runner name; use ASCII letters, digits, `-`, `_` and `.`"
            ),
        ));
    }
    Ok(())
}

/// A type name in kebab-case: `WeatherBot` -> `weather-bot`,
/// `HTTPEchoBot` -> `http-echo-bot`, `Gpt4Bot` -> `gpt4-bot`.
pub fn kebab_case(name: &str) -> String {
    let chars: Vec<char> = name.trim_start_matches("r#").chars().collect();
    let mut out = String::with_capacity(chars.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' {
            if !out.is_empty() && !out.ends_with('-') {
                out.push('-');
            }
            continue;
        }
        if c.is_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let boundary =
                prev.is_lowercase() || prev.is_ascii_digit() || (prev.is_uppercase() && next_lower);
            if boundary && !out.ends_with('-') {
                out.push('-');
            }
        }
        out.extend(c.to_lowercase());
    }
    out.trim_end_matches('-').to_owned()
}

/// The runner name and the span errors about it point at.
pub fn runner_name(args: &Args, type_ident: &syn::Ident) -> (String, Span) {
    match &args.name {
        Some(lit) => (lit.value(), lit.span()),
        None => (kebab_case(&type_ident.to_string()), type_ident.span()),
    }
}

#[cfg(test)]
mod tests {
    use super::kebab_case;

    #[test]
    fn kebab() {
        assert_eq!(kebab_case("WeatherBot"), "weather-bot");
        assert_eq!(kebab_case("Bot"), "bot");
        assert_eq!(kebab_case("HTTPEchoBot"), "http-echo-bot");
        assert_eq!(kebab_case("Gpt4Bot"), "gpt4-bot");
        assert_eq!(kebab_case("My_Bot"), "my-bot");
        assert_eq!(kebab_case("ABC"), "abc");
    }
}
