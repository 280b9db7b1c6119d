//! global_guard as an Envoy extension configuration: the `Wasm` filter message with a plugin
//! configuration, and the discovery file an Envoy with a `config_discovery` path source
//! watches (what istiod sends a sidecar for a WasmPlugin, for Envoys without istiod).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// The type of global_guard's configuration in `type_urls` and `typed_config`.
pub const WASM_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
/// The type of one resource of an ECDS discovery response.
pub const EXTENSION_CONFIG_TYPE_URL: &str =
    "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";

/// How Envoy runs the module.
#[derive(Debug, Clone)]
pub struct WasmSettings {
    /// The module on the Envoy's file system.
    pub module: PathBuf,
    /// Plugin name and root id.
    pub name: String,
    /// VMs with the same id and code are shared between plugin configurations.
    pub vm_id: String,
}

impl WasmSettings {
    pub fn new(module: impl Into<PathBuf>) -> Self {
        WasmSettings {
            module: module.into(),
            name: "global_guard".to_string(),
            vm_id: "global_guard".to_string(),
        }
    }
}

/// The `envoy.extensions.filters.http.wasm.v3.Wasm` message, with `@type`, running the module
/// with `configuration` (the plugin configuration's JSON text); it fails closed.
pub fn wasm_filter(settings: &WasmSettings, configuration: &str) -> Value {
    json!({
        "@type": WASM_TYPE_URL,
        "config": {
            "name": settings.name,
            "root_id": settings.name,
            "vm_config": {
                "vm_id": settings.vm_id,
                "runtime": "envoy.wasm.runtime.v8",
                "code": {"local": {"filename": settings.module}}
            },
            "configuration": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": configuration
            },
            "failure_policy": "FAIL_CLOSED"
        }
    })
}

/// A discovery response with one extension configuration named `resource_name`.
pub fn discovery_response(
    resource_name: &str,
    version: &str,
    settings: &WasmSettings,
    configuration: &str,
) -> Value {
    json!({
        "version_info": version,
        "resources": [{
            "@type": EXTENSION_CONFIG_TYPE_URL,
            "name": resource_name,
            "typed_config": wasm_filter(settings, configuration)
        }]
    })
}

/// Writes `value` to `path` so that a watcher never reads half a file: into a temporary file
/// beside it, synced, then renamed over it (Envoy's path config source reloads on the move).
pub fn write_atomically(path: &Path, value: &Value) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    serde_json::to_writer(&mut file, value)?;
    file.write_all(b"\n")?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    if let Ok(dir) = fs::File::open(dir) {
        // The rename itself survives a crash only once the directory is synced.
        let _ = dir.sync_all();
    }
    Ok(())
}
