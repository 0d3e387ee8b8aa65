//! The transform `append` and `config` share: every image manifest under a ref (or those of
//! the platforms asked for) has its config and manifest edited by an [`ImageEditor`]; the
//! rewriter rewrites the indexes above, and the ref moves (or `--to` names the result).
//!
//! Skipped: artifacts (a config that is not an image config, or an `artifactType`), and
//! attestation manifests (platform `unknown/unknown`, or a `vnd.docker.reference.type`
//! annotation), which describe an image rather than being one.

use ocikit_layout::engine::{merge_entry, parse_config, plan, ImageSource, RefUpdate};
use ocikit_layout::rewrite::{patch_descriptor, DocEdit, DocSink, Rewriter, Store, Transform};
use ocikit_layout::{
    refs, Descriptor, Digest, Layout, MediaType, Platform, PlatformSpec, WriteLock, JSON_LIMIT,
};
use serde_json::{Map, Value};

use crate::{Error, Result};

/// One image an edit reached.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageChange {
    /// Its platform (from the index entry, else its config).
    pub platform: Option<Platform>,
    /// Its manifest before.
    pub manifest: Digest,
    /// Whether the edit changed it.
    pub changed: bool,
}

/// What an `append` or `config` did.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Every image reached, in the order visited.
    pub images: Vec<ImageChange>,
    /// The entry the ref named before.
    pub old: Descriptor,
    /// The entry after (`None`: nothing changed).
    pub new: Option<Descriptor>,
    /// The ref that names the result (`--to`, or the ref itself when it moved).
    pub update: Option<RefUpdate>,
}

/// One image's edit.
pub(crate) trait ImageEditor {
    /// Edit the manifest and config documents (maps of their JSON) of one image. `docker`: the
    /// manifest is Docker schema2. New blobs (layers) go through `lock`.
    fn edit(
        &mut self,
        lock: &WriteLock<'_>,
        manifest_desc: &Descriptor,
        docker: bool,
        manifest: &mut Map<String, Value>,
        config: &mut Map<String, Value>,
    ) -> Result<()>;
}

/// The [`Transform`] that hands each selected image to an [`ImageEditor`].
pub(crate) struct EditImages<E> {
    pub editor: E,
    pub platforms: Vec<PlatformSpec>,
    pub images: Vec<ImageChange>,
}

impl<E> EditImages<E> {
    pub fn new(editor: E, platforms: &[PlatformSpec]) -> EditImages<E> {
        EditImages {
            editor,
            platforms: platforms.to_vec(),
            images: Vec::new(),
        }
    }
}

/// Is this manifest in Docker's format (its own `mediaType`, else its descriptor's)?
pub(crate) fn is_docker_doc(desc: &Descriptor, doc: &Map<String, Value>) -> bool {
    match doc.get("mediaType").and_then(Value::as_str) {
        Some(s) => MediaType::parse(s).is_docker(),
        None => desc.media_type.is_docker(),
    }
}

/// The configs an image (not an artifact) has.
pub(crate) fn is_image_config(mt: &MediaType) -> bool {
    matches!(mt, MediaType::OciConfig | MediaType::DockerConfig)
}

/// A document read as a JSON object.
pub(crate) fn read_object(src: &dyn ImageSource, d: &Descriptor) -> Result<Map<String, Value>> {
    let bytes = src.read_document(&d.digest, Some(d.size), JSON_LIMIT)?;
    match ocikit_layout::json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ocikit_layout::Error::BadDocument {
            digest: d.digest.clone(),
            reason: "not a JSON object".into(),
        }
        .into()),
        Err(source) => Err(ocikit_layout::Error::Json {
            what: d.digest.to_string(),
            source,
        }
        .into()),
    }
}

/// The platform a config names.
pub(crate) fn config_platform(config: &Map<String, Value>) -> Option<Platform> {
    let s = |k: &str| config.get(k).and_then(Value::as_str).map(str::to_string);
    let (os, architecture) = (s("os")?, s("architecture")?);
    if os.is_empty() || architecture.is_empty() {
        return None;
    }
    Some(Platform {
        architecture,
        os,
        os_version: s("os.version"),
        os_features: config.get("os.features").and_then(|v| {
            v.as_array().map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
        }),
        variant: s("variant"),
        extra: Map::new(),
    })
}

/// The image a manifest is, if it is one: its config descriptor.
pub(crate) fn image_config(desc: &Descriptor, doc: &Map<String, Value>) -> Option<Descriptor> {
    if doc.contains_key("artifactType") {
        return None;
    }
    if desc
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("vnd.docker.reference.type"))
    {
        return None;
    }
    if desc.platform.as_ref().is_some_and(|p| p.os == "unknown") {
        return None;
    }
    let config: Descriptor = serde_json::from_value(doc.get("config")?.clone()).ok()?;
    is_image_config(&config.media_type).then_some(config)
}

impl<'w, 'l, E: ImageEditor> Transform<Store<'w, 'l>> for EditImages<E> {
    type Error = Error;

    fn index(
        &mut self,
        _sink: &Store<'w, 'l>,
        _desc: &Descriptor,
        _doc: &mut Map<String, Value>,
        children_changed: bool,
    ) -> Result<DocEdit> {
        Ok(DocEdit {
            edited: children_changed,
            media_type: None,
        })
    }

    fn manifest(
        &mut self,
        sink: &Store<'w, 'l>,
        desc: &Descriptor,
        doc: &mut Map<String, Value>,
    ) -> Result<DocEdit> {
        let Some(config_desc) = image_config(desc, doc) else {
            return Ok(DocEdit::unchanged());
        };
        let mut config = read_object(sink.source(), &config_desc)?;
        let platform = desc
            .platform
            .as_deref()
            .cloned()
            .or_else(|| config_platform(&config));
        if !self.platforms.is_empty()
            && !platform
                .as_ref()
                .is_some_and(|p| self.platforms.iter().any(|s| p.matches(s)))
        {
            return Ok(DocEdit::unchanged());
        }
        let docker = is_docker_doc(desc, doc);
        let (doc_before, config_before) = (doc.clone(), config.clone());
        self.editor.edit(sink.0, desc, docker, doc, &mut config)?;
        if config != config_before {
            let bytes = ocikit_layout::json::to_vec(&Value::Object(config)).map_err(|source| {
                ocikit_layout::Error::Json {
                    what: format!("the edited config of {}", desc.digest),
                    source,
                }
            })?;
            parse_config(&bytes).map_err(|problem| Error::Config {
                digest: desc.digest.clone(),
                problem,
            })?;
            let (digest, size) = sink.write_blob(&bytes)?;
            if let Some(Value::Object(obj)) = doc.get_mut("config") {
                patch_descriptor(
                    obj,
                    &Descriptor::new(config_desc.media_type.clone(), digest, size),
                );
            }
        }
        let changed = *doc != doc_before;
        self.images.push(ImageChange {
            platform,
            manifest: desc.digest.clone(),
            changed,
        });
        Ok(DocEdit {
            edited: changed,
            media_type: None,
        })
    }
}

/// Run an image edit on the entry `name` names: every selected image edited, the indexes above
/// rewritten, then `name` moved to the result (or `to` created or moved, `name` untouched).
/// Nothing is committed when no image was selected.
pub(crate) fn run<E>(
    layout: &Layout,
    name: &str,
    to: Option<&str>,
    platforms: &[PlatformSpec],
    editor: E,
) -> Result<Report>
where
    E: ImageEditor,
{
    if let Some(to) = to {
        refs::check_ref_name(to)?;
    }
    let lock = layout.lock()?;
    let index = layout.read_index()?;
    let pos = refs::resolve_entry(&index.value, name, layout.root())?;
    let root = index.value.manifests[pos].clone();
    // Anything unreadable fails here, before a blob is written.
    plan(layout, std::slice::from_ref(&root))?;
    let mut rw = Rewriter::new(&lock, EditImages::new(editor, platforms));
    let visited = rw.visit(&root)?;
    if rw.transform().images.is_empty() {
        return Err(Error::NoImage {
            name: name.to_string(),
            platforms: platforms
                .iter()
                .map(|p| match &p.variant {
                    Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                    None => format!("{}/{}", p.os, p.architecture),
                })
                .collect(),
        });
    }
    let (new, update) = match to {
        None => {
            let changes = rw.rewrite_index_json(|i, _| i == pos)?;
            let new = changes.into_iter().next().and_then(|c| c.new);
            let update = new.as_ref().map(|n| RefUpdate {
                name: root.ref_name().map(str::to_string),
                digest: n.digest.clone(),
                change: ocikit_layout::engine::RefChange::Moved(vec![root.digest.clone()]),
            });
            (new, update)
        }
        Some(to) => {
            let mut entry = visited
                .clone()
                .new_descriptor()
                .unwrap_or_else(|| root.clone());
            entry.set_ref_name(Some(to));
            let mut idx = layout.read_index()?.value;
            let update = merge_entry(&mut idx, &entry)?;
            lock.commit_index(&idx)?;
            entry.set_ref_name(None);
            (visited.new_descriptor(), Some(update))
        }
    };
    let images = rw.into_transform().images;
    Ok(Report {
        images,
        old: root,
        new,
        update,
    })
}
