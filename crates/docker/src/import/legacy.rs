//! The oldest docker-save archives (`repositories` and `<id>/json` only, before Docker 1.10),
//! rebuilt as moby's legacy loader rebuilds them: the parent chain gives the layers, the top
//! `<id>/json` minus the v1 fields becomes the config, with `rootfs` and `history` added. A
//! zero-byte `layer.tar` is an empty layer (a history entry with `empty_layer`), not a layer.

use std::collections::BTreeMap;

use ocikit_layout::{refs, Descriptor, JSON_LIMIT};
use serde_json::{Map, Value};

use super::image::{build_error, layer_input, LayerPlan};
use super::{push_named, Ctx, Entry};
use crate::archive::Archive;
use crate::{Error, Result};

/// How deep a v1 parent chain may go.
const CHAIN_LIMIT: usize = 1000;

/// Parse a legacy `repositories` file (`{"repo": {"tag": "<v1 id>"}}`) into the names of each
/// v1 image id (`repo:tag`, not yet checked as ref names). The error says why not.
pub fn parse_repositories(
    bytes: &[u8],
) -> std::result::Result<BTreeMap<String, Vec<String>>, String> {
    let repos: BTreeMap<String, BTreeMap<String, String>> =
        serde_json::from_slice(bytes).map_err(|e| format!("not a repositories file: {e}"))?;
    let mut by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (repo, tags) in &repos {
        for (tag, id) in tags {
            by_id
                .entry(id.clone())
                .or_default()
                .push(format!("{repo}:{tag}"));
        }
    }
    if by_id.is_empty() {
        return Err("names no images".into());
    }
    Ok(by_id)
}

pub(super) fn legacy(ctx: &mut Ctx<'_>, ar: &Archive, entries: &mut Vec<Entry>) -> Result<()> {
    let bytes = ar.read_small("repositories", JSON_LIMIT)?;
    let by_id =
        parse_repositories(&bytes).map_err(|r| Error::member(ar.path(), "repositories", r))?;
    for (id, names) in by_id {
        let d = legacy_image(ctx, ar, &id)?;
        for n in &names {
            refs::check_ref_name(n).map_err(|_| {
                Error::member(
                    ar.path(),
                    "repositories",
                    format!("`{n}` is not a valid ref name"),
                )
            })?;
        }
        push_named(entries, d, &names);
    }
    Ok(())
}

fn v1_id_ok(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn legacy_image(ctx: &mut Ctx<'_>, ar: &Archive, top: &str) -> Result<Descriptor> {
    // The chain, top first.
    let mut chain: Vec<(String, Map<String, Value>)> = Vec::new();
    let mut cur = Some(top.to_string());
    while let Some(id) = cur {
        let member = format!("{id}/json");
        if !v1_id_ok(&id) || chain.iter().any(|(c, _)| c == &id) || chain.len() >= CHAIN_LIMIT {
            return Err(Error::member(
                ar.path(),
                &member,
                "not a valid v1 image id, or its parent chain loops",
            ));
        }
        let bytes = ar.read_small(&member, JSON_LIMIT)?;
        let v: Map<String, Value> = serde_json::from_slice(&bytes).map_err(|e| {
            Error::member(
                ar.path(),
                &member,
                format!("not a v1 image JSON object: {e}"),
            )
        })?;
        cur = v
            .get("parent")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .map(String::from);
        chain.push((id, v));
    }
    chain.reverse();
    let mut plans = Vec::new();
    let mut history = Vec::new();
    for (id, v) in &chain {
        let member = format!("{id}/layer.tar");
        let empty = ar.size(&member)? == 0;
        if !empty {
            plans.push(LayerPlan {
                member,
                source: None,
            });
        }
        history.push(v1_history(v, empty));
    }
    let config_member = format!("{top}/json");
    // The layers first: the config is made from their diff_ids.
    let inputs: Vec<_> = plans
        .iter()
        .map(|lp| layer_input(ctx.opts.progress, ar, lp))
        .collect();
    let layers = ctx
        .builder
        .write_layers(&inputs, None)
        .map_err(|e| build_error(ar, &config_member, e))?;
    let diff_ids = layers
        .iter()
        .map(|l| Value::String(l.info.diff_id.to_string()))
        .collect();
    let mut config: BTreeMap<String, Value> = chain
        .last()
        .map(|(_, v)| v.clone().into_iter().collect())
        .unwrap_or_default();
    for k in ["id", "parent", "Size", "parent_id", "layer_id", "throwaway"] {
        config.remove(k);
    }
    let mut rootfs = Map::new();
    rootfs.insert("type".into(), Value::String("layers".into()));
    rootfs.insert("diff_ids".into(), Value::Array(diff_ids));
    config.insert("rootfs".into(), Value::Object(rootfs));
    config.insert("history".into(), Value::Array(history));
    let bytes = go_json(&config)?;
    let built = ctx
        .builder
        .finish(&bytes, layers, None)
        .map_err(|e| build_error(ar, &config_member, e))?;
    Ok(built.manifest)
}

/// A history entry from a v1 image JSON, as moby's `HistoryFromConfig` makes it.
fn v1_history(v: &Map<String, Value>, empty: bool) -> Value {
    let mut h = Map::new();
    for k in ["created", "author"] {
        if let Some(s) = v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()) {
            h.insert(k.into(), Value::String(s.into()));
        }
    }
    let cmd: Vec<&str> = v
        .get("container_config")
        .and_then(|c| c.get("Cmd"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !cmd.is_empty() {
        h.insert("created_by".into(), Value::String(cmd.join(" ")));
    }
    if let Some(s) = v
        .get("comment")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        h.insert("comment".into(), Value::String(s.into()));
    }
    if empty {
        h.insert("empty_layer".into(), Value::Bool(true));
    }
    Value::Object(h)
}

/// Compact JSON with Go's escaping of `<`, `>`, `&`, U+2028 and U+2029 (those characters only
/// occur inside strings, so replacing them in the output is exact).
fn go_json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    let s = serde_json::to_string(v).map_err(|e| ocikit_layout::Error::Json {
        what: "config".into(),
        source: e,
    })?;
    let s = s
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029");
    Ok(s.into_bytes())
}
