//! The schedule keys of `#[task]`: `cron`, `timezone`, `every`, `catch_up`, `overlap` and
//! `run_on_startup`, checked at compile time with the crates the runtime reads them with
//! (croner for cron expressions, chrono-tz for zones, humantime for durations), so that a
//! schedule that compiles is one the runtime accepts.

use std::str::FromStr;

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::{Expr, Lit};

use crate::args::{Attr, Dur, bool_value, edit_distance, literal};
use crate::duration::{self, duration_value};
use crate::errors::Errors;

/// The schedule keys, in the order the docs list them.
pub(crate) const KEYS: &[&str] =
    &["cron", "timezone", "every", "catch_up", "overlap", "run_on_startup"];

/// The accepted form of a cron expression, for the error messages.
const CRON_FORM: &str = "write five fields (minute hour day-of-month month day-of-week) such as `cron = \"0 2 * * *\"` or `cron = \"*/15 * * * MON-FRI\"`, optionally a leading seconds field, or `@hourly`/`@daily`/`@weekly`";

/// The parsed schedule keys.
pub(crate) struct ScheduleArgs {
    cron: Attr<String>,
    timezone: Attr<String>,
    every: Attr<Dur>,
    catch_up: Attr<Dur>,
    /// `true` for `overlap = "skip"`.
    skip_overlap: Attr<bool>,
    run_on_startup: Attr<bool>,
}

impl ScheduleArgs {
    pub(crate) fn empty() -> Self {
        ScheduleArgs {
            cron: Attr::new("cron"),
            timezone: Attr::new("timezone"),
            every: Attr::new("every"),
            catch_up: Attr::new("catch_up"),
            skip_overlap: Attr::new("overlap"),
            run_on_startup: Attr::new("run_on_startup"),
        }
    }

    /// Parses `key = value` when `key` is a schedule key; `None` when it is not one.
    pub(crate) fn parse_key(
        &mut self,
        key: &str,
        value: &Expr,
        span: Span,
        errors: &mut Errors,
    ) -> Option<syn::Result<()>> {
        Some(match key {
            "cron" => cron_value(value).map(|v| self.cron.set(span, v, errors)),
            "timezone" => zone_value(value).map(|v| self.timezone.set(span, v, errors)),
            "every" => every_value(value).map(|v| self.every.set(span, v, errors)),
            "catch_up" => {
                duration_value(value, "catch_up", true).map(|v| self.catch_up.set(span, v, errors))
            }
            "overlap" => overlap_value(value).map(|v| self.skip_overlap.set(span, v, errors)),
            "run_on_startup" => bool_value(value, "run_on_startup")
                .map(|v| self.run_on_startup.set(span, v, errors)),
            _ => return None,
        })
    }

    /// The rules across keys, and that a scheduled task takes no parameters (`params` of
    /// them): each error on the key it is about.
    pub(crate) fn check(&self, params: usize, errors: &mut Errors) {
        let grid = self.cron.span().or(self.every.span());
        if let (Some(_), Some(every)) = (self.cron.span(), self.every.span()) {
            errors.push(syn::Error::new(
                every,
                "`cron` and `every` are two schedules for one task: keep one (a task with several schedules can be scheduled at run time with `manager.schedule`)",
            ));
        }
        if let (Some(zone), None) = (self.timezone.span(), self.cron.span()) {
            errors.push(syn::Error::new(
                zone,
                "`timezone` is the zone a `cron` expression is read in: add `cron = \"0 2 * * *\"`, or remove it (`every` counts absolute time)",
            ));
        }
        if grid.is_none() {
            let loose = [
                ("catch_up", self.catch_up.span()),
                ("overlap", self.skip_overlap.span()),
                ("run_on_startup", self.run_on_startup.span()),
            ];
            for (key, span) in loose {
                if let Some(span) = span {
                    errors.push(syn::Error::new(
                        span,
                        format!("`{key}` applies to a schedule: add `cron = \"0 2 * * *\"` or `every = \"5m\"`"),
                    ));
                }
            }
        }
        if let Some(span) = grid.filter(|_| params > 0) {
            errors.push(syn::Error::new(
                span,
                "a task with `cron` or `every` takes no parameters, as its slots have no arguments to pass: remove the parameters, or schedule it with its arguments at run time (`manager.schedule(name, schedule, task, args)`)",
            ));
        }
    }

    /// The `ScheduleSpec` the options carry, when a schedule is declared.
    pub(crate) fn expand(&self, krate: &TokenStream) -> Option<TokenStream> {
        let duration = |d: &Dur| duration::tokens(krate, d);
        let mut spec = match (self.cron.get(), self.every.get()) {
            (Some(expr), _) => quote!(#krate::ScheduleSpec::cron(#expr)),
            (None, Some(every)) => {
                let every = duration(every);
                quote!(#krate::ScheduleSpec::every(#every))
            }
            (None, None) => return None,
        };
        if let Some(zone) = self.timezone.get() {
            spec = quote!(#spec.timezone(#zone));
        }
        if let Some(window) = self.catch_up.get() {
            let window = duration(window);
            spec = quote!(#spec.catch_up(#window));
        }
        if let Some(true) = self.skip_overlap.get() {
            spec = quote!(#spec.overlap(#krate::Overlap::Skip));
        }
        if let Some(run) = self.run_on_startup.get() {
            spec = quote!(#spec.run_on_startup(#run));
        }
        Some(spec)
    }
}

fn string_value(expr: &Expr, key: &str, example: &str) -> syn::Result<String> {
    match literal(expr) {
        Some((Lit::Str(s), false)) => Ok(s.value()),
        _ => Err(syn::Error::new_spanned(
            expr,
            format!("`{key}` must be a string literal: write `{key} = {example}`"),
        )),
    }
}

fn cron_value(expr: &Expr) -> syn::Result<String> {
    let text = string_value(expr, "cron", "\"0 2 * * *\"")?;
    match croner::Cron::from_str(text.trim()) {
        Ok(_) => Ok(text.trim().to_owned()),
        Err(err) => Err(syn::Error::new_spanned(
            expr,
            format!("`cron` has an invalid expression `{text}` ({err}): {CRON_FORM}"),
        )),
    }
}

fn zone_value(expr: &Expr) -> syn::Result<String> {
    let name = string_value(expr, "timezone", "\"Europe/Paris\"")?;
    if name.trim().parse::<chrono_tz::Tz>().is_ok() {
        return Ok(name.trim().to_owned());
    }
    let closest = chrono_tz::TZ_VARIANTS
        .iter()
        .map(|zone| (edit_distance(&name.to_lowercase(), &zone.name().to_lowercase()), zone.name()))
        .filter(|(distance, _)| *distance <= 3)
        .min()
        .map(|(_, zone)| format!(" (did you mean `{zone}`?)"))
        .unwrap_or_default();
    Err(syn::Error::new_spanned(
        expr,
        format!(
            "`timezone` has an unknown zone `{name}`{closest}: write an IANA name such as `timezone = \"Europe/Paris\"`, `\"America/New_York\"` or `\"UTC\"`"
        ),
    ))
}

fn every_value(expr: &Expr) -> syn::Result<Dur> {
    let every = duration_value(expr, "every", true)?;
    if every.secs == 0 {
        return Err(syn::Error::new_spanned(
            expr,
            "`every` must be at least one second (`every = \"1s\"`): a schedule fires at most once a second; write `every = \"5m\"` or `every = \"1h 30m\"`",
        ));
    }
    Ok(every)
}

fn overlap_value(expr: &Expr) -> syn::Result<bool> {
    let text = string_value(expr, "overlap", "\"skip\"")?;
    match text.as_str() {
        "skip" => Ok(true),
        "allow" => Ok(false),
        _ => Err(syn::Error::new_spanned(
            expr,
            format!(
                "`overlap` must be `\"skip\"` (do not start a slot while the previous run is pending or running) or `\"allow\"` (the default), found `{text}`"
            ),
        )),
    }
}
