use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

fn config_rule(path: &str, set: &[(&str, &str)], remove: &[&str]) -> schema::HeaderRule {
    schema::HeaderRule {
        path: path.to_owned(),
        set: set
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        remove: remove.iter().map(|n| n.to_string()).collect(),
    }
}

fn matches(pattern: &str, path: &str) -> bool {
    let rules = Rules::compile(&[config_rule(pattern, &[("x-hit", "1")], &[])], &[]).unwrap();
    let mut headers = HeaderMap::new();
    rules.apply(path, &mut headers);
    headers.contains_key("x-hit")
}

/// (pattern, path, matches).
#[test]
fn pattern_table() {
    let table: &[(&str, &str, bool)] = &[
        ("/assets/*", "/assets/a.js", true),
        ("/assets/*", "/assets/a/b.js", true),
        ("/assets/*", "/assets/", true),
        ("/assets/*", "/assets", true),
        ("/assets/*", "/assetsx", false),
        ("/assets/*", "/other/assets/a.js", false),
        ("/*.wasm", "/x.wasm", true),
        ("/*.wasm", "/pkg/x.wasm", true),
        ("/*.wasm", "/x.wasm.map", false),
        ("/*.wasm", "/x.WASM", true),
        ("/*", "/", true),
        ("/*", "/anything/at/all", true),
        ("/", "/", true),
        ("/", "/index.html", false),
        ("/index.html", "/index.html", true),
        ("/index.html", "/INDEX.HTML", true),
        ("/index.html", "/index.htm", false),
        ("/index.html", "/a/index.html", false),
        ("/about", "/about", true),
        ("/about", "/about/", true),
        ("/about/", "/about", true),
        ("/about", "/about/x", false),
        ("/about", "/aboutx", false),
        ("//about//", "/about", true),
        ("/a/*/b", "/a/b", true),
        ("/a/*/b", "/a/x/b", true),
        ("/a/*/b", "/a/x/y/b", true),
        ("/a/*/b", "/a/x/y/c", false),
        ("/a/*/*/b", "/a/b", true),
        ("/a/**", "/a/x/y", true),
        ("/a*b", "/ab", true),
        ("/a*b", "/a/x/b", true),
        ("/a*b", "/a/x/c", false),
        ("/users/:id", "/users/42", true),
        ("/users/:id", "/users/42/", true),
        ("/users/:id", "/users/", false),
        ("/users/:id", "/users", false),
        ("/users/:id", "/users/42/posts", false),
        ("/users/:id/posts", "/users/42/posts", true),
        ("/users/:id/posts", "/users/42/43/posts", false),
        ("/users/:id/*", "/users/42", true),
        ("/users/:id/*", "/users/42/a/b", true),
        ("/users/:id/*", "/users", false),
        ("/*/:id", "/42", true),
        ("/*/:id", "/a/b/42", true),
        ("/:lang/index.html", "/en/index.html", true),
        ("/:lang/index.html", "/en/us/index.html", false),
        // Glob metacharacters in a pattern are literal.
        ("/a[1].js", "/a[1].js", true),
        ("/a[1].js", "/a1.js", false),
        ("/a?.js", "/a?.js", true),
        ("/a?.js", "/ab.js", false),
        ("/{a,b}.js", "/{a,b}.js", true),
        ("/{a,b}.js", "/a.js", false),
        ("/a\\b", "/a\\b", true),
        ("/!a-b,c", "/!a-b,c", true),
        ("/caf\u{e9}", "/caf\u{e9}", true),
        ("/my file.pdf", "/my file.pdf", true),
    ];
    for (pattern, path, want) in table {
        assert_eq!(matches(pattern, path), *want, "{pattern} against {path}");
    }
}

#[test]
fn later_rules_win_and_file_rules_come_last() {
    let config = [
        config_rule(
            "/*",
            &[("cache-control", "public, max-age=60"), ("x-a", "config")],
            &[],
        ),
        config_rule(
            "/assets/*",
            &[("cache-control", "immutable")],
            &["x-powered-by"],
        ),
    ];
    let file = [
        netlify::FileRule {
            path: "/assets/*".into(),
            line: 3,
            set: vec![(
                HeaderName::from_static("x-a"),
                HeaderValue::from_static("file"),
            )],
            remove: vec![],
        },
        netlify::FileRule {
            path: "/assets/keep.js".into(),
            line: 9,
            set: vec![],
            remove: vec![HeaderName::from_static("cache-control")],
        },
    ];
    let rules = Rules::compile(&config, &file).unwrap();
    assert_eq!(rules.len(), 4);

    let mut headers = HeaderMap::new();
    headers.insert("x-powered-by", HeaderValue::from_static("weir"));
    headers.append("x-a", HeaderValue::from_static("old1"));
    headers.append("x-a", HeaderValue::from_static("old2"));
    rules.apply("/assets/app.js", &mut headers);
    assert_eq!(headers["cache-control"], "immutable");
    assert_eq!(headers.get_all("x-a").iter().collect::<Vec<_>>(), ["file"]);
    assert!(!headers.contains_key("x-powered-by"));

    let mut headers = HeaderMap::new();
    rules.apply("/assets/keep.js", &mut headers);
    assert!(!headers.contains_key("cache-control"));

    let mut headers = HeaderMap::new();
    headers.insert("x-powered-by", HeaderValue::from_static("weir"));
    rules.apply("/index.html", &mut headers);
    assert_eq!(headers["cache-control"], "public, max-age=60");
    assert_eq!(headers["x-a"], "config");
    assert_eq!(headers["x-powered-by"], "weir");
}

#[test]
fn a_headers_file_end_to_end() {
    let text = "/*\n  X-Frame-Options: DENY\n  X-Powered-By: weir\n\
                /assets/*\n  Cache-Control: public, max-age=31536000, immutable\n\
                /*.wasm\n  Cross-Origin-Embedder-Policy: require-corp\n\
                /embed/*\n  ! X-Frame-Options\n";
    let file = netlify::parse(text).unwrap();
    let config = [config_rule(
        "/*.wasm",
        &[("cross-origin-embedder-policy", "credentialless")],
        &[],
    )];
    let rules = Rules::compile(&config, &file).unwrap();

    let mut headers = HeaderMap::new();
    rules.apply("/assets/pkg/app_bg.wasm", &mut headers);
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(
        headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(headers["cross-origin-embedder-policy"], "require-corp");

    let mut headers = HeaderMap::new();
    rules.apply("/embed/widget.html", &mut headers);
    assert!(!headers.contains_key("x-frame-options"));
    assert_eq!(headers["x-powered-by"], "weir");
}

#[test]
fn placeholder_and_plain_rules_keep_their_order() {
    let config = [
        config_rule("/users/:id", &[("x-order", "1")], &[]),
        config_rule("/users/*", &[("x-order", "2")], &[]),
        config_rule("/users/:id/", &[("x-order", "3")], &[]),
    ];
    let rules = Rules::compile(&config, &[]).unwrap();
    let mut headers = HeaderMap::new();
    rules.apply("/users/7", &mut headers);
    assert_eq!(headers["x-order"], "3");
    let mut headers = HeaderMap::new();
    rules.apply("/users/7/x", &mut headers);
    assert_eq!(headers["x-order"], "2");
}

#[test]
fn empty_rules_do_nothing() {
    let rules = Rules::empty();
    assert!(rules.is_empty());
    let mut headers = HeaderMap::new();
    headers.insert("x-a", HeaderValue::from_static("1"));
    rules.apply("/", &mut headers);
    assert_eq!(headers.len(), 1);
    assert!(Rules::compile(&[], &[]).unwrap().is_empty());
}

/// Every problem is reported, each naming its rule.
#[test]
fn compile_errors() {
    let config = [
        config_rule("assets/*", &[("x-a", "1")], &[]),
        config_rule("/a", &[("bad name", "1")], &[]),
        config_rule("/b", &[("x-b", "bad\u{1}value")], &["bad name"]),
        config_rule("/c", &[("X-C", "1"), ("x-c", "2")], &[]),
        config_rule("/d", &[("x-d", "1")], &["X-D"]),
        config_rule("/e", &[("content-length", "5")], &["transfer-encoding"]),
        config_rule("/users/:id/*.json", &[("x-f", "1")], &[]),
        config_rule("/ok", &[("x-ok", "1")], &["x-gone", "X-Gone"]),
    ];
    let file = [netlify::FileRule {
        path: "/f".into(),
        line: 12,
        set: vec![],
        remove: vec![HeaderName::from_static("connection")],
    }];
    let errors = Rules::compile(&config, &file).unwrap_err();
    let want: &[(&str, &str)] = &[
        ("headers[0]: ", "must start with '/'"),
        ("headers[1]: ", "invalid header name \"bad name\""),
        ("headers[2]: ", "invalid value"),
        ("headers[3]: ", "set twice"),
        ("headers[4]: ", "both set and removed"),
        (
            "headers[5]: ",
            "may not change content-length, transfer-encoding",
        ),
        ("headers[6]: ", "must be a whole segment"),
        ("headers file line 12: ", "may not change connection"),
    ];
    assert_eq!(errors.len(), want.len(), "{errors:#?}");
    for (error, (prefix, part)) in errors.iter().zip(want) {
        assert!(
            error.starts_with(prefix) && error.contains(part),
            "{error:?} vs {prefix}{part}"
        );
    }
    assert!(errors[2].contains("in remove"), "{}", errors[2]);
}

#[test]
fn a_thousand_rules() {
    let config: Vec<schema::HeaderRule> = (0..1000)
        .map(|i| {
            config_rule(
                &format!("/section{i}/*"),
                &[("x-rule", &i.to_string())],
                &[],
            )
        })
        .collect();
    let rules = Rules::compile(&config, &[]).unwrap();
    let mut headers = HeaderMap::new();
    rules.apply("/section737/a/b.js", &mut headers);
    assert_eq!(headers["x-rule"], "737");
    let mut headers = HeaderMap::new();
    rules.apply("/elsewhere", &mut headers);
    assert!(headers.is_empty());
}

proptest! {
    #[test]
    fn compile_and_apply_never_panic(
        patterns in prop::collection::vec("/?[a-z*:/?\\[\\]{},\\\\.!-]{0,12}", 0..8),
        path in "/[a-z*:/?\\[\\]{},\\\\.!-]{0,16}",
    ) {
        let config: Vec<_> = patterns.iter().map(|p| config_rule(p, &[("x-a", "1")], &[])).collect();
        if let Ok(rules) = Rules::compile(&config, &[]) {
            let mut headers = HeaderMap::new();
            rules.apply(&path, &mut headers);
        }
    }

    /// A pattern without `*` or placeholders matches its own path.
    #[test]
    fn literal_patterns_match_themselves(path in "(/[a-zA-Z0-9.?\\[\\]{},!_-]{1,8}){1,4}") {
        prop_assert!(matches(&path, &path));
        let upper = path.to_ascii_uppercase();
        prop_assert!(matches(&path, &upper));
    }
}
