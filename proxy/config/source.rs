//! Reading a config file: TOML or YAML by extension, into the schema types,
//! plus a `Locator` that maps key paths back to line and column so that
//! validation errors found later can point into the file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use super::error::Diagnostic;
use super::schema::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Yaml,
}

impl Format {
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "toml" => Some(Format::Toml),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }
}

/// Maps key paths (`routes[0].backends[1].service`) to 1-based line/column.
#[derive(Debug, Default)]
pub struct Locator {
    file: PathBuf,
    places: HashMap<String, (usize, usize)>,
}

impl Locator {
    /// A diagnostic at `path`, or at its nearest ancestor the file names.
    pub fn error(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        let (line, column) = self.find(path);
        Diagnostic {
            file: self.file.clone(),
            line,
            column,
            path: path.to_owned(),
            message: message.into(),
        }
    }

    fn find(&self, mut path: &str) -> (usize, usize) {
        loop {
            if let Some(place) = self.places.get(path) {
                return *place;
            }
            match path.rfind(['.', '[']) {
                Some(cut) => path = &path[..cut],
                None => return self.places.get("").copied().unwrap_or((0, 0)),
            }
        }
    }
}

/// Parses `text` as the config format of `file`.
pub fn parse(file: &Path, text: &str, format: Format) -> Result<(Config, Locator), Diagnostic> {
    match format {
        Format::Toml => parse_toml(file, text),
        Format::Yaml => parse_yaml(file, text),
    }
}

fn diagnostic(
    file: &Path,
    (line, column): (usize, usize),
    path: String,
    message: String,
) -> Diagnostic {
    Diagnostic {
        file: file.to_owned(),
        line,
        column,
        path,
        message,
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn parse_toml(file: &Path, text: &str) -> Result<(Config, Locator), Diagnostic> {
    let toml_error = |e: toml::de::Error, path: String| {
        let place = e.span().map_or((1, 1), |s| line_col(text, s.start));
        diagnostic(file, place, path, e.message().trim().to_owned())
    };
    let de = toml::Deserializer::parse(text).map_err(|e| toml_error(e, String::new()))?;
    let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = display_path(e.path());
        toml_error(e.into_inner(), path)
    })?;
    let mut locator = Locator {
        file: file.to_owned(),
        places: HashMap::new(),
    };
    if let Ok(table) = toml::de::DeTable::parse(text) {
        locator.places.insert(String::new(), (1, 1));
        index_toml_table(text, table.get_ref(), "", &mut locator.places);
    }
    Ok((config, locator))
}

fn index_toml_table(
    text: &str,
    table: &toml::de::DeTable<'_>,
    prefix: &str,
    places: &mut HashMap<String, (usize, usize)>,
) {
    for (key, value) in table {
        let path = join_key(prefix, key.get_ref());
        index_toml_value(text, key.span(), value, path, places);
    }
}

fn index_toml_value(
    text: &str,
    key_span: std::ops::Range<usize>,
    value: &toml::Spanned<toml::de::DeValue<'_>>,
    path: String,
    places: &mut HashMap<String, (usize, usize)>,
) {
    use toml::de::DeValue;
    match value.get_ref() {
        DeValue::Table(inner) => {
            places.insert(path.clone(), line_col(text, key_span.start));
            index_toml_table(text, inner, &path, places);
        }
        DeValue::Array(items) => {
            places.insert(path.clone(), line_col(text, value.span().start));
            for (i, item) in items.iter().enumerate() {
                index_toml_value(text, item.span(), item, format!("{path}[{i}]"), places);
            }
        }
        _ => {
            places.insert(path, line_col(text, value.span().start));
        }
    }
}

/// `a.b`, or `a."x.y"` style keys are kept verbatim: config keys never contain dots.
fn join_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// `routes[1].backends[0]`, cut before the first segment serde_path_to_error
/// cannot name (it would print `?`, e.g. for a duplicate YAML key); empty
/// for the root.
fn display_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut shown = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => shown.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                shown = join_key(&shown, key);
            }
            Segment::Unknown => break,
        }
    }
    shown
}

fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.with_snippet = false;
    options
}

fn parse_yaml(file: &Path, text: &str) -> Result<(Config, Locator), Diagnostic> {
    let yaml_error = |e: &serde_saphyr::Error, path: String| {
        let place = e
            .location()
            .map_or((1, 1), |l| (l.line() as usize, l.column() as usize));
        // The user formatter, not Display: the developer one gives API advice
        // ("use from_str_multiple", "set DuplicateKeyPolicy in Options").
        let message = e
            .without_snippet()
            .render_with_formatter(&serde_saphyr::UserMessageFormatter);
        // serde-saphyr appends " at line L, column C"; the diagnostic already says where.
        let message = match message.rfind(" at line ") {
            Some(cut) if e.location().is_some() => message[..cut].to_owned(),
            _ => message,
        };
        diagnostic(file, place, path, message)
    };
    // The error must leave the closure as an `Err`: on `Ok`, serde-saphyr goes
    // on to check that the rest of the stream is empty, and the events left
    // behind by a failed deserialization read as "multiple YAML documents".
    let mut failed_at = String::new();
    let outcome =
        serde_saphyr::with_deserializer_from_str_with_options(text, yaml_options(), |de| {
            serde_path_to_error::deserialize::<_, Config>(de).map_err(|e| {
                failed_at = display_path(e.path());
                e.into_inner()
            })
        });
    let config = outcome.map_err(|e| yaml_error(&e, failed_at))?;
    let mut locator = Locator {
        file: file.to_owned(),
        places: HashMap::new(),
    };
    if let Ok(root) = serde_saphyr::from_str_with_options::<YamlNode>(text, yaml_options()) {
        locator.places.insert(String::new(), (1, 1));
        root.index(String::new(), &mut locator.places);
    }
    Ok((config, locator))
}

/// A YAML document kept only for its shape and the place of every node.
struct YamlNode(serde_saphyr::Spanned<YamlValue>);

enum YamlValue {
    Map(Vec<(serde_saphyr::Spanned<YamlKey>, YamlNode)>),
    Seq(Vec<YamlNode>),
    Scalar,
}

struct YamlKey(String);

impl YamlNode {
    fn index(&self, path: String, places: &mut HashMap<String, (usize, usize)>) {
        let at = |l: serde_saphyr::Location| (l.line() as usize, l.column() as usize);
        if !path.is_empty() {
            places.entry(path.clone()).or_insert(at(self.0.referenced));
        }
        match &self.0.value {
            YamlValue::Map(entries) => {
                for (key, value) in entries {
                    let child = join_key(&path, &key.value.0);
                    // Point at the key: that is where an operator looks.
                    places.insert(child.clone(), at(key.referenced));
                    if let YamlValue::Scalar = value.0.value {
                        places.insert(child.clone(), at(value.0.referenced));
                    }
                    value.index(child, places);
                }
            }
            YamlValue::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    item.index(format!("{path}[{i}]"), places);
                }
            }
            YamlValue::Scalar => {}
        }
    }
}

impl<'de> Deserialize<'de> for YamlNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_saphyr::Spanned::<YamlValue>::deserialize(d).map(YamlNode)
    }
}

impl<'de> Deserialize<'de> for YamlValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = YamlValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<YamlValue, E> {
                Ok(YamlValue::Scalar)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<YamlValue, E> {
                Ok(YamlValue::Scalar)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<YamlValue, E> {
                Ok(YamlValue::Scalar)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<YamlValue, E> {
                Ok(YamlValue::Scalar)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<YamlValue, E> {
                Ok(YamlValue::Scalar)
            }
            fn visit_unit<E: de::Error>(self) -> Result<YamlValue, E> {
                Ok(YamlValue::Scalar)
            }
            fn visit_none<E: de::Error>(self) -> Result<YamlValue, E> {
                Ok(YamlValue::Scalar)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<YamlValue, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<YamlNode>()? {
                    items.push(item);
                }
                Ok(YamlValue::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<YamlValue, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<serde_saphyr::Spanned<YamlKey>>()? {
                    entries.push((key, map.next_value::<YamlNode>()?));
                }
                Ok(YamlValue::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for YamlKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = YamlKey;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a scalar key")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<YamlKey, E> {
                Ok(YamlKey(s.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<YamlKey, E> {
                Ok(YamlKey(n.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<YamlKey, E> {
                Ok(YamlKey(n.to_string()))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<YamlKey, E> {
                Ok(YamlKey(b.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        assert_eq!(line_col(text, text.find('=').unwrap()), (1, 3));
    }

    #[test]
    fn toml_locator_finds_nested_keys() {
        let text = "[[routes]]\npath = \"/\"\nbackends = [{ site = \"web\" }]\n";
        let (_, loc) = parse(Path::new("w.toml"), text, Format::Toml).unwrap();
        assert_eq!(loc.find("routes[0].path"), (2, 8));
        assert_eq!(loc.find("routes[0].backends[0].site"), (3, 22));
        // Unknown leaves fall back to the nearest ancestor.
        assert_eq!(
            loc.find("routes[0].backends[0].nope"),
            loc.find("routes[0].backends[0]")
        );
    }

    #[test]
    fn yaml_locator_finds_nested_keys() {
        let text = "routes:\n  - path: /\n    backends:\n      - site: web\n";
        let (_, loc) = parse(Path::new("w.yaml"), text, Format::Yaml).unwrap();
        assert_eq!(loc.find("routes[0].path"), (2, 11));
        assert_eq!(loc.find("routes[0].backends[0].site"), (4, 15));
    }
}
