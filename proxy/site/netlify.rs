//! The Netlify `_headers` file: path lines, and indented header lines
//! under each.
//!
//! ```text
//! # comment
//! /assets/*
//!   Cache-Control: public, max-age=31536000, immutable
//! /index.html
//!   ! Link
//! ```
//!
//! A path line starts at column 0 with `/`. A full URL at column 0
//! (`https://example.com/*`) is a rule for another host: it is skipped, with
//! a warning, together with its header lines. Header lines are indented
//! `Name: value`; `!Name` (spaces after `!` allowed) removes the header. The
//! same header twice under one path is one header with the values joined by
//! `, `, as Netlify does.
//!
//! Everything is validated here, so a rule that parses is a rule that
//! applies; the patterns themselves are compiled by `rules`.

use http::header::{HeaderName, HeaderValue};

/// Larger files are refused: the file is read whole at config load.
pub const MAX_BYTES: usize = 1024 * 1024;
/// More path blocks than this are refused.
pub const MAX_RULES: usize = 10_000;
/// Past this many errors the parser stops: one broken line per row of a
/// megabyte file would otherwise make a megabyte of messages.
const MAX_ERRORS: usize = 100;

/// One path block of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRule {
    /// The pattern, as written (starts with `/`).
    pub path: String,
    /// 1-based line of the path, for errors found when compiling it.
    pub line: usize,
    /// In order of first appearance; a repeated header has its values joined.
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

/// A problem at one line. `line` is 1-based; 0 means the whole file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", line_prefix(*.line))]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// The rules, and what was skipped without being an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub rules: Vec<FileRule>,
    /// Full-URL paths and paths with no header lines.
    pub warnings: Vec<ParseError>,
}

/// The block the following header lines belong to.
enum Block {
    /// Before the first path line.
    None,
    /// A full-URL path: its header lines are skipped.
    Skipped,
    Rule(FileRule),
}

/// Collects rules, warnings and errors line by line.
struct Parser {
    block: Block,
    parsed: Parsed,
    errors: Vec<ParseError>,
}

fn line_prefix(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!("line {line}: ")
    }
}

/// Parses a `_headers` file, reporting every error (up to a bound).
pub fn parse(text: &str) -> Result<Vec<FileRule>, Vec<ParseError>> {
    parse_with_warnings(text).map(|parsed| parsed.rules)
}

/// [`parse`], also returning the warnings (skipped full-URL paths, paths
/// without headers) for the caller to log.
pub fn parse_with_warnings(text: &str) -> Result<Parsed, Vec<ParseError>> {
    if text.len() > MAX_BYTES {
        return Err(vec![ParseError {
            line: 0,
            message: format!(
                "file is {} bytes, more than the {MAX_BYTES} allowed",
                text.len()
            ),
        }]);
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parser = Parser {
        block: Block::None,
        parsed: Parsed::default(),
        errors: Vec::new(),
    };
    for (index, line) in text.lines().enumerate() {
        if parser.errors.len() >= MAX_ERRORS {
            parser.error(
                index + 1,
                "too many errors; the rest of the file was not checked",
            );
            break;
        }
        if !parser.line(index + 1, line) {
            break;
        }
    }
    parser.finish_block();
    if parser.errors.is_empty() {
        Ok(parser.parsed)
    } else {
        Err(parser.errors)
    }
}

impl Parser {
    /// Handles one line; false stops the parse.
    fn line(&mut self, number: usize, line: &str) -> bool {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return true;
        }
        if line.starts_with([' ', '\t']) {
            self.header_line(number, trimmed);
            return true;
        }
        self.finish_block();
        if line.starts_with('/') {
            return self.path_line(number, trimmed);
        }
        if is_url(trimmed) {
            self.block = Block::Skipped;
            self.warn(
                number,
                format!("skipped {trimmed:?}: rules for a full URL are not supported"),
            );
        } else {
            self.block = Block::Skipped;
            self.error(
                number,
                "expected a path starting with '/' (header lines must be indented)",
            );
        }
        true
    }

    fn path_line(&mut self, number: usize, path: &str) -> bool {
        if self.parsed.rules.len() >= MAX_RULES {
            self.error(number, format!("more than {MAX_RULES} rules"));
            return false;
        }
        if path.contains(char::is_whitespace) {
            self.block = Block::Skipped;
            self.error(number, format!("path {path:?} contains whitespace"));
            return true;
        }
        self.block = Block::Rule(FileRule {
            path: path.to_owned(),
            line: number,
            set: Vec::new(),
            remove: Vec::new(),
        });
        true
    }

    fn header_line(&mut self, number: usize, line: &str) {
        let rule = match &mut self.block {
            Block::Rule(rule) => rule,
            Block::Skipped => return,
            Block::None => {
                self.error(number, "header line before any path line");
                return;
            }
        };
        let result = match line.strip_prefix('!') {
            Some(name) => remove(rule, name.trim()),
            None => set(rule, line),
        };
        if let Err(message) = result {
            self.error(number, message);
        }
    }

    /// Ends the current block: a rule joins the result (if it says anything).
    fn finish_block(&mut self) {
        if let Block::Rule(rule) = std::mem::replace(&mut self.block, Block::None) {
            if rule.set.is_empty() && rule.remove.is_empty() {
                self.warn(
                    rule.line,
                    format!("path {:?} has no header lines", rule.path),
                );
            } else {
                self.parsed.rules.push(rule);
            }
        }
    }

    fn error(&mut self, line: usize, message: impl Into<String>) {
        self.errors.push(ParseError {
            line,
            message: message.into(),
        });
    }

    fn warn(&mut self, line: usize, message: String) {
        self.parsed.warnings.push(ParseError { line, message });
    }
}

/// `!Name`: remove the header.
fn remove(rule: &mut FileRule, name: &str) -> Result<(), String> {
    if name.contains(':') {
        return Err(format!(
            "'!{name}': a removal takes a header name and no value"
        ));
    }
    let name = header_name(name)?;
    if rule.set.iter().any(|(set, _)| *set == name) {
        return Err(format!("header {name} is both set and removed"));
    }
    if !rule.remove.contains(&name) {
        rule.remove.push(name);
    }
    Ok(())
}

/// `Name: value`: set the header, or add to its value.
fn set(rule: &mut FileRule, line: &str) -> Result<(), String> {
    let Some((name, value)) = line.split_once(':') else {
        return Err(format!("expected 'Name: value' or '!Name', found {line:?}"));
    };
    let name = header_name(name.trim())?;
    let value = value.trim();
    if value.is_empty() {
        return Err(format!("header {name} has no value"));
    }
    let value = HeaderValue::from_str(value)
        .map_err(|_| format!("header {name}: invalid value {value:?}"))?;
    if rule.remove.contains(&name) {
        return Err(format!("header {name} is both set and removed"));
    }
    match rule.set.iter_mut().find(|(set, _)| *set == name) {
        Some((_, existing)) => *existing = join(existing, &value),
        None => rule.set.push((name, value)),
    }
    Ok(())
}

fn header_name(name: &str) -> Result<HeaderName, String> {
    if name.is_empty() {
        return Err("missing header name".to_owned());
    }
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("invalid header name {name:?}"))
}

/// `a, b`: both parts are valid values, and so is their join.
fn join(first: &HeaderValue, second: &HeaderValue) -> HeaderValue {
    let joined = [first.as_bytes(), b", ", second.as_bytes()].concat();
    HeaderValue::from_bytes(&joined).unwrap_or_else(|_| first.clone())
}

fn is_url(line: &str) -> bool {
    let lower = |prefix: &str| {
        line.get(..prefix.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
    };
    lower("http://") || lower("https://")
}

#[cfg(test)]
mod tests;
