//! The deployment files in `deploy/` are valid and agree with each other, checked
//! without Docker or Kubernetes: every YAML file parses; the compose file runs six
//! cluster nodes, the one-shot service that creates the cluster and slotgate, with only
//! slotgate's ports published (on 127.0.0.1); slotgate's config there loads with
//! slotgate's own loader and its `[address_map]` maps exactly the names the nodes
//! announce to the services that run them; the Kubernetes probes hit `/healthz` and
//! `/readyz` on the admin port the ConfigMap's config sets; the image runs as a user
//! other than root; the systemd unit passes `systemd-analyze verify`.
//!
//! One check runs against a live cluster: the image's HEALTHCHECK command, pointed at
//! a slotgate's admin port, passes, and fails where nothing listens.
//!
//! Tools that are not installed are skipped with a line on stderr saying so (run with
//! `--nocapture` to see them): `docker-compose`/`docker compose` (validates the compose
//! file), `kubectl` (builds the kustomization), `systemd-analyze`. No image is built
//! and nothing is started: that needs a Docker daemon.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use slotgate::config::Config;
use support::{cluster_and_proxy, free_port};
use yaml_rust2::{Yaml, YamlLoader};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The single document of a YAML file.
fn load_yaml(path: &Path) -> Yaml {
    let mut docs = YamlLoader::load_from_str(&read(path))
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
    assert_eq!(
        docs.len(),
        1,
        "{}: expected one YAML document",
        path.display()
    );
    docs.remove(0)
}

fn str_of<'a>(y: &'a Yaml, what: &str) -> &'a str {
    y.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {y:?}"))
}

/// A YAML scalar as text (ports and the like may be written as numbers).
fn scalar(y: &Yaml) -> String {
    match y {
        Yaml::String(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

/// A list of strings (a command in exec form, a list of networks...).
fn strings(y: &Yaml, what: &str) -> Vec<String> {
    y.as_vec()
        .unwrap_or_else(|| panic!("{what}: expected a list, got {y:?}"))
        .iter()
        .map(scalar)
        .collect()
}

/// The argument that follows `flag` in a command line.
fn arg_after<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let at = args.iter().position(|a| a == flag)?;
    args.get(at + 1).map(String::as_str)
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yml" | "yaml")
        ) {
            out.push(path);
        }
    }
}

/// `Some(path)` when `cmd` is on PATH; else says on stderr what is skipped.
fn tool(cmd: &str, skipped: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let found = std::env::split_paths(&path)
        .map(|dir| dir.join(cmd))
        .find(|p| p.is_file());
    if found.is_none() {
        eprintln!("deploy: skipped {skipped}: `{cmd}` is not installed");
    }
    found
}

#[test]
fn every_yaml_file_parses() {
    let mut files = Vec::new();
    yaml_files(&deploy_dir(), &mut files);
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.strip_prefix(deploy_dir()).unwrap().display().to_string())
        .collect();
    for expected in [
        "docker-compose.yml",
        "k8s/configmap.yaml",
        "k8s/deployment.yaml",
        "k8s/service.yaml",
        "k8s/pdb.yaml",
        "k8s/kustomization.yaml",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from deploy/ (found {names:?})"
        );
    }
    for file in &files {
        let doc = load_yaml(file);
        assert!(
            doc.as_hash().is_some(),
            "{}: the document is not a mapping",
            file.display()
        );
    }
    // Where Docker is, say whether this test could have built and run the image.
    match Command::new("docker").arg("info").output() {
        Ok(out) if out.status.success() => eprintln!(
            "deploy: a Docker daemon answers; this test still builds and starts nothing \
             (`docker compose -f deploy/docker-compose.yml up` does)"
        ),
        Ok(_) => eprintln!(
            "deploy: docker is installed but no daemon answers: the image is not built and \
             the compose file not run here, only checked"
        ),
        Err(_) => eprintln!(
            "deploy: docker is not installed: the image is not built and the compose file \
             not run here, only checked"
        ),
    }
}

// ---- docker-compose.yml ----

/// A cluster node in the compose file.
struct ComposeNode {
    service: String,
    /// `host:port` the node announces (`--cluster-announce-hostname`, `--port`).
    announced: String,
    port: String,
    networks: Vec<String>,
}

fn compose() -> Yaml {
    load_yaml(&deploy_dir().join("docker-compose.yml"))
}

fn compose_services(doc: &Yaml) -> BTreeMap<String, Yaml> {
    doc["services"]
        .as_hash()
        .expect("docker-compose.yml has no services")
        .iter()
        .map(|(k, v)| (str_of(k, "service name").to_string(), v.clone()))
        .collect()
}

fn compose_nodes(services: &BTreeMap<String, Yaml>) -> Vec<ComposeNode> {
    let mut nodes = Vec::new();
    for (name, svc) in services {
        let Some(command) = svc["command"].as_vec() else {
            continue;
        };
        let args: Vec<String> = command.iter().map(scalar).collect();
        if args.first().map(String::as_str) != Some("redis-server") {
            continue;
        }
        let image = str_of(&svc["image"], "image");
        assert!(
            image.starts_with("redis:7."),
            "{name}: image {image}, expected redis:7.x"
        );
        assert_eq!(
            arg_after(&args, "--cluster-enabled"),
            Some("yes"),
            "{name} is not a cluster node"
        );
        assert_eq!(
            arg_after(&args, "--cluster-preferred-endpoint-type"),
            Some("hostname"),
            "{name} must announce its host name as its endpoint (MOVED carries it)"
        );
        let host = arg_after(&args, "--cluster-announce-hostname")
            .unwrap_or_else(|| panic!("{name} announces no host name"));
        let port = arg_after(&args, "--port").unwrap_or("6379").to_string();
        assert!(
            svc["ports"].is_badvalue(),
            "{name} publishes ports: only slotgate's may be published"
        );
        nodes.push(ComposeNode {
            service: name.clone(),
            announced: format!("{host}:{port}"),
            port,
            networks: strings(&svc["networks"], &format!("{name}.networks")),
        });
    }
    nodes
}

#[test]
fn compose_runs_six_nodes_the_cluster_init_and_slotgate() {
    let doc = compose();
    let services = compose_services(&doc);
    let nodes = compose_nodes(&services);
    assert_eq!(
        nodes.len(),
        6,
        "expected 6 redis services (3 masters + 3 replicas), found {:?}",
        nodes.iter().map(|n| &n.service).collect::<Vec<_>>()
    );
    let announced: BTreeSet<&str> = nodes.iter().map(|n| n.announced.as_str()).collect();
    assert_eq!(announced.len(), 6, "two nodes announce the same name");

    // The nodes live on internal networks only: no route out, nothing published.
    for node in &nodes {
        for net in &node.networks {
            assert_eq!(
                doc["networks"][net.as_str()]["internal"].as_bool(),
                Some(true),
                "{} is on network {net}, which is not internal",
                node.service
            );
        }
    }

    // The one-shot service creates the cluster from all six, one replica per master,
    // after every node is healthy.
    let init = services
        .iter()
        .find(|(_, svc)| {
            strings(&svc["command"], "command")
                .join(" ")
                .contains("--cluster create")
        })
        .map(|(name, svc)| (name.clone(), svc.clone()))
        .expect("no service runs redis-cli --cluster create");
    let (init_name, init_svc) = init;
    let script = strings(&init_svc["command"], "init command").join(" ");
    for flag in ["--cluster-replicas 1", "--cluster-yes"] {
        assert!(script.contains(flag), "{init_name} lacks {flag}");
    }
    for node in &nodes {
        assert!(
            script.contains(&node.service),
            "{init_name} does not add {}",
            node.service
        );
        assert_eq!(
            init_svc["depends_on"][node.service.as_str()]["condition"].as_str(),
            Some("service_healthy"),
            "{init_name} does not wait for {} to be healthy",
            node.service
        );
    }
    assert_eq!(
        init_svc["restart"].as_str(),
        Some("no"),
        "{init_name} runs once"
    );
    // The script, with compose's `$$` undone, is valid sh.
    if tool("sh", "the cluster-init script's syntax check").is_some() {
        let out = Command::new("sh")
            .args(["-n", "-c", &script.replace("$$", "$")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{init_name}'s script is not valid sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // slotgate starts once the cluster exists, and publishes its ports on 127.0.0.1 only.
    let slotgate = services.get("slotgate").expect("no slotgate service");
    assert_eq!(
        slotgate["depends_on"][init_name.as_str()]["condition"].as_str(),
        Some("service_completed_successfully"),
        "slotgate does not wait for {init_name}"
    );
    let published = strings(&slotgate["ports"], "slotgate.ports");
    assert!(!published.is_empty(), "slotgate publishes no port");
    for p in &published {
        assert!(
            p.starts_with("127.0.0.1:"),
            "slotgate publishes {p}: bind published ports to 127.0.0.1"
        );
    }
    for (name, svc) in &services {
        if name != "slotgate" {
            assert!(svc["ports"].is_badvalue(), "{name} publishes ports");
        }
    }
    // slotgate reaches the nodes' network.
    let slotgate_nets = strings(&slotgate["networks"], "slotgate.networks");
    for node in &nodes {
        assert!(
            node.networks.iter().any(|n| slotgate_nets.contains(n)),
            "slotgate shares no network with {}",
            node.service
        );
    }
    // The image is built from deploy/Dockerfile.
    let build = &slotgate["build"];
    let context = deploy_dir().join(str_of(&build["context"], "build.context"));
    assert!(
        context
            .join(str_of(&build["dockerfile"], "build.dockerfile"))
            .is_file(),
        "slotgate's build.dockerfile does not exist"
    );
}

/// slotgate's config file in the compose setup: the host file mounted where its
/// `--config` points, and the container ports its command publishes.
fn compose_slotgate_config(slotgate: &Yaml) -> (Config, Vec<String>) {
    let args = strings(&slotgate["command"], "slotgate.command");
    let config_path = arg_after(&args, "--config").expect("slotgate's command has no --config");
    let mount = strings(&slotgate["volumes"], "slotgate.volumes")
        .into_iter()
        .find_map(|v| {
            let mut parts = v.split(':');
            let host = parts.next()?.to_string();
            (parts.next()? == config_path).then_some(host)
        })
        .unwrap_or_else(|| panic!("no volume mounts slotgate's config at {config_path}"));
    let text = read(&deploy_dir().join(mount));
    let config = Config::from_toml(&text)
        .unwrap_or_else(|e| panic!("the compose slotgate config does not load: {e}"));
    let container_ports = strings(&slotgate["ports"], "slotgate.ports")
        .iter()
        .map(|p| p.rsplit(':').next().unwrap().to_string())
        .collect();
    (config, container_ports)
}

#[test]
fn compose_address_map_maps_every_announced_name_to_its_service() {
    let doc = compose();
    let services = compose_services(&doc);
    let nodes = compose_nodes(&services);
    let (config, container_ports) = compose_slotgate_config(&services["slotgate"]);

    let map: BTreeMap<String, String> = config
        .address_map
        .iter()
        .map(|(from, to)| (from.as_str().to_string(), to.as_str().to_string()))
        .collect();
    let announced: BTreeSet<String> = nodes.iter().map(|n| n.announced.clone()).collect();
    let keys: BTreeSet<String> = map.keys().cloned().collect();
    assert_eq!(
        keys, announced,
        "[address_map]'s keys are not the names the nodes announce"
    );
    for node in &nodes {
        let dialled = &map[&node.announced];
        assert_eq!(
            dialled,
            &format!("{}:{}", node.service, node.port),
            "{} is announced by service {}, but [address_map] sends it to {dialled}",
            node.announced,
            node.service
        );
    }
    // The announced names are not service names: without the map nothing would resolve.
    for node in &nodes {
        let host = node.announced.rsplit_once(':').unwrap().0;
        assert!(
            !services.contains_key(host),
            "{host} is a service name: the map would prove nothing"
        );
    }

    // Every seed is a node, by announced name or by service.
    assert!(!config.seeds.is_empty());
    for seed in &config.seeds {
        let seed = seed.as_str();
        assert!(
            map.contains_key(seed) || map.values().any(|v| v == seed),
            "seed {seed} is no node of the compose file"
        );
    }

    // Clients and the admin port listen on every interface of the container, on the
    // ports compose publishes.
    let admin = config.admin.listen.expect("the admin port is off");
    for (what, addr) in [("listen", config.listen), ("admin.listen", admin)] {
        assert!(
            addr.ip().is_unspecified(),
            "{what} = {addr}: in a container it must be 0.0.0.0 for the published port"
        );
        assert!(
            container_ports.contains(&addr.port().to_string()),
            "{what} port {} is not published (published: {container_ports:?})",
            addr.port()
        );
    }
}

#[test]
fn compose_file_passes_docker_compose_config() {
    let file = deploy_dir().join("docker-compose.yml");
    let mut cmd = if tool("docker-compose", "`docker-compose config`").is_some() {
        Command::new("docker-compose")
    } else {
        let plugin = Command::new("docker")
            .args(["compose", "version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !plugin {
            eprintln!("deploy: skipped `docker compose config`: no compose plugin");
            return;
        }
        let mut c = Command::new("docker");
        c.arg("compose");
        c
    };
    let out = cmd
        .arg("-f")
        .arg(&file)
        .args(["config", "-q"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "compose rejects {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---- Kubernetes ----

fn k8s(name: &str) -> Yaml {
    load_yaml(&deploy_dir().join("k8s").join(name))
}

/// The ConfigMap's slotgate.toml, loaded by slotgate's own loader.
fn k8s_config() -> Config {
    let cm = k8s("configmap.yaml");
    assert_eq!(cm["kind"].as_str(), Some("ConfigMap"));
    let text = str_of(&cm["data"]["slotgate.toml"], "data.slotgate.toml");
    Config::from_toml(text)
        .unwrap_or_else(|e| panic!("the ConfigMap's slotgate.toml does not load: {e}"))
}

/// The container port a probe or Service names (by name or number).
fn container_port(container: &Yaml, port: &Yaml) -> u16 {
    let ports = container["ports"]
        .as_vec()
        .expect("the container has no ports");
    match port {
        Yaml::Integer(n) => u16::try_from(*n).unwrap(),
        Yaml::String(name) => ports
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .and_then(|p| p["containerPort"].as_i64())
            .map(|n| u16::try_from(n).unwrap())
            .unwrap_or_else(|| panic!("no container port named {name}")),
        other => panic!("bad port {other:?}"),
    }
}

fn slotgate_container(deployment: &Yaml) -> &Yaml {
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_vec()
        .expect("the Deployment has no containers");
    containers
        .iter()
        .find(|c| c["name"].as_str() == Some("slotgate"))
        .expect("no container named slotgate")
}

#[test]
fn k8s_probes_hit_healthz_and_readyz_on_the_configured_admin_port() {
    let config = k8s_config();
    let admin: SocketAddr = config.admin.listen.expect("the ConfigMap turns admin off");
    assert!(
        admin.ip().is_unspecified(),
        "admin.listen = {admin}: the kubelet probes the pod's address, so 0.0.0.0"
    );
    assert!(
        config.listen.ip().is_unspecified(),
        "listen must be 0.0.0.0 in a pod"
    );

    let deployment = k8s("deployment.yaml");
    assert_eq!(deployment["kind"].as_str(), Some("Deployment"));
    let container = slotgate_container(&deployment);
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe} path");
        assert_eq!(
            container_port(container, &get["port"]),
            admin.port(),
            "{probe} does not probe the admin port of the ConfigMap's config"
        );
    }

    // The config is the ConfigMap, mounted where --config points.
    let args = strings(&container["args"], "args");
    let config_path = Path::new(arg_after(&args, "--config").expect("no --config"));
    let mount = container["volumeMounts"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|m| config_path.starts_with(str_of(&m["mountPath"], "mountPath")))
        .expect("nothing is mounted where --config points");
    let volume_name = str_of(&mount["name"], "volumeMount name");
    let volume = deployment["spec"]["template"]["spec"]["volumes"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|v| v["name"].as_str() == Some(volume_name))
        .expect("the mounted volume is not declared");
    assert_eq!(volume["configMap"]["name"].as_str(), Some("slotgate"));
    assert_eq!(
        config_path.file_name().and_then(|f| f.to_str()),
        Some("slotgate.toml")
    );

    // The Service sends clients to the client port the config listens on.
    let service = k8s("service.yaml");
    let ports = service["spec"]["ports"].as_vec().unwrap();
    assert!(
        ports
            .iter()
            .any(|p| container_port(container, &p["targetPort"]) == config.listen.port()),
        "the Service does not target slotgate's listen port {}",
        config.listen.port()
    );
    // The admin port (no authentication) is not on the Service.
    assert!(
        ports
            .iter()
            .all(|p| container_port(container, &p["targetPort"]) != admin.port()),
        "the Service exposes the admin port"
    );
}

#[test]
fn k8s_runs_several_locked_down_replicas_behind_one_selector() {
    let deployment = k8s("deployment.yaml");
    let spec = &deployment["spec"];
    assert!(
        spec["replicas"].as_i64().unwrap_or(1) >= 2,
        "slotgate scales out by replicas: run several"
    );
    let labels = &spec["template"]["metadata"]["labels"];
    let selects = |selector: &Yaml, what: &str| {
        for (k, v) in selector
            .as_hash()
            .unwrap_or_else(|| panic!("{what}: no selector"))
        {
            assert_eq!(
                &labels[str_of(k, "label")],
                v,
                "{what} selects {k:?}={v:?}, which the pods do not carry"
            );
        }
    };
    selects(&spec["selector"]["matchLabels"], "Deployment");
    selects(&k8s("service.yaml")["spec"]["selector"], "Service");
    let pdb = k8s("pdb.yaml");
    assert_eq!(pdb["kind"].as_str(), Some("PodDisruptionBudget"));
    selects(
        &pdb["spec"]["selector"]["matchLabels"],
        "PodDisruptionBudget",
    );

    let pod = &spec["template"]["spec"];
    let container = slotgate_container(&deployment);
    let sc = &container["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(strings(&sc["capabilities"]["drop"], "drop"), ["ALL"]);
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let uid = pod["securityContext"]["runAsUser"]
        .as_i64()
        .expect("no runAsUser");
    assert_ne!(uid, 0);
    assert_eq!(
        uid.to_string(),
        dockerfile_user().0,
        "runAsUser differs from the image's USER"
    );
    let resources = &container["resources"];
    assert!(
        !resources["requests"]["cpu"].is_badvalue(),
        "no CPU request"
    );
    assert!(
        !resources["limits"]["memory"].is_badvalue(),
        "no memory limit"
    );
}

#[test]
fn kustomization_lists_every_manifest() {
    let dir = deploy_dir().join("k8s");
    let kustomization = k8s("kustomization.yaml");
    let listed: BTreeSet<String> = strings(&kustomization["resources"], "resources")
        .into_iter()
        .collect();
    let mut files = Vec::new();
    yaml_files(&dir, &mut files);
    let present: BTreeSet<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
        .filter(|n| n != "kustomization.yaml")
        .collect();
    assert_eq!(listed, present, "kustomization.yaml's resources");

    if tool("kubectl", "`kubectl kustomize deploy/k8s`").is_some() {
        let out = Command::new("kubectl")
            .arg("kustomize")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl kustomize: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let docs = YamlLoader::load_from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
        let kinds: BTreeSet<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        for kind in ["ConfigMap", "Deployment", "Service", "PodDisruptionBudget"] {
            assert!(kinds.contains(kind), "kubectl kustomize lacks a {kind}");
        }
    }
}

// ---- Dockerfile ----

/// The final stage's `USER` (uid or name, without the group) and the stage count.
fn dockerfile_user() -> (String, usize) {
    let text = read(&deploy_dir().join("Dockerfile"));
    let mut stages = 0;
    let mut user = None;
    for line in text.lines().map(str::trim) {
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("FROM ") {
            stages += 1;
            user = None; // USER is per stage
        } else if upper.starts_with("USER ") {
            let spec = line[5..].trim();
            user = Some(spec.split(':').next().unwrap().to_string());
        }
    }
    (
        user.expect("the final stage sets no USER: it would run as root"),
        stages,
    )
}

#[test]
fn dockerfile_is_multi_stage_and_runs_as_non_root() {
    let text = read(&deploy_dir().join("Dockerfile"));
    let (user, stages) = dockerfile_user();
    assert!(stages >= 2, "expected a build stage and a runtime stage");
    assert!(
        user != "root" && user != "0",
        "the image runs as {user}: must not be root"
    );
    assert!(
        text.contains("COPY --from=build"),
        "the runtime stage does not take the binary from the build stage"
    );
    let exposed: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("EXPOSE "))
        .flat_map(str::split_whitespace)
        .collect();
    // The ports the compose config uses, which are slotgate's usual ones.
    for port in ["6380", "9380"] {
        assert!(exposed.contains(port), "EXPOSE lacks {port}");
    }
    assert!(text.contains("HEALTHCHECK"), "no HEALTHCHECK");
    assert!(
        text.contains("/healthz"),
        "the HEALTHCHECK does not ask /healthz"
    );
    // The build context filter keeps what the build needs.
    let ignore = read(&deploy_dir().join("Dockerfile.dockerignore"));
    for needed in ["!Cargo.toml", "!Cargo.lock", "!src/"] {
        assert!(
            ignore.lines().any(|l| l.trim() == needed),
            "Dockerfile.dockerignore drops {needed}"
        );
    }
}

/// The HEALTHCHECK's command, in exec form: `CMD ["/bin/bash", "-c", "..."]`.
fn dockerfile_healthcheck() -> Vec<String> {
    let text = read(&deploy_dir().join("Dockerfile"));
    // Join continuation lines, then find the HEALTHCHECK instruction.
    let joined = text.replace("\\\n", " ");
    let line = joined
        .lines()
        .find(|l| l.trim_start().starts_with("HEALTHCHECK"))
        .expect("no HEALTHCHECK");
    let exec = &line[line.find("CMD").expect("HEALTHCHECK without CMD") + 3..];
    let doc = YamlLoader::load_from_str(exec.trim()).expect("CMD is not a JSON array");
    strings(&doc[0], "HEALTHCHECK CMD")
}

#[test]
fn dockerfile_healthcheck_passes_against_a_live_admin_port() {
    let cmd = dockerfile_healthcheck();
    assert_eq!(cmd[0], "/bin/bash");
    let script = &cmd[2];
    assert!(
        script.contains("/9380"),
        "the HEALTHCHECK does not ask port 9380"
    );
    let (_cluster, proxy) = cluster_and_proxy(3, 0, &["--admin", "127.0.0.1:0"]);
    let admin = proxy.admin_url().expect("no admin port");
    let admin_port = admin.rsplit(':').next().unwrap();
    let run = |port: &str| {
        Command::new("bash")
            .args(["-c", &script.replace("/9380", &format!("/{port}"))])
            .output()
            .unwrap()
    };
    let out = run(admin_port);
    assert!(
        out.status.success(),
        "the HEALTHCHECK fails against {admin}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Where nothing answers, it fails (a check that cannot fail proves nothing).
    let closed = free_port().to_string();
    assert!(
        !run(&closed).status.success(),
        "the HEALTHCHECK passes with nothing on port {closed}"
    );
}

// ---- systemd ----

#[test]
fn systemd_unit_is_hardened_and_verifies() {
    let unit_path = deploy_dir().join("systemd/slotgate.service");
    let unit = read(&unit_path);
    let has = |line: &str| unit.lines().any(|l| l.trim() == line);
    for line in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(has(line), "the unit lacks `{line}`");
    }
    assert!(
        has("DynamicUser=yes") || unit.lines().any(|l| l.starts_with("User=")),
        "the unit runs as root"
    );
    let nofile: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("LimitNOFILE="))
        .expect("no LimitNOFILE")
        .parse()
        .unwrap();
    assert!(nofile >= 65536, "LimitNOFILE={nofile}: too low for a proxy");

    let Some(analyze) = tool("systemd-analyze", "`systemd-analyze verify`") else {
        return;
    };
    // verify checks that ExecStart's binary exists: point it at the one cargo built.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("slotgate.service");
    let bin = env!("CARGO_BIN_EXE_slotgate");
    fs::write(
        &copy,
        unit.replace(
            "ExecStart=/usr/local/bin/slotgate",
            &format!("ExecStart={bin}"),
        ),
    )
    .unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify {}: {stderr}",
        unit_path.display()
    );
    // verify exits 0 on some warnings; a line naming the unit is a finding.
    let findings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("slotgate.service"))
        .collect();
    assert!(findings.is_empty(), "systemd-analyze verify: {findings:#?}");
}
