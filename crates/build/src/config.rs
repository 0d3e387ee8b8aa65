//! `config`: edits of image configs (and manifest annotations) on every image under a ref, or
//! the platforms chosen, through the one rewriter (see [`crate::edit`]); and [`show`], the
//! configs of every image, read through the rewriter with a memory sink.
//!
//! Fields not edited keep their values and order; unknown fields stay. Setting the entrypoint
//! clears `Cmd` unless a command is set too, as Docker's `ENTRYPOINT` does.

use ocikit_layout::rewrite::{DocEdit, DocSink, Memory, Rewriter, Transform};
use ocikit_layout::{refs, Descriptor, Digest, Layout, Platform, PlatformSpec, WriteLock};
use serde_json::{Map, Value};

use crate::edit::{self, config_platform, image_config, read_object, ImageEditor, Report};
use crate::{Error, Result};

/// A set (`Some`) or removal (`None`) of one key.
pub type KeyEdit = (String, Option<String>);

/// The edits `config` applies, in this order of fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigEdits {
    /// `Env`: `K=V` sets `K`, `K` removes it.
    pub env: Vec<KeyEdit>,
    /// `Entrypoint` (clears `Cmd` unless [`ConfigEdits::cmd`] is set).
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`.
    pub cmd: Option<Vec<String>>,
    /// `User`.
    pub user: Option<String>,
    /// `WorkingDir`.
    pub workdir: Option<String>,
    /// `Labels`.
    pub labels: Vec<KeyEdit>,
    /// `ExposedPorts` added (`8080` means `8080/tcp`).
    pub expose: Vec<String>,
    /// `Volumes` added.
    pub volumes: Vec<String>,
    /// `StopSignal`.
    pub stop_signal: Option<String>,
    /// The manifest's `annotations`.
    pub annotations: Vec<KeyEdit>,
    /// The config's `os.version`.
    pub os_version: Option<String>,
    /// The config's `created` (RFC 3339).
    pub created: Option<String>,
}

impl ConfigEdits {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        *self == ConfigEdits::default()
    }
}

/// `K=V` as a set, `K` as a removal.
pub fn parse_key_edit(s: &str) -> Result<KeyEdit> {
    let (k, v) = match s.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (s, None),
    };
    if k.is_empty() {
        return Err(Error::BadValue {
            value: s.to_string(),
            reason: "expected KEY=VALUE or KEY".into(),
        });
    }
    Ok((k.to_string(), v))
}

/// A command: a JSON array of strings as it is, anything else as a shell string
/// (`["/bin/sh", "-c", S]`), as Dockerfiles read `ENTRYPOINT` and `CMD`.
pub fn parse_command(s: &str) -> Result<Vec<String>> {
    if s.trim_start().starts_with('[') {
        return serde_json::from_str::<Vec<String>>(s).map_err(|e| Error::BadValue {
            value: s.to_string(),
            reason: format!("not a JSON array of strings: {e}"),
        });
    }
    Ok(vec!["/bin/sh".into(), "-c".into(), s.to_string()])
}

/// What `config` does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigOptions {
    /// The edits.
    pub edits: ConfigEdits,
    /// Only the images of these platforms (default: all).
    pub platforms: Vec<PlatformSpec>,
    /// Name the result so, leaving the ref as it was (default: the ref moves).
    pub to: Option<String>,
}

struct Editor(ConfigEdits);

fn strings(v: &[String]) -> Value {
    Value::Array(v.iter().cloned().map(Value::String).collect())
}

fn object<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let v = m
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(o) => o,
        _ => unreachable!("just made an object"),
    }
}

fn apply_keys(m: &mut Map<String, Value>, edits: &[KeyEdit]) {
    for (k, v) in edits {
        match v {
            Some(v) => {
                m.insert(k.clone(), Value::String(v.clone()));
            }
            None => {
                m.shift_remove(k);
            }
        }
    }
}

impl ImageEditor for Editor {
    fn edit(
        &mut self,
        _lock: &WriteLock<'_>,
        _manifest_desc: &Descriptor,
        _docker: bool,
        manifest: &mut Map<String, Value>,
        config: &mut Map<String, Value>,
    ) -> Result<()> {
        let e = &self.0;
        if let Some(v) = &e.os_version {
            config.insert("os.version".into(), Value::String(v.clone()));
        }
        if let Some(v) = &e.created {
            config.insert("created".into(), Value::String(v.clone()));
        }
        let touches_config = !e.env.is_empty()
            || e.entrypoint.is_some()
            || e.cmd.is_some()
            || e.user.is_some()
            || e.workdir.is_some()
            || !e.labels.is_empty()
            || !e.expose.is_empty()
            || !e.volumes.is_empty()
            || e.stop_signal.is_some();
        if touches_config {
            let c = object(config, "config");
            if !e.env.is_empty() {
                let mut env: Vec<String> = c
                    .get("Env")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                for (k, v) in &e.env {
                    let pos = env
                        .iter()
                        .position(|x| x.split_once('=').map_or(x.as_str(), |p| p.0) == k);
                    match (v, pos) {
                        (Some(v), Some(i)) => env[i] = format!("{k}={v}"),
                        (Some(v), None) => env.push(format!("{k}={v}")),
                        (None, Some(i)) => {
                            env.remove(i);
                        }
                        (None, None) => {}
                    }
                }
                c.insert("Env".into(), strings(&env));
            }
            if let Some(ep) = &e.entrypoint {
                c.insert("Entrypoint".into(), strings(ep));
                if e.cmd.is_none() {
                    c.insert("Cmd".into(), Value::Null);
                }
            }
            if let Some(cmd) = &e.cmd {
                c.insert("Cmd".into(), strings(cmd));
            }
            if let Some(u) = &e.user {
                c.insert("User".into(), Value::String(u.clone()));
            }
            if let Some(w) = &e.workdir {
                c.insert("WorkingDir".into(), Value::String(w.clone()));
            }
            if !e.labels.is_empty() {
                apply_keys(object(c, "Labels"), &e.labels);
            }
            for p in &e.expose {
                let p = if p.contains('/') {
                    p.clone()
                } else {
                    format!("{p}/tcp")
                };
                object(c, "ExposedPorts").insert(p, Value::Object(Map::new()));
            }
            for v in &e.volumes {
                object(c, "Volumes").insert(v.clone(), Value::Object(Map::new()));
            }
            if let Some(s) = &e.stop_signal {
                c.insert("StopSignal".into(), Value::String(s.clone()));
            }
        }
        if !e.annotations.is_empty() {
            let a = object(manifest, "annotations");
            apply_keys(a, &e.annotations);
            if a.is_empty() {
                manifest.shift_remove("annotations");
            }
        }
        Ok(())
    }
}

/// Apply `opts.edits` to the images `name` names in `layout`.
pub fn config(layout: &Layout, name: &str, opts: &ConfigOptions) -> Result<Report> {
    if opts.edits.is_empty() {
        return Err(Error::BadValue {
            value: name.to_string(),
            reason: "no edit to make".into(),
        });
    }
    edit::run(
        layout,
        name,
        opts.to.as_deref(),
        &opts.platforms,
        Editor(opts.edits.clone()),
    )
}

/// One image's config, as [`show`] finds it.
#[derive(Debug, Clone, PartialEq)]
pub struct ShownConfig {
    /// The platform (from the index entry, else the config).
    pub platform: Option<Platform>,
    /// The manifest.
    pub manifest: Descriptor,
    /// The config blob.
    pub config: Digest,
    /// The config document.
    pub document: Value,
}

struct Collect {
    platforms: Vec<PlatformSpec>,
    found: Vec<ShownConfig>,
}

impl<S: DocSink> Transform<S> for Collect {
    type Error = Error;
    fn index(
        &mut self,
        _: &S,
        _: &Descriptor,
        _: &mut Map<String, Value>,
        _: bool,
    ) -> Result<DocEdit> {
        Ok(DocEdit::unchanged())
    }
    fn manifest(
        &mut self,
        sink: &S,
        desc: &Descriptor,
        doc: &mut Map<String, Value>,
    ) -> Result<DocEdit> {
        if let Some(c) = image_config(desc, doc) {
            let config = read_object(sink.source(), &c)?;
            let platform = desc
                .platform
                .as_deref()
                .cloned()
                .or_else(|| config_platform(&config));
            if self.platforms.is_empty()
                || platform
                    .as_ref()
                    .is_some_and(|p| self.platforms.iter().any(|s| p.matches(s)))
            {
                self.found.push(ShownConfig {
                    platform,
                    manifest: desc.clone(),
                    config: c.digest,
                    document: Value::Object(config),
                });
            }
        }
        Ok(DocEdit::unchanged())
    }
}

/// The config of every image `name` names (of the platforms given, or all), in index order.
pub fn show(layout: &Layout, name: &str, platforms: &[PlatformSpec]) -> Result<Vec<ShownConfig>> {
    let index = layout.read_index()?;
    let root = refs::resolve(&index.value, name, layout.root())?;
    let mut rw = Rewriter::with_sink(
        Memory::new(layout),
        Collect {
            platforms: platforms.to_vec(),
            found: Vec::new(),
        },
    );
    rw.visit(&root)?;
    let found = rw.into_transform().found;
    if found.is_empty() {
        return Err(Error::NoImage {
            name: name.to_string(),
            platforms: platforms
                .iter()
                .map(|p| format!("{}/{}", p.os, p.architecture))
                .collect(),
        });
    }
    Ok(found)
}
