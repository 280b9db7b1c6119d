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
/// The file is mode 0644: the temporary file is created 0600, and the Envoy that reads it may
/// run as another user (uid 1337 in an Istio sidecar).
pub fn write_atomically(path: &Path, value: &Value) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    set_readable(file.as_file())?;
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

#[cfg(unix)]
fn set_readable(file: &fs::File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o644))
}

#[cfg(not(unix))]
fn set_readable(_file: &fs::File) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn written_file_is_readable_by_other_users() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("global_guard.json");
        write_atomically(&path, &json!({"version_info": "1"})).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        // A rewrite replaces the file and keeps the mode.
        write_atomically(&path, &json!({"version_info": "2"})).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"version_info\":\"2\"}\n");
    }
}
