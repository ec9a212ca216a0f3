//! The Kubernetes example in config/k8s/ keeps the promises of SPEC "Details": a Deployment
//! with readiness on `/readyz` and liveness on `/healthz` (admin port 9901), the ConfigMap
//! mounted as a directory at /etc/weir (no subPath, so a reload sees kubelet's `..data`
//! symlink swap), a locked-down non-root container, the ports 8080, 8443 (TCP and UDP) and
//! 9901, and a `weir.toml` in the ConfigMap that passes `weir check`. There is no cluster in
//! CI: the manifests are parsed, and the embedded config is laid out as the pod sees it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn manifest(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("config/k8s")
        .join(name);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

/// `value` at a dotted path (`spec.template.spec`); numbers index arrays.
fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .fold(value, |v, key| match key.parse::<usize>() {
            Ok(i) => &v[i],
            Err(_) => &v[key],
        })
}

fn array<'a>(value: &'a Value, path: &str) -> &'a Vec<Value> {
    at(value, path)
        .as_array()
        .unwrap_or_else(|| panic!("{path} is not a list: {}", at(value, path)))
}

fn deployment() -> Value {
    let deployment = manifest("deployment.yaml");
    assert_eq!(deployment["kind"], "Deployment");
    assert_eq!(deployment["apiVersion"], "apps/v1");
    deployment
}

/// The container named `weir`.
fn weir_container(deployment: &Value) -> &Value {
    array(deployment, "spec.template.spec.containers")
        .iter()
        .find(|c| c["name"] == "weir")
        .expect("a container named weir")
}

fn configmap() -> Value {
    let configmap = manifest("configmap.yaml");
    assert_eq!(configmap["kind"], "ConfigMap");
    configmap
}

#[test]
fn deployment_runs_weir_with_the_mounted_config() {
    let deployment = deployment();
    let weir = weir_container(&deployment);
    let args: Vec<&str> = array(weir, "args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(args, ["run", "-c", "/etc/weir/weir.toml"]);
}

#[test]
fn replicas_share_the_affinity_key_from_a_secret() {
    let deployment = deployment();
    let weir = weir_container(&deployment);
    let key = array(weir, "env")
        .iter()
        .find(|e| e["name"] == weir::balancer::affinity::KEY_ENV)
        .expect("WEIR_AFFINITY_KEY in the container's env");
    assert_eq!(key["valueFrom"]["secretKeyRef"]["name"], "weir-affinity");
    assert_eq!(key["valueFrom"]["secretKeyRef"]["optional"], true);
}

#[test]
fn probes_use_readyz_and_healthz_on_the_admin_port() {
    let deployment = deployment();
    let weir = weir_container(&deployment);
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = at(weir, &format!("{probe}.httpGet"));
        assert_eq!(get["path"], path, "{probe}: {get}");
        assert_eq!(get["port"], 9901, "{probe}: {get}");
    }
}

#[test]
fn container_exposes_http_tls_quic_and_admin() {
    let deployment = deployment();
    let weir = weir_container(&deployment);
    let ports: Vec<(u64, &str)> = array(weir, "ports")
        .iter()
        .map(|p| {
            (
                p["containerPort"].as_u64().expect("containerPort"),
                p["protocol"].as_str().unwrap_or("TCP"),
            )
        })
        .collect();
    for port in [(8080, "TCP"), (8443, "TCP"), (8443, "UDP"), (9901, "TCP")] {
        assert!(ports.contains(&port), "{port:?} missing in {ports:?}");
    }
}

#[test]
fn container_is_locked_down_and_bounded() {
    let deployment = deployment();
    let pod = at(&deployment, "spec.template.spec.securityContext");
    let weir = weir_container(&deployment);
    let container = &weir["securityContext"];
    assert!(
        container["runAsNonRoot"] == true || pod["runAsNonRoot"] == true,
        "runAsNonRoot: pod {pod}, container {container}"
    );
    assert_ne!(container["runAsUser"], 0, "{container}");
    assert_ne!(pod["runAsUser"], 0, "{pod}");
    assert_eq!(container["readOnlyRootFilesystem"], true, "{container}");
    assert_eq!(container["allowPrivilegeEscalation"], false, "{container}");
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                at(weir, &format!("resources.{kind}.{resource}")).is_string(),
                "resources.{kind}.{resource} missing: {}",
                weir["resources"]
            );
        }
    }
}

/// The ConfigMap is mounted as a directory (no subPath) at /etc/weir, where the args look.
#[test]
fn configmap_is_mounted_as_a_directory() {
    let deployment = deployment();
    let weir = weir_container(&deployment);
    let mount = array(weir, "volumeMounts")
        .iter()
        .find(|m| m["mountPath"] == "/etc/weir")
        .expect("a volumeMount at /etc/weir");
    assert!(
        mount.get("subPath").is_none() && mount.get("subPathExpr").is_none(),
        "a subPath mount is never updated by kubelet, so weir would not see a new config: {mount}"
    );
    let volume = array(&deployment, "spec.template.spec.volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap_or_else(|| panic!("no volume named {}", mount["name"]));
    let configmap = configmap();
    assert_eq!(
        at(volume, "configMap.name"),
        at(&configmap, "metadata.name"),
        "the /etc/weir volume must be the ConfigMap in configmap.yaml: {volume}"
    );
    assert!(
        volume["configMap"].get("items").is_none(),
        "items would hide files; mount the whole ConfigMap: {volume}"
    );
    assert!(
        configmap["data"]["weir.toml"].is_string(),
        "the ConfigMap has no weir.toml"
    );
}

#[test]
fn service_targets_the_deployment_ports() {
    let service = manifest("service.yaml");
    assert_eq!(service["kind"], "Service");
    let deployment = deployment();
    let labels = at(&deployment, "spec.template.metadata.labels");
    let selector = at(&service, "spec.selector")
        .as_object()
        .expect("spec.selector");
    assert!(!selector.is_empty());
    for (key, value) in selector {
        assert_eq!(&labels[key], value, "selector {key} does not match the pod");
    }
    let weir = weir_container(&deployment);
    let container_ports = array(weir, "ports");
    for port in array(&service, "spec.ports") {
        let protocol = port["protocol"].as_str().unwrap_or("TCP");
        let target = &port["targetPort"];
        let found = container_ports.iter().any(|c| {
            c["protocol"].as_str().unwrap_or("TCP") == protocol
                && (c["name"] == *target || c["containerPort"] == *target)
        });
        assert!(found, "service port {port} targets no container port");
    }
}

/// The weir.toml in the ConfigMap, laid out as the pod sees it (the ConfigMap at
/// /etc/weir, the TLS Secret at the other mount), passes `weir check`, listens where the
/// container's ports and probes expect it, and has admin on 0.0.0.0:9901.
#[test]
fn configmap_weir_toml_passes_weir_check() {
    let deployment = deployment();
    let configmap = configmap();
    let weir = weir_container(&deployment);
    let root = tempfile::tempdir().expect("tempdir");
    let volumes = array(&deployment, "spec.template.spec.volumes");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("certificate");
    for mount in array(weir, "volumeMounts") {
        let path = mount["mountPath"].as_str().expect("mountPath");
        let dir = root.path().join(path.trim_start_matches('/'));
        fs::create_dir_all(&dir).expect("mkdir mount");
        let volume = volumes
            .iter()
            .find(|v| v["name"] == mount["name"])
            .expect("the mount's volume");
        if volume["configMap"]["name"] == configmap["metadata"]["name"] {
            for (file, text) in configmap["data"].as_object().expect("data") {
                fs::write(dir.join(file), text.as_str().expect("text")).expect("write");
            }
        } else if volume.get("secret").is_some() {
            // A kubernetes.io/tls Secret: tls.crt and tls.key.
            fs::write(dir.join("tls.crt"), cert.cert.pem()).expect("write tls.crt");
            fs::write(dir.join("tls.key"), cert.signing_key.serialize_pem())
                .expect("write tls.key");
        }
    }
    let file = root.path().join("etc/weir/weir.toml");
    let (code, output) = weir_check(&file);
    assert_eq!(
        code,
        Some(0),
        "weir check rejects the ConfigMap's weir.toml:\n{output}"
    );

    let doc = weir::config::load(&file).expect("loads");
    assert_eq!(
        doc.config.admin.listen, "0.0.0.0:9901",
        "probes reach the pod IP, so admin must listen on 0.0.0.0:9901"
    );
    let ports: Vec<u64> = array(weir, "ports")
        .iter()
        .filter_map(|p| p["containerPort"].as_u64())
        .collect();
    for listener in &doc.config.listeners {
        for bind in &listener.bind {
            let port: u64 = bind
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("a port");
            assert!(
                bind.starts_with("0.0.0.0:") || bind.starts_with("[::]:"),
                "listener {} binds {bind}: unreachable from the Service",
                listener.name
            );
            assert!(
                ports.contains(&port),
                "listener {} binds {bind}, not a containerPort ({ports:?})",
                listener.name
            );
        }
    }
}

/// `weir check -c FILE`, bounded by 30 s: (exit code, stdout + stderr).
fn weir_check(file: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("check")
        .arg("-c")
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn weir check");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("weir check did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}
