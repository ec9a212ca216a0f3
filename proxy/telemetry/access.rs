//! The access log: one line per request on stdout, JSON or combined.
//!
//! The request path emits a `tracing` event on the `weir::access` target with
//! the fields below; `AccessLayer` formats it and hands it to a non-blocking
//! writer, so a slow stdout never stalls a request (lines are dropped instead).

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

pub const TARGET: &str = "weir::access";

/// The fields of one access-log line, filled by the request path.
#[derive(Debug, Default)]
pub struct Entry<'a> {
    pub client_ip: Option<std::net::IpAddr>,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub protocol: &'static str,
    pub status: u16,
    pub bytes: u64,
    pub duration: std::time::Duration,
    pub route: &'a str,
    pub backend: &'a str,
    pub region: &'a str,
    pub endpoint: &'a str,
    pub upstream_status: Option<u16>,
    pub request_id: &'a str,
    pub user_agent: &'a str,
    pub referer: &'a str,
}

impl Entry<'_> {
    /// Emits the entry; `combined` picks the Apache combined format.
    pub fn emit(&self, combined: bool) {
        tracing::info!(
            target: TARGET,
            combined,
            client_ip = self.client_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            method = self.method,
            host = self.host,
            path = self.path,
            protocol = self.protocol,
            status = self.status,
            bytes = self.bytes,
            duration_ms = self.duration.as_secs_f64() * 1000.0,
            route = self.route,
            backend = self.backend,
            region = self.region,
            endpoint = self.endpoint,
            upstream_status = self.upstream_status,
            request_id = self.request_id,
            user_agent = self.user_agent,
            referer = self.referer,
        );
    }
}

/// Formats `weir::access` events and writes them to `W` (stdout in the binary).
pub struct AccessLayer<W> {
    make_writer: W,
}

impl<W> AccessLayer<W> {
    pub fn new(make_writer: W) -> Self {
        AccessLayer { make_writer }
    }
}

impl<S, W> Layer<S> for AccessLayer<W>
where
    S: Subscriber,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != TARGET {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let line = if fields.combined {
            fields.combined_line()
        } else {
            fields.json_line()
        };
        // A failed write to stdout is not worth failing a request over.
        let _ = self.make_writer.make_writer().write_all(line.as_bytes());
    }
}

#[derive(Default)]
struct Fields {
    combined: bool,
    /// `(name, JSON value)` in event order.
    values: Vec<(&'static str, serde_json::Value)>,
}

impl Fields {
    fn get(&self, name: &str) -> Option<&serde_json::Value> {
        self.values.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    fn str(&self, name: &str) -> &str {
        self.get(name).and_then(|v| v.as_str()).unwrap_or("")
    }

    fn json_line(&self) -> String {
        let mut map = serde_json::Map::with_capacity(self.values.len() + 1);
        map.insert("time".into(), rfc3339(SystemTime::now()).into());
        for (name, value) in &self.values {
            if !matches!(name, &"user_agent" | &"referer") || value.as_str() != Some("") {
                map.insert((*name).to_owned(), value.clone());
            }
        }
        let mut line = serde_json::Value::Object(map).to_string();
        line.push('\n');
        line
    }

    fn combined_line(&self) -> String {
        let dash = |s: &str| {
            if s.is_empty() {
                "-".to_owned()
            } else {
                s.to_owned()
            }
        };
        let status = self.get("status").and_then(|v| v.as_u64()).unwrap_or(0);
        let bytes = self.get("bytes").and_then(|v| v.as_u64()).unwrap_or(0);
        let protocol = match self.str("protocol") {
            "h2" => "HTTP/2.0",
            "h3" => "HTTP/3.0",
            _ => "HTTP/1.1",
        };
        let mut line = String::with_capacity(160);
        let _ = writeln!(
            line,
            "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\"",
            dash(self.str("client_ip")),
            clf_time(SystemTime::now()),
            self.str("method"),
            self.str("path"),
            protocol,
            status,
            bytes,
            dash(self.str("referer")),
            dash(self.str("user_agent")),
        );
        line
    }
}

impl Visit for Fields {
    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "combined" {
            self.combined = value;
        } else {
            self.values.push((field.name(), value.into()));
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.values.push((field.name(), value.into()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.values.push((field.name(), value.into()));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        let rounded = (value * 1000.0).round() / 1000.0;
        self.values.push((field.name(), rounded.into()));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.values.push((field.name(), value.into()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.values
            .push((field.name(), format!("{value:?}").into()));
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    minute: u64,
    second: u64,
    millis: u32,
}

fn civil(t: SystemTime) -> Civil {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    Civil {
        year,
        month,
        day,
        hour: secs % 86_400 / 3_600,
        minute: secs % 3_600 / 60,
        second: secs % 60,
        millis: since.subsec_millis(),
    }
}

/// `2026-11-26T12:45:23.123Z`
pub fn rfc3339(t: SystemTime) -> String {
    let c = civil(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis
    )
}

/// `26/Nov/2026:12:45:23 +0000`
fn clf_time(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let c = civil(t);
    let month = MONTHS[(c.month as usize).saturating_sub(1) % 12];
    format!(
        "{:02}/{month}/{:04}:{:02}:{:02}:{:02} +0000",
        c.day, c.year, c.hour, c.minute, c.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_times() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_783_523_456);
        assert_eq!(rfc3339(t), "2026-11-27T12:45:23.456Z");
        assert_eq!(clf_time(t), "27/Nov/2026:12:45:23 +0000");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&rfc3339(leap)[..10], "2000-02-29");
    }
}
