//! The check that the server's modules import one another one way only.
//!
//! Each module may name (`crate::module`) only modules of the layers below its own, so that
//! the modules can be read, tested and changed from the bottom up. [`LAYERS`] is the order,
//! as ARCHITECTURE.md states it.

use std::path::Path;

/// The modules of `chat-server`, the lowest layer first.
const LAYERS: &[&[&str]] = &[
    &["keys"],
    &[
        "config",
        "forwarding",
        "password",
        "limits",
        "outbound",
        "paging",
        "telemetry",
        "tickets",
    ],
    &["connection"],
    &["store"],
    &["cache"],
    &["farm", "members", "revocation"],
    &["hub", "presence"],
    &["links"],
    &["delivery"],
    &["commands"],
    &["session"],
    &["console"],
    &["admin", "monitor"],
    &["server"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The modules that `source` names as `crate::module` or in `crate::{a, b}`.
fn named_modules(source: &str) -> Vec<String> {
    let leading_name = |text: &str| -> String {
        text.trim_start()
            .chars()
            .take_while(|ch| ch.is_alphanumeric() || *ch == '_')
            .collect()
    };
    let mut named = Vec::new();
    for rest in source.split("crate::").skip(1) {
        match rest.strip_prefix('{') {
            Some(group) => {
                let group = group.split('}').next().unwrap_or_default();
                named.extend(group.split(',').map(leading_name));
            }
            None => named.push(leading_name(rest)),
        }
    }
    named
}

/// Every `.rs` file below `dir`, with the module of the crate it belongs to.
fn sources(dir: &Path, module: Option<&str>, found: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
    entries.sort_by_key(|entry| entry.path());
    for entry in entries {
        let path = entry.path();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let owner = module.unwrap_or(&stem).to_owned();
        if path.is_dir() {
            sources(&path, Some(&owner), found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push((owner, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

#[test]
fn modules_import_only_from_the_layers_below() {
    let mut found = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        None,
        &mut found,
    );
    let mut upward = Vec::new();
    for (module, source) in found {
        if ["lib", "main", "layers"].contains(&module.as_str()) {
            continue;
        }
        let Some(layer) = layer_of(&module) else {
            upward.push(format!("{module} is in no layer"));
            continue;
        };
        for named in named_modules(&source) {
            if named != module && layer_of(&named).is_none_or(|below| below >= layer) {
                upward.push(format!("{module} names crate::{named}"));
            }
        }
    }
    upward.dedup();
    assert!(upward.is_empty(), "imports against the layers: {upward:?}");
}
