//! containerd and dockerd for the tests, on private sockets and data roots under a temp
//! directory (overlay2, vfs where overlay is not available; no iptables, no bridge), stopped
//! by PID (SIGTERM, then SIGKILL) when dropped. `Engines::start` says why they cannot run
//! where they cannot (not installed, not root), and the tests skip with that notice.

#![allow(dead_code)] // each test file uses a different part

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The docker client: Debian's (`/usr/bin/docker`, the daemon's own version, which speaks
/// BuildKit without the buildx plugin) when there, else whichever is on `PATH`.
pub fn docker_bin() -> PathBuf {
    let debian = Path::new("/usr/bin/docker");
    if debian.is_file() {
        debian.to_path_buf()
    } else {
        PathBuf::from("docker")
    }
}

pub fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        || Path::new("/usr/sbin").join(tool).is_file()
}

/// A daemon started by a test, stopped (SIGTERM, then SIGKILL) by its PID when dropped.
pub struct Daemon {
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// containerd and dockerd on private sockets under `root`.
pub struct Engines {
    root: PathBuf,
    pub containerd: PathBuf,
    // Dropped in reverse order of start: dockerds first, then containerd.
    dockerds: Vec<(Daemon, PathBuf)>,
    _containerd: Daemon,
}

fn wait_for(what: &str, log: &Path, mut ready: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let tail = fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = tail.lines().rev().take(5).collect();
    Err(format!("{what} did not start: {}", tail.join(" | ")))
}

impl Engines {
    /// Start containerd; `Err` says why the engines cannot run here.
    pub fn start(root: &Path) -> Result<Engines, String> {
        for tool in ["containerd", "dockerd", "ctr", "runc"] {
            if !on_path(tool) {
                return Err(format!("`{tool}` is not installed (Debian: docker.io)"));
            }
        }
        if !rustix::process::geteuid().is_root() {
            return Err("the engines need root".into());
        }
        let cfg = root.join("containerd.toml");
        fs::write(&cfg, "version = 2\n").map_err(|e| e.to_string())?;
        let sock = root.join("containerd.sock");
        let log = root.join("containerd.log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&cfg)
            .arg("--root")
            .arg(root.join("containerd-root"))
            .arg("--state")
            .arg(root.join("containerd-state"))
            .arg("--address")
            .arg(&sock)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| e.to_string())?;
        let containerd = Daemon { child };
        wait_for("containerd", &log, || {
            Command::new("ctr")
                .arg("--address")
                .arg(&sock)
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
        })?;
        Ok(Engines {
            root: root.to_path_buf(),
            containerd: sock,
            dockerds: Vec::new(),
            _containerd: containerd,
        })
    }

    /// Start a dockerd with a fresh data root named `name`; returns its socket.
    pub fn dockerd(&mut self, name: &str) -> Result<PathBuf, String> {
        let mut last = String::new();
        for driver in ["overlay2", "vfs"] {
            let dir = self.root.join(format!("{name}-{driver}"));
            fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            fs::write(dir.join("daemon.json"), "{}").map_err(|e| e.to_string())?;
            let sock = dir.join("docker.sock");
            let log = dir.join("dockerd.log");
            let child = Command::new("dockerd")
                .arg("--config-file")
                .arg(dir.join("daemon.json"))
                .arg("--containerd")
                .arg(&self.containerd)
                .args(["--containerd-namespace", name])
                .args(["--containerd-plugins-namespace", &format!("{name}-plugins")])
                .arg("--data-root")
                .arg(dir.join("data"))
                .arg("--exec-root")
                .arg(dir.join("exec"))
                .arg("--pidfile")
                .arg(dir.join("dockerd.pid"))
                .arg("--host")
                .arg(format!("unix://{}", sock.display()))
                .args(["--iptables=false", "--ip-masq=false", "--bridge=none"])
                .args(["--storage-driver", driver])
                .stdout(Stdio::null())
                .stderr(fs::File::create(&log).map_err(|e| e.to_string())?)
                .spawn()
                .map_err(|e| e.to_string())?;
            let mut daemon = Daemon { child };
            let up = wait_for("dockerd", &log, || {
                if matches!(daemon.child.try_wait(), Ok(Some(_))) {
                    return true;
                }
                Command::new(docker_bin())
                    .arg("--host")
                    .arg(format!("unix://{}", sock.display()))
                    .arg("version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            });
            let exited = matches!(daemon.child.try_wait(), Ok(Some(_)));
            match up {
                Ok(()) if !exited => {
                    self.dockerds.push((daemon, sock.clone()));
                    return Ok(sock);
                }
                Ok(()) => {
                    last = fs::read_to_string(&log)
                        .unwrap_or_default()
                        .lines()
                        .last()
                        .unwrap_or_default()
                        .to_string()
                }
                Err(e) => last = e,
            }
            drop(daemon);
        }
        Err(format!("dockerd did not start: {last}"))
    }
}

impl Drop for Engines {
    fn drop(&mut self) {
        // dockerds before containerd (fields drop after this, containerd last).
        self.dockerds.clear();
    }
}

/// The docker client talking to the daemon at `sock`.
pub fn docker(sock: &Path) -> Command {
    let mut c = Command::new(docker_bin());
    c.arg("--host").arg(format!("unix://{}", sock.display()));
    c.env("DOCKER_CONFIG", sock.with_file_name("client"));
    c
}
