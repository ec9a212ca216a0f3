//! Header rules of a site: `[[sites.X.headers]]` from the config, then the
//! `_headers` file, compiled once at config load.
//!
//! Patterns follow Netlify's `_headers`:
//! - `*` matches any run of characters, `/` included (`/assets/*` matches
//!   `/assets/a/b.js`, `/*.wasm` matches `/pkg/x.wasm`). A `*` that is a
//!   whole last segment also matches the directory itself (`/assets/*`
//!   matches `/assets`); a whole middle segment matches zero or more
//!   segments (`/a/*/b` matches `/a/b` and `/a/x/y/b`).
//! - `:name` as a whole segment matches exactly one non-empty segment. In a
//!   pattern with a placeholder, `*` may only be a whole segment.
//! - Anything else is literal. As on Netlify, matching ignores ASCII case
//!   and one trailing slash (`/about` matches `/about/`), and empty
//!   segments of the pattern are dropped.
//!
//! Every pattern goes into one of two `GlobSet`s (one where `*` crosses `/`,
//! one for placeholder patterns where it does not), so finding every rule
//! that applies to a path is one automaton run per set, whatever the number
//! of rules.

use std::cell::RefCell;
use std::path::Path;

use globset::{Candidate, GlobBuilder, GlobSet, GlobSetBuilder};
use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::netlify;
use crate::config::schema;

/// Headers a rule may not touch: they frame the message or are set by the
/// serving code from the representation it sends.
const RESERVED: &[&str] = &[
    "connection",
    "content-encoding",
    "content-length",
    "content-range",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The compiled rules of one site.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Patterns without placeholders; `*` crosses `/`.
    any: GlobSet,
    /// Index into `rules` of each glob of `any`.
    any_rules: Vec<usize>,
    /// Patterns with `:placeholders`; `*` stays within a segment.
    segment: GlobSet,
    segment_rules: Vec<usize>,
    /// In application order: config rules, then the file's.
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    set: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

/// A pattern translated to a glob.
struct Glob {
    text: String,
    /// Has a placeholder: belongs to the `segment` set.
    by_segment: bool,
}

/// Glob match indices, reused across requests on a thread.
#[derive(Default)]
struct Scratch {
    hits: Vec<usize>,
    order: Vec<usize>,
}

/// Rules as they are compiled, with the problems found so far.
struct Builder {
    any: GlobSetBuilder,
    any_rules: Vec<usize>,
    segment: GlobSetBuilder,
    segment_rules: Vec<usize>,
    rules: Vec<Rule>,
    errors: Vec<String>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl Rules {
    /// Config rules first, then the file's rules (so file rules override):
    /// later rules win. Every problem is reported, each naming its rule
    /// (`headers[2]`) or its line in the file.
    pub fn compile(
        config: &[schema::HeaderRule],
        file: &[netlify::FileRule],
    ) -> Result<Rules, Vec<String>> {
        let mut builder = Builder::new();
        for (i, rule) in config.iter().enumerate() {
            builder.add(&format!("headers[{i}]"), &rule.path, from_config(rule));
        }
        for rule in file {
            let body = Rule {
                set: rule.set.clone(),
                remove: rule.remove.clone(),
            };
            let at = format!("headers file line {}", rule.line);
            builder.add(&at, &rule.path, Ok(body));
        }
        builder.build()
    }

    pub fn empty() -> Rules {
        Rules {
            any: GlobSet::empty(),
            any_rules: Vec::new(),
            segment: GlobSet::empty(),
            segment_rules: Vec::new(),
            rules: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Applies every rule whose pattern matches `path` (the URL path as
    /// requested, decoded), in order: `set` inserts or replaces, `remove`
    /// deletes.
    pub fn apply(&self, path: &str, headers: &mut HeaderMap) {
        if self.rules.is_empty() {
            return;
        }
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut scratch) => self.apply_with(path, headers, &mut scratch),
            Err(_) => self.apply_with(path, headers, &mut Scratch::default()),
        });
    }

    fn apply_with(&self, path: &str, headers: &mut HeaderMap, scratch: &mut Scratch) {
        let candidate = Candidate::new(Path::new(path));
        let Scratch { hits, order } = scratch;
        order.clear();
        self.any.matches_candidate_into(&candidate, hits);
        order.extend(hits.iter().map(|&i| self.any_rules[i]));
        if !self.segment.is_empty() {
            self.segment.matches_candidate_into(&candidate, hits);
            if !hits.is_empty() {
                order.extend(hits.iter().map(|&i| self.segment_rules[i]));
                order.sort_unstable();
            }
        }
        for &i in order.iter() {
            let rule = &self.rules[i];
            for name in &rule.remove {
                headers.remove(name);
            }
            for (name, value) in &rule.set {
                headers.insert(name.clone(), value.clone());
            }
        }
    }
}

impl Builder {
    fn new() -> Builder {
        Builder {
            any: GlobSetBuilder::new(),
            any_rules: Vec::new(),
            segment: GlobSetBuilder::new(),
            segment_rules: Vec::new(),
            rules: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Adds the rule, or the problems with its pattern and its headers.
    fn add(&mut self, at: &str, pattern: &str, body: Result<Rule, String>) {
        let glob = translate(pattern).and_then(|glob| Ok((build(&glob)?, glob.by_segment)));
        let body = body.and_then(|rule| check_reserved(&rule).map(|()| rule));
        match (glob, body) {
            (Ok((glob, by_segment)), Ok(rule)) => {
                let (set, indices) = if by_segment {
                    (&mut self.segment, &mut self.segment_rules)
                } else {
                    (&mut self.any, &mut self.any_rules)
                };
                set.add(glob);
                indices.push(self.rules.len());
                self.rules.push(rule);
            }
            (glob, body) => {
                let problems = glob.err().into_iter().chain(body.err());
                self.errors.extend(problems.map(|e| format!("{at}: {e}")));
            }
        }
    }

    fn build(self) -> Result<Rules, Vec<String>> {
        if !self.errors.is_empty() {
            return Err(self.errors);
        }
        let set = |builder: GlobSetBuilder| {
            builder
                .build()
                .map_err(|e| vec![format!("header rules: {e}")])
        };
        Ok(Rules {
            any: set(self.any)?,
            any_rules: self.any_rules,
            segment: set(self.segment)?,
            segment_rules: self.segment_rules,
            rules: self.rules,
        })
    }
}

/// Validates a config rule's header names and values.
fn from_config(rule: &schema::HeaderRule) -> Result<Rule, String> {
    let mut problems = Vec::new();
    let mut set: Vec<(HeaderName, HeaderValue)> = Vec::with_capacity(rule.set.len());
    for (name, value) in &rule.set {
        let name = match HeaderName::from_bytes(name.as_bytes()) {
            Ok(name) => name,
            Err(_) => {
                problems.push(format!("invalid header name {name:?}"));
                continue;
            }
        };
        match HeaderValue::from_str(value) {
            Err(_) => problems.push(format!("header {name}: invalid value {value:?}")),
            Ok(_) if set.iter().any(|(n, _)| *n == name) => {
                problems.push(format!("header {name} is set twice (names ignore case)"));
            }
            Ok(value) => set.push((name, value)),
        }
    }
    let mut remove = Vec::with_capacity(rule.remove.len());
    for name in &rule.remove {
        match HeaderName::from_bytes(name.as_bytes()) {
            Err(_) => problems.push(format!("invalid header name {name:?} in remove")),
            Ok(name) if set.iter().any(|(n, _)| *n == name) => {
                problems.push(format!("header {name} is both set and removed"));
            }
            Ok(name) if remove.contains(&name) => {}
            Ok(name) => remove.push(name),
        }
    }
    if problems.is_empty() {
        Ok(Rule { set, remove })
    } else {
        Err(problems.join("; "))
    }
}

fn check_reserved(rule: &Rule) -> Result<(), String> {
    let names = rule.set.iter().map(|(name, _)| name).chain(&rule.remove);
    let reserved: Vec<&str> = names
        .map(HeaderName::as_str)
        .filter(|name| RESERVED.contains(name))
        .collect();
    if reserved.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "header rules may not change {}",
            reserved.join(", ")
        ))
    }
}

/// Netlify pattern -> glob text (see the module doc for the semantics).
fn translate(pattern: &str) -> Result<Glob, String> {
    if !pattern.starts_with('/') {
        return Err(format!("pattern {pattern:?} must start with '/'"));
    }
    let segments: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    let is_splat = |s: &str| s.bytes().all(|b| b == b'*');
    let by_segment = segments.iter().any(|s| s.starts_with(':'));
    if by_segment && segments.iter().any(|s| s.contains('*') && !is_splat(s)) {
        return Err(format!(
            "pattern {pattern:?}: with a :placeholder, '*' must be a whole segment"
        ));
    }
    let mut text = String::with_capacity(pattern.len() + 8);
    let mut previous_splat = false;
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        if is_splat(segment) {
            // `/*` then `/*` is still zero or more segments.
            if !previous_splat {
                text.push_str(match (by_segment, last) {
                    (false, _) => "{,/*}",
                    (true, false) => "/**",
                    (true, true) => "{,/**}",
                });
            }
            previous_splat = true;
            continue;
        }
        previous_splat = false;
        text.push('/');
        if segment.starts_with(':') {
            text.push_str("?*");
        } else {
            push_literal(&mut text, segment);
        }
    }
    if text.is_empty() {
        text.push('/');
    } else if !previous_splat {
        text.push_str("{,/}");
    }
    Ok(Glob { text, by_segment })
}

/// A segment with its `*` runs kept as one `*` and every other glob
/// metacharacter escaped.
fn push_literal(text: &mut String, segment: &str) {
    let mut previous_star = false;
    for c in segment.chars() {
        if c == '*' {
            if !previous_star {
                text.push('*');
            }
            previous_star = true;
            continue;
        }
        previous_star = false;
        if matches!(c, '?' | '[' | ']' | '{' | '}' | '\\' | ',' | '!' | '-') {
            text.push('\\');
        }
        text.push(c);
    }
}

fn build(glob: &Glob) -> Result<globset::Glob, String> {
    GlobBuilder::new(&glob.text)
        .literal_separator(glob.by_segment)
        .case_insensitive(true)
        .backslash_escape(true)
        .empty_alternates(true)
        .build()
        .map_err(|e| format!("pattern: {e}"))
}

#[cfg(test)]
mod tests;
