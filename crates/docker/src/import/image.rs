//! Images built from the members of a source (docker-save archives, Docker 25+ entries, skopeo
//! `dir:` copies, legacy archives) through the engine's [`ImageBuilder`]: each layer member is a
//! [`LayerSource`] (read again if needed, through the import's progress counter, keyed by the
//! member it resolves to so that a layer shared by images is read once per source), and the
//! builder's errors become errors naming the source and the member at fault.
//!
//! [`ImageBuilder`]: ocikit_layout::engine::ImageBuilder

use std::io::Read;

use ocikit_layout::engine::{
    BuildError, ImageInput, LayerInput, LayerSource, Problem, SourceError,
};
use ocikit_layout::{Descriptor, Digest, ImageConfig, JSON_LIMIT};

use super::Ctx;
use crate::source::{Members, Progress};
use crate::{Error, Result};

/// One layer of an image to build.
pub(super) struct LayerPlan {
    /// The member holding it.
    pub(super) member: String,
    /// The descriptor the source gives it (OCI-shaped sources, LayerSources): its digest and
    /// size are verified while reading; its media type family, urls and annotations are kept.
    pub(super) source: Option<Descriptor>,
}

/// An image to build from members.
pub(super) struct ImagePlan {
    pub(super) config: String,
    pub(super) config_digest: Option<Digest>,
    pub(super) layers: Vec<LayerPlan>,
    pub(super) annotations: Option<ocikit_layout::Annotations>,
}

/// A layer member, as the builder reads it.
struct MemberLayer<'m> {
    m: &'m dyn Members,
    member: String,
    progress: Option<&'m (dyn Fn(u64) + Sync)>,
}

impl LayerSource for MemberLayer<'_> {
    fn size(&self) -> std::result::Result<u64, SourceError> {
        Ok(self.m.size(&self.member)?)
    }
    fn open(&self) -> std::result::Result<Box<dyn Read + '_>, SourceError> {
        Ok(Box::new(Progress {
            inner: self.m.open(&self.member)?,
            report: self.progress,
        }))
    }
    fn key(&self) -> std::result::Result<Option<String>, SourceError> {
        // The member it resolves to (archives follow links), in this source. `Debug` keeps
        // paths that are not UTF-8 apart.
        let member = self.m.canonical(&self.member)?;
        Ok(Some(format!("{:?}\0{member}", self.m.path())))
    }
}

/// The builder's input for one layer member: absent when it is a non-distributable layer with
/// `urls` that the source does not ship.
pub(super) fn layer_input<'m>(
    progress: Option<&'m (dyn Fn(u64) + Sync)>,
    m: &'m dyn Members,
    lp: &LayerPlan,
) -> LayerInput<'m> {
    if let Some(s) = &lp.source {
        if s.media_type.is_non_distributable() && s.urls.is_some() && !m.has(&lp.member) {
            return LayerInput::absent(lp.member.clone(), s.clone());
        }
    }
    let input = LayerInput::new(
        lp.member.clone(),
        MemberLayer {
            m,
            member: lp.member.clone(),
            progress,
        },
    )
    .at(m.path().join(&lp.member));
    match &lp.source {
        Some(s) => input.declared(s.clone()),
        None => input,
    }
}

/// Build an image: store the config as it is, stream every layer, write a new OCI manifest.
pub(super) fn write_image(
    ctx: &mut Ctx<'_>,
    m: &dyn Members,
    plan: &ImagePlan,
) -> Result<Descriptor> {
    let cfg_bytes = m.read_small(&plan.config, JSON_LIMIT)?;
    let progress = ctx.opts.progress;
    let layers: Vec<LayerInput<'_>> = plan
        .layers
        .iter()
        .map(|lp| layer_input(progress, m, lp))
        .collect();
    let built = ctx
        .builder
        .build(&ImageInput {
            config: &cfg_bytes,
            config_digest: plan.config_digest.as_ref(),
            layers: &layers,
            annotations: plan.annotations.clone(),
        })
        .map_err(|e| build_error(m, &plan.config, e))?;
    Ok(built.manifest)
}

/// A builder error as an error naming the source and the member: `config` for the config's.
pub(super) fn build_error(m: &dyn Members, config: &str, e: BuildError) -> Error {
    match e {
        BuildError::Layout(e) => e.into(),
        BuildError::Config(p) => Error::member(m.path(), config, p.to_string()),
        BuildError::Layer { name, problem, .. } => match problem {
            // The source's own errors (a missing member, a bad link) already name it.
            Problem::Source(s) => match s.downcast::<Error>() {
                Ok(e) => *e,
                Err(s) => Error::member(m.path(), &name, s.to_string()),
            },
            p => Error::member(m.path(), &name, p.to_string()),
        },
    }
}

/// Check a config as the builder will (see [`ocikit_layout::engine::parse_config`]), with an
/// error naming the member.
pub(super) fn parse_config(m: &dyn Members, name: &str, bytes: &[u8]) -> Result<ImageConfig> {
    ocikit_layout::engine::parse_config(bytes)
        .map_err(|p| Error::member(m.path(), name, p.to_string()))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// From the `docker_archive` fuzz target: a docker-save config whose `history[].created_by`
    /// holds two bytes that are not UTF-8 was imported, and fsck then found the stored config
    /// invalid JSON.
    #[test]
    fn configs_with_invalid_utf8_in_unread_fields_are_refused() {
        let config = b"{\"architecture\":\"amd64\",\"os\":\"linux\",\"history\":[{\"created_by\":\"/bin/sh -c #(nop) COPY dir:9cb95877972eaa3c10d46a212a600705109eb41f2\xa4\xcae8aae88018c9d1c7355c1 in a      \"}],\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}";
        let src = crate::source::DirMembers::new(Path::new("src"));
        let e = parse_config(&src, "c.json", config)
            .expect_err("refused")
            .to_string();
        assert_eq!(
            e,
            "`src`: member `c.json`: the image config is not valid JSON: invalid unicode code point at line 1 column 132"
        );
        let good = String::from_utf8_lossy(config).into_owned();
        let cfg = parse_config(&src, "c.json", good.as_bytes()).expect("valid once repaired");
        assert_eq!(cfg.architecture, "amd64");
    }

    /// From the `docker_archive` fuzz target: a legacy (`repositories`) archive whose v1 image
    /// JSON says `"created":"2015-03-04T21:73:56.769279623Z"` (minute 73) was imported, and
    /// fsck --deep then found the config invalid. moby's loader refuses it too.
    #[test]
    fn configs_failing_the_schema_checks_are_refused() {
        let src = crate::source::DirMembers::new(Path::new("src"));
        let config = br#"{"architecture":"amd64","created":"2015-03-04T21:73:56.769279623Z","history":[{"created":"2015-03-04T21:73:56.769279623Z"}],"os":"linux","rootfs":{"diff_ids":[],"type":"layers"}}"#;
        let e = parse_config(&src, "0123/json", config)
            .expect_err("refused")
            .to_string();
        assert_eq!(
            e,
            "`src`: member `0123/json`: the image config is invalid: created: not an rfc 3339 date-time; history[0].created: not an rfc 3339 date-time"
        );
        let fixed = String::from_utf8_lossy(config).replace(":73:", ":38:");
        parse_config(&src, "0123/json", fixed.as_bytes()).expect("valid");
    }
}
