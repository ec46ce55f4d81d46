#!/usr/bin/env bash
# Validates every manifest in deploy/ without a cluster (CI calls this via `cargo xtask ci`).
#
# `kubectl apply --dry-run=client` still asks a server for discovery (which kinds exist)
# and for the live object, so this starts tools/stub-apiserver.py on 127.0.0.1: it
# answers discovery and 404s every object. kubectl then parses, maps and dry-runs each
# file exactly as `kubectl apply -f` would. Its schema validation needs the server's
# OpenAPI, which the stub lacks (hence --validate=false); instead the printed objects are
# decoded into the k8s-openapi types and checked against the RBAC and Deployment policy
# by crates/paygress-k8s/examples/check_manifests.rs.
#
# Set VALIDATE_SERVER=1 to additionally run `--dry-run=server` against the current
# kubeconfig context (a real cluster, with full schema validation and admission).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
command -v kubectl >/dev/null || { echo "validate.sh: kubectl not found" >&2; exit 1; }
command -v python3 >/dev/null || { echo "validate.sh: python3 not found" >&2; exit 1; }

work="$(mktemp -d)"
stub_pid=""
cleanup() {
  if [[ -n "$stub_pid" ]]; then kill "$stub_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

python3 "$here/tools/stub-apiserver.py" >"$work/port" &
stub_pid=$!
for _ in $(seq 50); do [[ -s "$work/port" ]] && break; sleep 0.1; done
port="$(cat "$work/port")"
[[ -n "$port" ]] || { echo "validate.sh: stub API server did not start" >&2; exit 1; }

k() {
  KUBECONFIG=/dev/null kubectl --server="http://127.0.0.1:$port" \
    --cache-dir="$work/cache" "$@"
}

manifests=("$here"/k8s/*.yaml "$here/configmap.example.yaml")
jsons=()
for f in "${manifests[@]}"; do
  out="$work/$(basename "$f").json"
  k apply --dry-run=client --validate=false -o json -f "$f" >"$out"
  k apply --dry-run=client --validate=false -f "$f"
  jsons+=("$out")
done
# The whole directory, as the docs apply it.
k apply --dry-run=client --validate=false -f "$here/k8s/" >/dev/null

# The seed's ConfigMap flow, from the example env file.
k create configmap paygress-sidecar-config --from-env-file="$here/paygress.env.example" \
  --namespace=ingress-system --dry-run=client -o json >"$work/cm-from-env.json"
k apply --dry-run=client --validate=false -f "$work/cm-from-env.json" >/dev/null

check() { (cd "$root" && cargo run --quiet -p paygress-k8s --example check_manifests -- "$@"); }
check "${jsons[@]}" --configmap-from-env "$work/cm-from-env.json"

# The policy must reject a private key in a ConfigMap: in the env file's flow and in a
# manifest. (A made-up key, NIP-19's example.)
nsec=nsec1fakefakefakefakefakefakefakefakefakefakefakefakefakefake00
{ cat "$here/paygress.env.example"; echo "NOSTR_PRIVATE_KEY=$nsec"; } >"$work/bad.env"
k create configmap paygress-sidecar-config --from-env-file="$work/bad.env" \
  --namespace=ingress-system --dry-run=client -o json >"$work/cm-bad-env.json"
python3 - "$work/configmap.example.yaml.json" "$work/cm-bad-manifest.json" "$nsec" <<'PY'
import json, sys
cm = json.load(open(sys.argv[1]))
cm["data"]["NOSTR_PRIVATE_KEY"] = sys.argv[3]
json.dump(cm, open(sys.argv[2], "w"))
PY
others=()
for j in "${jsons[@]}"; do [[ "$j" == */configmap.example.yaml.json ]] || others+=("$j"); done
for bad in "env:${jsons[*]} --configmap-from-env $work/cm-bad-env.json" \
           "manifest:${others[*]} $work/cm-bad-manifest.json"; do
  # shellcheck disable=SC2086 # the paths come from mktemp and basename: no spaces.
  if check ${bad#*:} 2>"$work/bad.err"; then
    echo "validate.sh: check_manifests accepted a private key in a ConfigMap (${bad%%:*})" >&2
    exit 1
  fi
  grep -q "NOSTR_PRIVATE_KEY is a private key and must not be in a ConfigMap" "$work/bad.err" || {
    cat "$work/bad.err" >&2
    echo "validate.sh: check_manifests failed, but not on the key (${bad%%:*})" >&2
    exit 1
  }
done

bash -n "$here/kind-e2e.sh"

if [[ "${VALIDATE_SERVER:-0}" == "1" ]]; then
  for f in "${manifests[@]}"; do kubectl apply --dry-run=server -f "$f"; done
fi
echo "validate.sh: all manifests valid"
