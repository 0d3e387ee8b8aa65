//! `pull` and `push`: the engine's selection and transfer with a registry on one side.

use std::path::Path;

use ocikit_layout::engine::{transfer, ImageSink, Overlay, RefUpdate, TransferReport};
use ocikit_layout::mirror::copy_from;
use ocikit_layout::select::{select, SelectOptions};
use ocikit_layout::{Layout, Options, PlatformSpec};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::reference::ImageRef;
use crate::sink::{RegistrySink, SentCounts};
use crate::source::RegistrySource;

/// What to pull.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// The ref to record in the layout (default: `registry/repository:tag`; none when the
    /// image was named by digest only).
    pub ref_name: Option<String>,
    /// Keep only these platforms from an index.
    pub platforms: Vec<PlatformSpec>,
    /// Also pull manifests whose subject is pulled (signatures, SBOMs), recursively.
    pub referrers: bool,
    /// How a new layout is made, and durability.
    pub layout: Options,
}

/// What [`pull`] did.
#[derive(Debug, Clone)]
pub struct PullReport {
    /// The entries merged into the layout's `index.json`.
    pub entries: Vec<RefUpdate>,
    /// How the blobs got there (`present`: already in the layout, not fetched).
    pub blobs: TransferReport,
    /// Blob bytes received.
    pub bytes: u64,
    /// HTTP requests sent.
    pub requests: u64,
}

/// Pull `image` into the layout at `dir` (created if missing). Every blob is verified before
/// it is renamed into `blobs/`; refs are committed once, at the end. A failed pull leaves the
/// layout's refs as they were, and the blobs it fetched in place for the next try (gc removes
/// them if no try follows).
pub fn pull(
    client: &Client,
    image: &ImageRef,
    dir: &Path,
    opts: &PullOptions,
) -> Result<PullReport> {
    let ref_name = opts.ref_name.clone().or_else(|| image.tagged_name());
    let src = RegistrySource::resolve(client, image, ref_name)?;
    let (layout, _) = Layout::init(dir, opts.layout.clone())?;
    let report = copy_from(
        &src,
        &layout,
        &SelectOptions {
            refs: Vec::new(),
            platforms: opts.platforms.clone(),
            referrers: opts.referrers,
        },
    )
    .map_err(from_layout)?;
    Ok(PullReport {
        entries: report.entries,
        blobs: report.blobs,
        bytes: client.bytes(),
        requests: client.requests(),
    })
}

/// What to push.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Keep only these platforms from an index (the pushed index is the filtered one).
    pub platforms: Vec<PlatformSpec>,
    /// Also push manifests whose subject is pushed, recursively.
    pub referrers: bool,
}

/// What [`push`] did.
#[derive(Debug, Clone)]
pub struct PushReport {
    /// The tag (or untagged entries) on the registry.
    pub entries: Vec<RefUpdate>,
    /// Blob by blob (`present`: the registry had it, nothing sent).
    pub blobs: TransferReport,
    /// What was sent.
    pub sent: SentCounts,
    /// HTTP requests sent.
    pub requests: u64,
}

/// Push what `target` (a ref or digest of `layout`) names to `image`: blobs the repository
/// lacks (mounted from another repository of the same registry when the layout's ref names
/// one there), then manifests children first, with their exact bytes, then the tag.
pub fn push(
    layout: &Layout,
    target: &str,
    client: &Client,
    image: &ImageRef,
    opts: &PushOptions,
) -> Result<PushReport> {
    let sel = select(
        layout,
        &SelectOptions {
            refs: vec![target.to_string()],
            platforms: opts.platforms.clone(),
            referrers: opts.referrers,
        },
    )?;
    let mut entries = sel.entries.clone();
    let Some(main) = entries.first_mut() else {
        return Err(Error::Layout(ocikit_layout::Error::RefNotFound {
            name: target.to_string(),
            index: layout.root().join("index.json"),
        }));
    };
    let mount_from = main
        .ref_name()
        .and_then(|r| ImageRef::parse(r).ok())
        .filter(|r| r.registry == image.registry)
        .map(|r| r.repository);
    if let Some(d) = &image.digest {
        if d != &main.digest {
            return Err(Error::Verify {
                url: client.url(&format!("/v2/{}/manifests/{d}", image.repository)),
                digest: d.to_string(),
                reason: format!("`{target}` is `{}` in the layout", main.digest),
            });
        }
    }
    main.set_ref_name(image.tag.as_deref());
    for e in entries.iter_mut().skip(1) {
        e.set_ref_name(None);
    }
    let sink = RegistrySink::new(client, &image.repository, mount_from);
    let src = Overlay::new(layout, &sel.documents);
    let blobs = transfer(&src, &sel.plan, |_| true, &sink).map_err(from_layout)?;
    let entries = sink.commit(&entries).map_err(from_layout)?;
    Ok(PushReport {
        entries,
        blobs,
        sent: sink.counts(),
        requests: client.requests(),
    })
}

/// A registry error that crossed the engine comes back as itself.
pub fn from_layout(e: ocikit_layout::Error) -> Error {
    match e {
        ocikit_layout::Error::External { source, .. } => match source.downcast::<Error>() {
            Ok(e) => *e,
            Err(other) => Error::Layout(ocikit_layout::Error::External {
                source: other,
                transient: false,
            }),
        },
        e => Error::Layout(e),
    }
}
