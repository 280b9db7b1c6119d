#!/usr/bin/env python3
"""Writes the Envoy configurations of benches/filter/run.sh as JSON.

usage: envoy_config.py KIND LISTEN_PORT ADMIN_PORT ENTRIES MODULE [CONFIGURATION_FILE] > envoy.json
KIND is guard (global_guard), noop (the least proxy-wasm filter), lua (an Envoy Lua filter doing
the same host/port/cluster check) or none. global_guard gets ENTRIES ServiceEntries
(`service_entries`), or the plugin configuration in CONFIGURATION_FILE when given (the table form
that `cargo run -p wasm-filter --example table_config -- ENTRIES` prints, for the same hosts). Every Envoy answers with a local direct_response, so
only the filter and Envoy itself are measured.
"""
import json
import sys


def service_entries(count):
    """`count` .global ServiceEntries like the seed's: one port, one endpoint with a cluster label."""
    return [
        {
            "apiVersion": "networking.istio.io/v1alpha3",
            "kind": "ServiceEntry",
            "metadata": {"name": f"svc-{i}", "namespace": f"ns-{i % 50}"},
            "spec": {
                "hosts": [f"svc-{i}.ns-{i % 50}.global"],
                "location": "MESH_INTERNAL",
                "ports": [{"name": "http1", "number": 8000, "protocol": "http"}],
                "resolution": "DNS",
                "addresses": [f"240.0.{i // 250}.{i % 250 + 1}"],
                "endpoints": [
                    {
                        "address": f"198.18.{i % 200}.1",
                        "labels": {"cluster": f"cluster-{i % 3}"},
                        "ports": {"http1": 15443},
                    }
                ],
            },
        }
        for i in range(count)
    ]


LUA = r"""
local suffix = ".global"
function envoy_on_request(handle)
  local headers = handle:headers()
  local authority = string.lower(headers:get(":authority") or "")
  local host, port = string.match(authority, "^(.-)%.?:(%d+)$")
  if host == nil then
    host = string.gsub(authority, "%.$", "")
  end
  if string.sub(host, -#suffix) ~= suffix then
    return
  end
  local entry = hosts[host]
  if entry == nil then
    handle:respond({[":status"] = "404", ["x-global-guard"] = "unknown-host"}, "unknown-host: " .. host .. "\n")
    return
  end
  if port == nil or not entry.ports[tonumber(port)] then
    handle:respond({[":status"] = "404", ["x-global-guard"] = "unknown-port"}, "unknown-port: " .. host .. "\n")
    return
  end
  local cluster = headers:get("x-global-cluster")
  if cluster == nil then
    headers:replace("x-global-cluster", entry.cluster)
  elseif cluster ~= entry.cluster then
    handle:respond({[":status"] = "404", ["x-global-guard"] = "unknown-cluster"}, "unknown-cluster: " .. host .. "\n")
  end
end
"""


def lua_source(entries):
    rows = []
    for se in entries:
        ports = ", ".join(f"[{p['number']}] = true" for p in se["spec"]["ports"])
        cluster = se["spec"]["endpoints"][0]["labels"]["cluster"]
        rows.append(f'  ["{se["spec"]["hosts"][0]}"] = {{ports = {{{ports}}}, cluster = "{cluster}"}},')
    return "hosts = {\n" + "\n".join(rows) + "\n}\n" + LUA


def wasm_filter(module, configuration):
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "bench",
                "failure_policy": "FAIL_CLOSED",
                "vm_config": {"runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": module}}},
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": configuration,
                },
            },
        },
    }


def main():
    kind, port, admin, count, module = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    configuration_file = sys.argv[6] if len(sys.argv) > 6 else None
    entries = service_entries(count)
    filters = []
    if kind == "guard" and configuration_file:
        with open(configuration_file) as f:
            filters.append(wasm_filter(module, f.read()))
    elif kind == "guard":
        filters.append(wasm_filter(module, json.dumps({"service_entries": entries})))
    elif kind == "noop":
        filters.append(wasm_filter(module, ""))
    elif kind == "lua":
        filters.append(
            {
                "name": "envoy.filters.http.lua",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                    "default_source_code": {"inline_string": lua_source(entries)},
                },
            }
        )
    elif kind != "none":
        sys.exit(f"envoy_config.py: unknown kind {kind}")
    filters.append(
        {
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
        }
    )
    config = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "main",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                                        "stat_prefix": "bench",
                                        "codec_type": "AUTO",
                                        "route_config": {
                                            "virtual_hosts": [
                                                {
                                                    "name": "all",
                                                    "domains": ["*"],
                                                    "routes": [
                                                        {
                                                            "match": {"prefix": "/"},
                                                            "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}},
                                                        }
                                                    ],
                                                }
                                            ]
                                        },
                                        "http_filters": filters,
                                    },
                                }
                            ]
                        }
                    ],
                }
            ]
        },
    }
    json.dump(config, sys.stdout)


if __name__ == "__main__":
    main()
