//! The Dockerfile keeps its promises (SPEC "Details"): a multi-stage build of a static
//! binary, a non-root user, the exposed ports, a HEALTHCHECK on the admin `/healthz`, and
//! `weir run -c /etc/weir/weir.toml` as the command. There is no Docker daemon in CI, so
//! the file is parsed instead, and the config the image runs is checked with `weir check`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One instruction, continuation lines joined: `("RUN", "apt-get update && ...")`.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

/// The instructions of one build stage, from its `FROM` up to the next one.
#[derive(Debug)]
struct Stage {
    from: String,
    instructions: Vec<Instruction>,
}

impl Stage {
    fn all<'a>(&'a self, keyword: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.instructions
            .iter()
            .filter(move |i| i.keyword == keyword)
            .map(|i| i.args.as_str())
    }

    fn last<'a>(&'a self, keyword: &'a str) -> Option<&'a str> {
        self.all(keyword).last()
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Splits the Dockerfile into stages. Comment lines (also inside a continued instruction)
/// are skipped and lines ending in `\` are joined, as Docker does.
fn stages() -> Vec<Stage> {
    let text = read("Dockerfile");
    let mut instructions = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(trimmed);
                let full = std::mem::take(&mut pending);
                let (keyword, args) = full.split_once(char::is_whitespace).unwrap_or((&full, ""));
                instructions.push(Instruction {
                    keyword: keyword.to_ascii_uppercase(),
                    args: args.trim().to_owned(),
                });
            }
        }
    }
    assert!(
        pending.is_empty(),
        "Dockerfile ends inside a continued line: {pending:?}"
    );

    let mut stages: Vec<Stage> = Vec::new();
    for instruction in instructions {
        if instruction.keyword == "FROM" {
            stages.push(Stage {
                from: instruction.args,
                instructions: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push(instruction);
        } else if instruction.keyword != "ARG" {
            panic!(
                "Dockerfile has {} before its first FROM",
                instruction.keyword
            );
        }
    }
    stages
}

fn final_stage(stages: &[Stage]) -> &Stage {
    stages.last().expect("Dockerfile has no FROM at all")
}

/// `["a", "b"]` -> `vec!["a", "b"]`; `None` for the shell form.
fn exec_form(args: &str) -> Option<Vec<String>> {
    let inner = args.trim().strip_prefix('[')?.strip_suffix(']')?;
    inner
        .split(',')
        .map(|item| {
            let item = item.trim();
            item.strip_prefix('"')?.strip_suffix('"').map(str::to_owned)
        })
        .collect()
}

/// The `--from=` of a COPY, if any, and its remaining words.
fn copy_parts(args: &str) -> (Option<&str>, Vec<&str>) {
    let mut from = None;
    let mut words = Vec::new();
    for word in args.split_whitespace() {
        if let Some(stage) = word.strip_prefix("--from=") {
            from = Some(stage);
        } else if !word.starts_with("--") {
            words.push(word);
        }
    }
    (from, words)
}

#[test]
fn multi_stage_build_copies_the_binary_from_a_builder() {
    let stages = stages();
    assert!(
        stages.len() >= 2,
        "the Dockerfile must be multi-stage (a builder and a runtime stage), found {} FROM",
        stages.len()
    );
    let last = final_stage(&stages);
    let copies_binary = last.all("COPY").any(|args| {
        let (from, words) = copy_parts(args);
        from.is_some() && words.last() == Some(&"/usr/local/bin/weir")
    });
    assert!(
        copies_binary,
        "the final stage (FROM {}) must COPY --from=<builder> the binary to /usr/local/bin/weir",
        last.from
    );
    assert!(
        !last.all("RUN").any(|run| run.contains("cargo ")),
        "the final stage must not run cargo: the toolchain belongs in the builder"
    );
}

#[test]
fn builder_links_a_static_binary() {
    let stages = stages();
    let builders = &stages[..stages.len().saturating_sub(1)];
    let build = builders
        .iter()
        .flat_map(|stage| stage.all("RUN"))
        .find(|run| run.contains("cargo build"))
        .expect("no builder stage runs `cargo build`");
    for needle in ["+crt-static", "--release", "--target", "-unknown-linux-gnu"] {
        assert!(
            build.contains(needle),
            "the builder's cargo build must be static (RUSTFLAGS=\"-C target-feature=+crt-static\" \
             cargo build --release --target <arch>-unknown-linux-gnu); `{needle}` is missing in: {build}"
        );
    }
}

#[test]
fn final_stage_runs_as_a_non_root_user() {
    let stages = stages();
    let last = final_stage(&stages);
    let user = last.last("USER").unwrap_or_else(|| {
        panic!(
            "the final stage (FROM {}) has no USER line: it would run as root",
            last.from
        )
    });
    let is_root = |id: &str| id == "root" || id.parse::<u32>() == Ok(0);
    let (name, group) = match user.split_once(':') {
        Some((name, group)) => (name.trim(), Some(group.trim())),
        None => (user.trim(), None),
    };
    assert!(
        !name.is_empty() && !is_root(name),
        "the final USER must not be root, got `USER {user}`"
    );
    assert!(
        !group.is_some_and(is_root),
        "the final USER must not run with the root group, got `USER {user}`"
    );
}

#[test]
fn healthcheck_calls_the_admin_healthz() {
    let stages = stages();
    let last = final_stage(&stages);
    let health = last
        .last("HEALTHCHECK")
        .unwrap_or_else(|| panic!("the final stage (FROM {}) has no HEALTHCHECK", last.from));
    assert!(
        !health.eq_ignore_ascii_case("NONE") && health.contains("CMD"),
        "HEALTHCHECK must run a command, got `HEALTHCHECK {health}`"
    );
    assert!(
        health.contains("/healthz"),
        "HEALTHCHECK must call the admin /healthz, got `HEALTHCHECK {health}`"
    );
    assert!(
        health.contains(":9901"),
        "HEALTHCHECK must call the admin port 9901, got `HEALTHCHECK {health}`"
    );
}

#[test]
fn exposes_http_tls_quic_and_admin_ports() {
    let stages = stages();
    let last = final_stage(&stages);
    let exposed: Vec<String> = last
        .all("EXPOSE")
        .flat_map(str::split_whitespace)
        .map(|port| port.trim_end_matches("/tcp").to_owned())
        .collect();
    for port in ["8080", "8443", "8443/udp", "9901"] {
        assert!(
            exposed.iter().any(|p| p == port),
            "EXPOSE must include {port} (HTTP 8080, TLS 8443 tcp+udp, admin 9901), exposed: {exposed:?}"
        );
    }
}

#[test]
fn command_runs_the_config_in_etc_weir() {
    let stages = stages();
    let last = final_stage(&stages);
    let entrypoint = last.last("ENTRYPOINT").map(|args| {
        exec_form(args).unwrap_or_else(|| panic!("ENTRYPOINT must use the exec form [\"...\"] so weir is PID 1 and gets SIGTERM, got `{args}`"))
    });
    let cmd = last.last("CMD").expect("the final stage has no CMD");
    let cmd = exec_form(cmd)
        .unwrap_or_else(|| panic!("CMD must use the exec form [\"...\"], got `CMD {cmd}`"));
    let argv: Vec<String> = entrypoint.into_iter().flatten().chain(cmd).collect();
    assert_eq!(
        argv,
        ["/usr/local/bin/weir", "run", "-c", "/etc/weir/weir.toml"],
        "ENTRYPOINT + CMD must run `/usr/local/bin/weir run -c /etc/weir/weir.toml`"
    );
    let installs_config = last.all("COPY").any(|args| {
        let (from, words) = copy_parts(args);
        from.is_none() && words.last() == Some(&"/etc/weir/weir.toml")
    });
    assert!(
        installs_config,
        "the final stage must COPY a config from the repo to /etc/weir/weir.toml"
    );
}

#[test]
fn copied_sources_exist_and_context_skips_target() {
    for stage in stages() {
        for args in stage.all("COPY") {
            let (from, words) = copy_parts(args);
            if from.is_some() || words.len() < 2 {
                continue;
            }
            for source in &words[..words.len() - 1] {
                if *source == "." {
                    continue;
                }
                assert!(
                    repo().join(source).exists(),
                    "`COPY {args}` (FROM {}): {source} does not exist in the repository",
                    stage.from
                );
            }
        }
    }
    let ignore = read(".dockerignore");
    let ignored: Vec<&str> = ignore
        .lines()
        .map(|l| l.trim().trim_end_matches('/'))
        .collect();
    for dir in ["target", ".git"] {
        assert!(
            ignored.contains(&dir),
            ".dockerignore must exclude {dir}/ (the build context would be huge), it has: {ignored:?}"
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let script = repo().join("certs/gen-dev-certs.sh");
        let mode = fs::metadata(&script)
            .unwrap_or_else(|e| panic!("the image build runs {}: {e}", script.display()))
            .permissions()
            .mode();
        assert!(
            mode & 0o111 != 0,
            "{} must be executable (the image build runs it)",
            script.display()
        );
    }
}

/// The image's config, laid out as in the image (weir.toml, www/, certs/ side by side),
/// must pass `weir check`: a typo there would only show when the container fails to start.
#[test]
fn image_config_passes_weir_check() {
    let dir = scratch_dir("image-config");
    fs::copy(repo().join("config/container.toml"), dir.join("weir.toml"))
        .expect("copy config/container.toml");
    copy_dir(&repo().join("config/www"), &dir.join("www"));
    let certs = run(
        Command::new("bash")
            .arg(repo().join("certs/gen-dev-certs.sh"))
            .arg(dir.join("certs")),
        "certs/gen-dev-certs.sh (needs bash and the openssl CLI)",
    );
    assert!(certs.0, "certs/gen-dev-certs.sh failed:\n{}", certs.1);

    let (ok, output) = run(
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("check")
            .arg("-c")
            .arg(dir.join("weir.toml")),
        "weir check",
    );
    assert!(
        ok,
        "`weir check` rejects the image's config (config/container.toml):\n{output}"
    );
    let _ = fs::remove_dir_all(&dir);
}

/// Runs a command to completion within 60 s; returns (success, stdout + stderr).
fn run(cmd: &mut Command, what: &str) -> (bool, String) {
    let out_path = scratch_dir("out").join("output");
    let out = fs::File::create(&out_path).expect("create output file");
    let err = out.try_clone().expect("clone output file");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = fs::read_to_string(&out_path).unwrap_or_default();
    let _ = fs::remove_dir_all(out_path.parent().expect("output dir"));
    (status.success(), format!("{status}\n{output}"))
}

fn scratch_dir(tag: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!(
        "weir-dockerfile-{tag}-{}-{nanos}",
        std::process::id()
    ));
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("create {}: {e}", to.display()));
    for entry in fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display())) {
        let entry = entry.expect("directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target)
                .unwrap_or_else(|e| panic!("copy {}: {e}", entry.path().display()));
        }
    }
}
