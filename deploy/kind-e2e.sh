#!/usr/bin/env bash
# End-to-end on a throwaway kind cluster (`cargo xtask e2e-kind`). Needs a Docker engine,
# `kind` and `kubectl`; it cannot run on machines without Docker (such as the project's
# build sandbox), where the same tests run against a mocked API server instead
# (crates/paygress-k8s/tests/mock_api.rs).
#
# 1. creates the cluster (KIND_CLUSTER, default paygress-e2e),
# 2. builds the image and loads it into the nodes,
# 3. applies deploy/k8s and a ConfigMap from deploy/paygress.env.example,
# 4. runs the ignored real-cluster tests of paygress-k8s against user-workloads
#    (contract::run_all, garbage collection through ownerReferences, Job deadline raise),
# 5. checks the service account's rights are exactly the namespaced ones,
# 6. deletes the cluster (KEEP_CLUSTER=1 keeps it).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
cluster="${KIND_CLUSTER:-paygress-e2e}"
image="${PAYGRESS_IMAGE:-paygress:latest}"

for tool in docker kind kubectl cargo; do
  command -v "$tool" >/dev/null || { echo "kind-e2e.sh: $tool not found" >&2; exit 1; }
done
docker info >/dev/null 2>&1 || { echo "kind-e2e.sh: no Docker engine reachable" >&2; exit 1; }

cleanup() {
  if [[ "${KEEP_CLUSTER:-0}" != "1" ]]; then kind delete cluster --name "$cluster" || true; fi
}
trap cleanup EXIT

kind get clusters | grep -qx "$cluster" || kind create cluster --name "$cluster" --wait 120s
kubectl config use-context "kind-$cluster"

docker build -f "$here/Dockerfile" -t "$image" "$root"
kind load docker-image "$image" --name "$cluster"

kubectl apply -f "$here/k8s/"
kubectl create configmap paygress-sidecar-config \
  --from-env-file="$here/paygress.env.example" \
  --namespace=ingress-system --dry-run=client -o yaml | kubectl apply -f -
kubectl rollout restart deployment/paygress-sidecar -n ingress-system

# RBAC: the sidecar may manage leases in user-workloads and nothing elsewhere.
sa="system:serviceaccount:ingress-system:paygress-sidecar"
for verb in create get list watch patch delete; do
  for res in jobs.batch pods services secrets; do
    [[ "$(kubectl auth can-i "$verb" "$res" -n user-workloads --as "$sa")" == yes ]] \
      || { echo "missing right: $verb $res" >&2; exit 1; }
  done
done
for ns in default kube-system ingress-system; do
  [[ "$(kubectl auth can-i get secrets -n "$ns" --as "$sa" || true)" == no ]] \
    || { echo "too broad: secrets in $ns" >&2; exit 1; }
done

# The real-cluster tests use the current context (kind) as cluster admin.
(cd "$root" && POD_NAMESPACE=user-workloads \
  cargo test -p paygress-k8s --test cluster -- --ignored --test-threads=1)

# The sidecar itself comes up (needs RUN_MODE=http|both for /healthz; the example's
# public relays and mints must be reachable from the cluster for a fully ready pod).
kubectl wait --for=condition=available --timeout=300s \
  deployment/paygress-sidecar -n ingress-system \
  || { kubectl logs -n ingress-system -l app=paygress-sidecar --tail=50; exit 1; }
echo "kind-e2e.sh: passed"
