//! What a reload changed, in one short line for the log: routes, services,
//! sites and listeners added (+), removed (-) or changed (~), found by name
//! in the effective configs of the two snapshots.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::config::schema;
use crate::config::validate::route_name;
use crate::snapshot::Snapshot;

/// Names added, removed and changed in one section.
#[derive(Debug, Default, PartialEq)]
pub struct Section {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

/// Every section that changed.
#[derive(Debug, Default, PartialEq)]
pub struct Changes(pub Vec<(&'static str, Section)>);

/// Compares `before` with `after`.
pub fn describe(before: &Snapshot, after: &Snapshot) -> Changes {
    let (a, b) = (&before.effective, &after.effective);
    let sections = [
        ("routes", keyed_routes(a), keyed_routes(b)),
        (
            "services",
            keyed_map(&a["services"]),
            keyed_map(&b["services"]),
        ),
        ("sites", keyed_map(&a["sites"]), keyed_map(&b["sites"])),
        (
            "listeners",
            keyed_by_name(&a["listeners"]),
            keyed_by_name(&b["listeners"]),
        ),
    ];
    Changes(
        sections
            .into_iter()
            .map(|(name, a, b)| (name, compare(&a, &b)))
            .filter(|(_, s)| !s.is_empty())
            .collect(),
    )
}

impl Section {
    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

fn compare(a: &BTreeMap<String, &Value>, b: &BTreeMap<String, &Value>) -> Section {
    let mut section = Section::default();
    for (name, value) in b {
        match a.get(name) {
            None => section.added.push(name.clone()),
            Some(old) if old != value => section.changed.push(name.clone()),
            Some(_) => {}
        }
    }
    section.removed = a.keys().filter(|k| !b.contains_key(*k)).cloned().collect();
    section
}

fn keyed_routes(config: &Value) -> BTreeMap<String, &Value> {
    let mut out = BTreeMap::new();
    for route in config["routes"].as_array().into_iter().flatten() {
        let name = serde_json::from_value::<schema::Route>(route.clone())
            .map(|r| route_name(&r))
            .unwrap_or_default();
        out.insert(name, route);
    }
    out
}

fn keyed_map(map: &Value) -> BTreeMap<String, &Value> {
    map.as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v))
        .collect()
}

fn keyed_by_name(list: &Value) -> BTreeMap<String, &Value> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|v| (v["name"].as_str().unwrap_or_default().to_owned(), v))
        .collect()
}

impl fmt::Display for Changes {
    /// `routes +api ~web; services -old` or `nothing`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("nothing");
        }
        for (i, (name, section)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            f.write_str(name)?;
            for (mark, names) in [
                ('+', &section.added),
                ('-', &section.removed),
                ('~', &section.changed),
            ] {
                for n in names {
                    write!(f, " {mark}{n}")?;
                }
            }
        }
        Ok(())
    }
}
