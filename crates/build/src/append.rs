//! `append`: new layers on top of every image under a ref (or the platforms chosen).
//!
//! Each `--layer` is a directory, packed by [`crate::pack`] into an anonymous temp file once,
//! or a tar file (plain, gzip or zstd) taken as it is. The layers are stored through the
//! engine's [`ImageBuilder`] once per (manifest family, compression) pair: a packed directory in
//! the compression asked for, or else the one the image's top layer has; a tar file as it comes
//! unless a compression is asked for. Each image's config gets the diff_ids and one history
//! entry per layer (`created` from `SOURCE_DATE_EPOCH`, else none; `created_by` as given); each
//! manifest gets the layer descriptors in its own family's media types. The rewriter does the
//! rest (see [`crate::edit`]).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ocikit_layout::engine::{
    BuiltLayer, ImageBuilder, LayerInput, LayerSource, ManifestFormat, SourceError,
};
use ocikit_layout::layer::CompressOptions;
use ocikit_layout::{Compression, Descriptor, Layout, MediaType, PlatformSpec, WriteLock};
use serde_json::{Map, Value};

use crate::edit::{self, ImageEditor, Report};
use crate::pack::{pack, PackOptions, PackReport};
use crate::{Error, Result};

/// One layer to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewLayer {
    /// A directory, packed.
    Dir(PathBuf),
    /// A tar file (plain, gzip or zstd), taken as it is.
    Tar(PathBuf),
}

impl NewLayer {
    /// A directory is packed, anything else is taken as a tar.
    pub fn from_path(path: &Path) -> NewLayer {
        if path.is_dir() {
            NewLayer::Dir(path.to_path_buf())
        } else {
            NewLayer::Tar(path.to_path_buf())
        }
    }
}

/// What `append` does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppendOptions {
    /// The layers, in order.
    pub layers: Vec<NewLayer>,
    /// Paths inside the image to hide (whiteouts, in the first new layer when it is a
    /// directory, else in a layer of their own before the others).
    pub deletes: Vec<String>,
    /// How directories are packed (`source_date_epoch` also dates the history entries).
    pub pack: PackOptions,
    /// The compression of the new layers (default: a packed directory as the image's top
    /// layer, a tar file as it is).
    pub compress: Option<CompressOptions>,
    /// The history entries' `created_by`.
    pub created_by: String,
    /// Only the images of these platforms (default: all).
    pub platforms: Vec<PlatformSpec>,
    /// Name the result so, leaving the ref as it was (default: the ref moves).
    pub to: Option<String>,
}

/// A layer ready to store: packed (a spooled temp file) or a tar file.
pub(crate) struct Spooled {
    pub(crate) name: String,
    pub(crate) packed: bool,
    pub(crate) file: File,
}

impl LayerSource for Spooled {
    fn size(&self) -> std::result::Result<u64, SourceError> {
        Ok(self.file.metadata()?.len())
    }
    fn open(&self) -> std::result::Result<Box<dyn Read + '_>, SourceError> {
        Ok(Box::new(At {
            file: &self.file,
            pos: 0,
        }))
    }
}

/// A file read from a position (the spool is read once per family and compression).
struct At<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

struct Appender {
    spools: Vec<Spooled>,
    opts: AppendOptions,
    memo: HashMap<(usize, bool, Option<Compression>), BuiltLayer>,
}

impl Appender {
    fn layer(
        &mut self,
        lock: &WriteLock<'_>,
        i: usize,
        format: ManifestFormat,
        compression: Option<Compression>,
    ) -> Result<BuiltLayer> {
        if let Some(b) = self
            .memo
            .get(&(i, format == ManifestFormat::Docker, compression))
        {
            return Ok(b.clone());
        }
        let spool = &self.spools[i];
        let mut builder = ImageBuilder::new(lock).format(format).threads(1);
        builder = match compression {
            Some(c) => builder.compress(CompressOptions {
                compression: c,
                level: self.opts.compress.and_then(|o| o.level),
            }),
            None => builder.keep_compression(),
        };
        let input = [LayerInput::new(spool.name.clone(), spool).at(&spool.name)];
        let built = builder
            .write_layers(&input, None)?
            .pop()
            .ok_or_else(|| Error::Input {
                path: PathBuf::from(&spool.name),
                reason: "no layer was stored".into(),
            })?;
        self.memo.insert(
            (i, format == ManifestFormat::Docker, compression),
            built.clone(),
        );
        Ok(built)
    }
}

impl ImageEditor for Appender {
    fn edit(
        &mut self,
        lock: &WriteLock<'_>,
        manifest_desc: &Descriptor,
        docker: bool,
        manifest: &mut Map<String, Value>,
        config: &mut Map<String, Value>,
    ) -> Result<()> {
        let format = if docker {
            ManifestFormat::Docker
        } else {
            ManifestFormat::Oci
        };
        let top = manifest
            .get("layers")
            .and_then(Value::as_array)
            .and_then(|a| a.last())
            .and_then(|l| l.get("mediaType"))
            .and_then(Value::as_str)
            .and_then(|m| MediaType::parse(m).compression());
        let asked = self.opts.compress.map(|c| c.compression);
        if docker && asked == Some(Compression::Zstd) {
            return Err(Error::ZstdForDocker {
                digest: manifest_desc.digest.clone(),
            });
        }
        let mut built = Vec::new();
        for i in 0..self.spools.len() {
            let compression = if self.spools[i].packed {
                Some(asked.or(top).unwrap_or(Compression::Gzip))
            } else {
                asked
            };
            let compression = match compression {
                Some(Compression::Zstd) if docker => Some(Compression::Gzip),
                c => c,
            };
            built.push(self.layer(lock, i, format, compression)?);
        }
        let layers = manifest
            .entry("layers")
            .or_insert_with(|| Value::Array(Vec::new()));
        if !layers.is_array() {
            *layers = Value::Array(Vec::new());
        }
        if let Value::Array(a) = layers {
            for b in &built {
                a.push(serde_json::to_value(&b.descriptor).map_err(|source| {
                    ocikit_layout::Error::Json {
                        what: "a layer descriptor".into(),
                        source,
                    }
                })?);
            }
        }
        let rootfs = config
            .entry("rootfs")
            .or_insert_with(|| serde_json::json!({"type": "layers", "diff_ids": []}));
        if let Value::Object(r) = rootfs {
            let ids = r
                .entry("diff_ids")
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(a) = ids {
                for b in &built {
                    a.push(Value::String(b.info.diff_id.to_string()));
                }
            }
        }
        let history = config
            .entry("history")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(h) = history {
            for _ in &built {
                let mut entry = Map::new();
                if let Some(e) = self.opts.pack.source_date_epoch {
                    entry.insert("created".into(), Value::String(rfc3339(e)));
                }
                entry.insert(
                    "created_by".into(),
                    Value::String(self.opts.created_by.clone()),
                );
                h.push(Value::Object(entry));
            }
        }
        Ok(())
    }
}

/// What `append` did: the edit's report and what packing each directory found.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendReport {
    /// The images, the ref.
    pub edit: Report,
    /// One per packed layer, in order.
    pub packed: Vec<PackReport>,
}

/// Append `opts.layers` to the images `name` names in `layout`.
pub fn append(layout: &Layout, name: &str, opts: &AppendOptions) -> Result<AppendReport> {
    if opts.layers.is_empty() && opts.deletes.is_empty() {
        return Err(Error::BadValue {
            value: name.to_string(),
            reason: "no layer to append and no path to delete".into(),
        });
    }
    // Pack first, outside the lock: bad inputs fail before anything is written.
    let mut spools = Vec::new();
    let mut packed = Vec::new();
    let mut deletes_done = opts.deletes.is_empty();
    if !deletes_done && !matches!(opts.layers.first(), Some(NewLayer::Dir(_))) {
        let (s, r) = spool_pack(None, &opts.deletes, &opts.pack, "whiteouts")?;
        spools.push(s);
        packed.push(r);
        deletes_done = true;
    }
    for l in &opts.layers {
        match l {
            NewLayer::Dir(d) => {
                let deletes: &[String] = if deletes_done { &[] } else { &opts.deletes };
                deletes_done = true;
                let (s, r) = spool_pack(Some(d), deletes, &opts.pack, &d.display().to_string())?;
                spools.push(s);
                packed.push(r);
            }
            NewLayer::Tar(p) => {
                let file = File::open(p).map_err(|e| Error::io(p, e))?;
                let meta = file.metadata().map_err(|e| Error::io(p, e))?;
                if !meta.is_file() {
                    return Err(Error::Input {
                        path: p.clone(),
                        reason: "neither a directory nor a tar file".into(),
                    });
                }
                spools.push(Spooled {
                    name: p.display().to_string(),
                    packed: false,
                    file,
                });
            }
        }
    }
    let appender = Appender {
        spools,
        opts: opts.clone(),
        memo: HashMap::new(),
    };
    let edit = edit::run(layout, name, opts.to.as_deref(), &opts.platforms, appender)?;
    Ok(AppendReport { edit, packed })
}

fn spool_pack(
    dir: Option<&Path>,
    deletes: &[String],
    opts: &PackOptions,
    name: &str,
) -> Result<(Spooled, PackReport)> {
    let tmp = std::env::temp_dir();
    let mut file = tempfile::tempfile().map_err(|e| Error::io(&tmp, e))?;
    let report = {
        let mut w = BufWriter::with_capacity(1 << 20, &mut file);
        let r = pack(dir, deletes, opts, &mut w)?;
        w.flush().map_err(|e| Error::io(&tmp, e))?;
        r
    };
    file.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io(&tmp, e))?;
    Ok((
        Spooled {
            name: name.to_string(),
            packed: true,
            file,
        },
        report,
    ))
}

/// Seconds since the epoch as an RFC 3339 UTC time (`1970-01-01T00:00:00Z`).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn rfc3339_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
