use proptest::prelude::*;

use super::*;

fn rule(path: &str, line: usize, set: &[(&str, &str)], remove: &[&str]) -> FileRule {
    FileRule {
        path: path.to_owned(),
        line,
        set: set
            .iter()
            .map(|(n, v)| {
                (
                    HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect(),
        remove: remove
            .iter()
            .map(|n| HeaderName::from_bytes(n.as_bytes()).unwrap())
            .collect(),
    }
}

#[test]
fn the_documented_example() {
    let text = "# comment\n\
                /assets/*\n  Cache-Control: public, max-age=31536000, immutable\n  X-Frame-Options: DENY\n\
                /*.wasm\n  Cross-Origin-Embedder-Policy: require-corp\n\
                /index.html\n  ! Link\n  !X-Powered-By\n";
    assert_eq!(
        parse(text).unwrap(),
        vec![
            rule(
                "/assets/*",
                2,
                &[
                    ("cache-control", "public, max-age=31536000, immutable"),
                    ("x-frame-options", "DENY")
                ],
                &[],
            ),
            rule(
                "/*.wasm",
                5,
                &[("cross-origin-embedder-policy", "require-corp")],
                &[]
            ),
            rule("/index.html", 7, &[], &["link", "x-powered-by"]),
        ]
    );
}

/// (input, the rules as (path, line, set, remove)).
#[test]
fn valid_files() {
    type Row = (
        &'static str,
        &'static [(
            &'static str,
            usize,
            &'static [(&'static str, &'static str)],
            &'static [&'static str],
        )],
    );
    let table: &[Row] = &[
        ("", &[]),
        ("\n\n# only comments\n   # indented comment\n", &[]),
        ("/a\n  X-A: 1\n", &[("/a", 1, &[("x-a", "1")], &[])]),
        ("/a\r\n  X-A: 1\r\n", &[("/a", 1, &[("x-a", "1")], &[])]),
        ("\u{feff}/a\n  X-A: 1\n", &[("/a", 1, &[("x-a", "1")], &[])]),
        ("/a\n\tX-A:1\n", &[("/a", 1, &[("x-a", "1")], &[])]),
        (
            "/a   \n  X-A:   spaced value   \n",
            &[("/a", 1, &[("x-a", "spaced value")], &[])],
        ),
        // Same header twice (any case): one header, values joined.
        (
            "/a\n  X-A: 1\n  x-a: 2\n",
            &[("/a", 1, &[("x-a", "1, 2")], &[])],
        ),
        // The value may hold colons; only the first one separates.
        (
            "/a\n  Link: <https://x.test/a>; rel=preload\n",
            &[("/a", 1, &[("link", "<https://x.test/a>; rel=preload")], &[])],
        ),
        // Blank lines and comments inside a block keep the block.
        (
            "/a\n  X-A: 1\n\n  # note\n  X-B: 2\n",
            &[("/a", 1, &[("x-a", "1"), ("x-b", "2")], &[])],
        ),
        (
            "/a\n  !X-A\n  !   X-B  \n  !x-a\n",
            &[("/a", 1, &[], &["x-a", "x-b"])],
        ),
        // A full URL is skipped with its headers; the next path resumes.
        (
            "https://example.com/*\n  X-A: 1\n/b\n  X-B: 2\n",
            &[("/b", 3, &[("x-b", "2")], &[])],
        ),
        ("HTTP://example.com/*\n  X-A: 1\n", &[]),
        // A path without headers is dropped (a warning).
        ("/a\n/b\n  X-B: 2\n", &[("/b", 2, &[("x-b", "2")], &[])]),
        // Values are kept verbatim, `#` included.
        (
            "/a\n  X-A: a # not a comment\n",
            &[("/a", 1, &[("x-a", "a # not a comment")], &[])],
        ),
        ("/:id/*\n  X-A: 1\n", &[("/:id/*", 1, &[("x-a", "1")], &[])]),
        // Non-ASCII (obs-text) is a valid value, as `http` sees it.
        (
            "/a\n  X-A: caf\u{e9}\n",
            &[("/a", 1, &[("x-a", "caf\u{e9}")], &[])],
        ),
    ];
    for (input, want) in table {
        let want: Vec<FileRule> = want.iter().map(|(p, l, s, r)| rule(p, *l, s, r)).collect();
        assert_eq!(parse(input).as_ref(), Ok(&want), "input {input:?}");
    }
}

/// (input, every (line, part of the message)).
#[test]
fn errors_name_their_lines() {
    let table: &[(&str, &[(usize, &str)])] = &[
        ("  X-A: 1\n", &[(1, "before any path")]),
        ("# c\n\n  X-A: 1\n/a\n  X-B: 2\n", &[(3, "before any path")]),
        ("/a\n  X-A 1\n", &[(2, "expected 'Name: value'")]),
        ("/a\n  X A: 1\n", &[(2, "invalid header name")]),
        ("/a\n  : 1\n", &[(2, "missing header name")]),
        ("/a\n  X-A:\n", &[(2, "has no value")]),
        ("/a\n  X-A:    \n", &[(2, "has no value")]),
        ("/a\n  X-A: a\u{1}b\n", &[(2, "invalid value")]),
        ("/a\n  X-A: a\u{7f}b\n", &[(2, "invalid value")]),
        ("/a\n  !\n", &[(2, "missing header name")]),
        ("/a\n  !X-A: 1\n", &[(2, "no value")]),
        ("/a\n  !Bad Name\n", &[(2, "invalid header name")]),
        ("/a\n  X-A: 1\n  !x-a\n", &[(3, "both set and removed")]),
        ("/a\n  !x-a\n  X-A: 1\n", &[(3, "both set and removed")]),
        ("X-A: 1\n", &[(1, "expected a path")]),
        ("assets/*\n  X-A: 1\n", &[(1, "expected a path")]),
        ("/a b\n  X-A: 1\n", &[(1, "whitespace")]),
        // Every error is reported, not just the first.
        (
            "  X: 1\n/a\n  X-A\n  Y: \n/b\n  !Z Z\n",
            &[
                (1, "before any path"),
                (3, "expected"),
                (4, "no value"),
                (6, "invalid header name"),
            ],
        ),
    ];
    for (input, want) in table {
        let errors = parse(input).expect_err(input);
        let got: Vec<(usize, &str)> = errors
            .iter()
            .map(|e| (e.line, e.message.as_str()))
            .collect();
        assert_eq!(got.len(), want.len(), "input {input:?}: {got:?}");
        for ((line, message), (want_line, want_part)) in got.iter().zip(want.iter()) {
            assert_eq!(line, want_line, "input {input:?}: {got:?}");
            assert!(
                message.contains(want_part),
                "input {input:?}: {message:?} lacks {want_part:?}"
            );
        }
    }
}

#[test]
fn warnings_for_urls_and_empty_paths() {
    let parsed = parse_with_warnings("https://x.test/*\n  X-A: 1\n/a\n/b\n  X-B: 1\n").unwrap();
    let lines: Vec<usize> = parsed.warnings.iter().map(|w| w.line).collect();
    assert_eq!(lines, [1, 3]);
    assert_eq!(parsed.rules.len(), 1);
}

#[test]
fn display_names_the_line() {
    let error = ParseError {
        line: 7,
        message: "bad".into(),
    };
    assert_eq!(error.to_string(), "line 7: bad");
    let whole_file = ParseError {
        line: 0,
        message: "too big".into(),
    };
    assert_eq!(whole_file.to_string(), "too big");
}

#[test]
fn bounded_input() {
    let big = format!("/a\n  X-A: {}\n", "x".repeat(MAX_BYTES));
    let errors = parse(&big).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, 0);

    let many: String = (0..=MAX_RULES)
        .map(|i| format!("/p{i}\n  X-A: 1\n"))
        .collect();
    assert!(many.len() <= MAX_BYTES);
    let errors = parse(&many).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, 2 * MAX_RULES + 1);
    assert!(errors[0].message.contains("more than"));

    let exactly: String = (0..MAX_RULES)
        .map(|i| format!("/p{i}\n  X-A: 1\n"))
        .collect();
    assert_eq!(parse(&exactly).unwrap().len(), MAX_RULES);

    let broken = "/a\n".to_owned() + &"  no colon\n".repeat(1000);
    let errors = parse(&broken).unwrap_err();
    assert_eq!(errors.len(), MAX_ERRORS + 1);
    assert!(errors[MAX_ERRORS].message.contains("too many errors"));
}

proptest! {
    #[test]
    fn never_panics(text in any::<String>()) {
        let _ = parse(&text);
    }

    #[test]
    fn never_panics_on_near_misses(
        lines in prop::collection::vec(
            prop_oneof![
                "/[a-z*:./]{0,12}",
                "[ \t]{1,3}!?[ ]?[A-Za-z-]{0,8}:?[ ]?[ -~\u{80}-\u{ff}]{0,12}",
                "#.{0,10}",
                "https?://[a-z.]{0,8}/?",
                ".{0,16}",
            ],
            0..40,
        ),
        ending in prop_oneof![Just("\n"), Just("\r\n")],
    ) {
        let text = lines.join(ending);
        match parse(&text) {
            Ok(rules) => {
                for rule in rules {
                    prop_assert!(rule.path.starts_with('/'));
                    prop_assert!(!rule.set.is_empty() || !rule.remove.is_empty());
                }
            }
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for error in errors {
                    prop_assert!(error.line >= 1);
                }
            }
        }
    }
}
