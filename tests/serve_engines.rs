//! Real engines pull from `ocikit serve`: containerd 1.6 (`ctr images pull --plain-http`) and
//! Docker's daemon 20.10 (Debian's `containerd` and `docker.io`; `.ci/run` installs them),
//! each started by the test on private sockets and directories and killed by PID at the end.
//! Where a daemon cannot start (not installed, no privileges), the test prints a notice and
//! returns; where containers cannot run, `docker run` is skipped with a notice.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::serve::*;
use common::*;
use ocikit_layout::Compression;

/// A daemon started by a test, killed (by its PID) when dropped.
struct Daemon {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM first, so it can unmount what it mounted; then SIGKILL.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("{} did not stop on SIGTERM; killed", self.name);
    }
}

fn log_of(d: &Daemon) -> String {
    std::fs::read_to_string(&d.log).unwrap_or_default()
}

/// Wait for `sock` to appear while `d` runs; `None` (with a notice) if it does not.
fn wait_for(mut d: Daemon, sock: &Path) -> Option<Daemon> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if sock.exists() {
            return Some(d);
        }
        if let Ok(Some(status)) = d.child.try_wait() {
            eprintln!(
                "skipping: {} could not start here ({status}):\n{}",
                d.name,
                log_of(&d)
            );
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "skipping: {} did not come up in 30 s:\n{}",
        d.name,
        log_of(&d)
    );
    None
}

/// containerd on a private socket, root and state under `dir`.
fn containerd(dir: &Path) -> Option<(Daemon, PathBuf)> {
    if !have("containerd") || !have("ctr") {
        return None;
    }
    let sock = dir.join("containerd.sock");
    let config = dir.join("containerd.toml");
    std::fs::write(
        &config,
        format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n\
             [debug]\n  address = \"{debug}\"\n",
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            sock = sock.display(),
            debug = dir.join("debug.sock").display(),
        ),
    )
    .expect("config");
    let log = dir.join("containerd.log");
    let child = Command::new("containerd")
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .ok()?;
    let d = wait_for(
        Daemon {
            child,
            name: "containerd",
            log,
        },
        &sock,
    )?;
    Some((d, sock))
}

/// dockerd on a private socket and data root, using `containerd_sock`.
fn dockerd(dir: &Path, containerd_sock: &Path) -> Option<(Daemon, PathBuf)> {
    if !have("dockerd") || !have("docker") {
        return None;
    }
    let sock = dir.join("docker.sock");
    let log = dir.join("dockerd.log");
    let child = Command::new("dockerd")
        .arg("--data-root")
        .arg(dir.join("root"))
        .arg("--exec-root")
        .arg(dir.join("exec"))
        .arg("--pidfile")
        .arg(dir.join("dockerd.pid"))
        .arg("--host")
        .arg(format!("unix://{}", sock.display()))
        .arg("--containerd")
        .arg(containerd_sock)
        .args([
            "--bridge",
            "none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
            "--storage-driver",
            "vfs",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .ok()?;
    let d = wait_for(
        Daemon {
            child,
            name: "dockerd",
            log,
        },
        &sock,
    )?;
    // The socket appears before the API answers.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if docker(&sock, &["version"]).status.success() {
            return Some((d, sock));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("skipping: dockerd does not answer:\n{}", log_of(&d));
    None
}

fn ctr(sock: &Path, args: &[&str]) -> Output {
    Command::new("ctr")
        .arg("--address")
        .arg(sock)
        .args(["--namespace", "ocikit-test"])
        .args(args)
        .output()
        .expect("ctr")
}

fn docker(sock: &Path, args: &[&str]) -> Output {
    Command::new("docker")
        .env("DOCKER_HOST", format!("unix://{}", sock.display()))
        .env("DOCKER_CONFIG", sock.with_file_name("docker-config"))
        .args(args)
        .output()
        .expect("docker")
}

fn ok(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({}):\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A runnable image: this machine's `/bin/sh` with the libraries `ldd` names, in one layer
/// (executables 0755), tagged `docker.io/library/shell:1` in the layout at `dir`.
fn shell_image(dir: &Path) -> Option<Built> {
    let sh = std::fs::canonicalize("/bin/sh").ok()?;
    let ldd = Command::new("ldd").arg(&sh).output().ok()?;
    let mut files: Vec<PathBuf> = vec![sh.clone()];
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(PathBuf::from);
        if let Some(p) = path {
            files.push(p);
        }
    }
    let mut b = tar::Builder::new(Vec::new());
    for f in &files {
        let data = std::fs::read(f).ok()?;
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        let name = f.strip_prefix("/").ok()?;
        b.append_data(&mut h, name, &data[..]).ok()?;
    }
    // `/bin/sh` where the image's command looks for it.
    let data = std::fs::read(&sh).ok()?;
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o755);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, "bin/sh", &data[..]).ok()?;
    let tar = b.into_inner().ok()?;
    Some(add_image(
        dir,
        "docker.io/library/shell:1",
        &[LayerSpec {
            tar,
            compression: Compression::Gzip,
            media_type: None,
        }],
        None,
    ))
}

#[test]
fn containerd_pulls_with_the_layout_digests() {
    let tmp = tempdir();
    let site = tmp.path().join("site");
    let built = small_image(&site, "docker.io/library/app:1.0");
    let Some((_ctd, sock)) = containerd(tmp.path()) else {
        return;
    };
    let s = Served::start(tmp.path(), &["site"]);
    let image = format!("{}/library/app:1.0", s.addr);
    ok(
        &ctr(&sock, &["images", "pull", "--plain-http", &image]),
        "ctr pull",
    );
    let listed = ok(&ctr(&sock, &["images", "ls"]), "ctr images ls");
    let line = listed
        .lines()
        .find(|l| l.starts_with(&image))
        .unwrap_or_else(|| panic!("{image} not in:\n{listed}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[1], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(cols[2], built.manifest.digest.as_str());
    let content = ok(&ctr(&sock, &["content", "ls", "-q"]), "ctr content ls");
    for d in [
        &built.manifest.digest,
        &built.config.0,
        &built.layers[0].digest,
    ] {
        assert!(
            content.lines().any(|l| l == d.as_str()),
            "{d} not in:\n{content}"
        );
    }
    let _ = ctr(&sock, &["images", "rm", &image]);
}

#[test]
fn dockerd_pulls_with_the_layout_digests_and_runs_the_image() {
    let tmp = tempfile::Builder::new()
        .prefix("ok")
        .tempdir_in("/tmp")
        .expect("tmp");
    let site = tmp.path().join("site");
    let Some(built) = shell_image(&site) else {
        eprintln!("skipping: no /bin/sh with ldd to build a runnable image");
        return;
    };
    let Some((_ctd, csock)) = containerd(tmp.path()) else {
        return;
    };
    let ddir = tmp.path().join("d");
    std::fs::create_dir_all(&ddir).expect("mkdir");
    let Some((_dockerd, sock)) = dockerd(&ddir, &csock) else {
        return;
    };
    let s = Served::start(tmp.path(), &["site"]);
    let image = format!("{}/library/shell:1", s.addr);
    ok(&docker(&sock, &["pull", &image]), "docker pull");
    let digest = ok(
        &docker(
            &sock,
            &[
                "image",
                "inspect",
                "--format",
                "{{index .RepoDigests 0}}",
                &image,
            ],
        ),
        "docker image inspect",
    );
    assert_eq!(
        digest.trim(),
        format!("{}/library/shell@{}", s.addr, built.manifest.digest)
    );
    let id = ok(
        &docker(&sock, &["image", "inspect", "--format", "{{.Id}}", &image]),
        "docker image inspect",
    );
    assert_eq!(id.trim(), built.config.0.as_str());
    let layers = ok(
        &docker(
            &sock,
            &[
                "image",
                "inspect",
                "--format",
                "{{json .RootFS.Layers}}",
                &image,
            ],
        ),
        "docker image inspect",
    );
    assert_eq!(layers.trim(), format!("[\"{}\"]", built.layers[0].diff_id));
    let run = docker(
        &sock,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            &image,
            "/bin/sh",
            "-c",
            "echo served by ocikit",
        ],
    );
    if run.status.success() {
        assert_eq!(String::from_utf8_lossy(&run.stdout), "served by ocikit\n");
    } else {
        eprintln!(
            "notice: `docker run` cannot run containers here, pull checked only: {}",
            String::from_utf8_lossy(&run.stderr).trim()
        );
    }
    let _ = docker(&sock, &["rmi", "-f", &image]);
}
