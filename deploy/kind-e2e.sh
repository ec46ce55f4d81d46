#!/usr/bin/env bash
# End-to-end on a throwaway kind cluster (`cargo xtask e2e-kind`). Needs a Docker engine,
# `kind` and `kubectl`; it cannot run on machines without Docker (such as the project's
# build sandbox), where the same behaviour is tested against a fake API server that acts
# like a cluster (crates/paygress-k8s/tests/fake_cluster.rs). It has not been run in the
# project's sandbox (no container engine there).
#
# 1. creates the cluster (KIND_CLUSTER, default paygress-e2e),
# 2. builds the image and loads it into the nodes, pre-pulls the SSH image,
# 3. applies deploy/k8s and a ConfigMap from deploy/paygress.env.example,
# 4. checks the service account's rights are exactly the Role's (and nodes get/list),
# 5. runs the ignored real-cluster tests of paygress-k8s against user-workloads:
#    contract::run_all, garbage collection through ownerReferences, Job deadline raise,
#    and the real linuxserver/openssh-server image end to end: the reply comes when sshd
#    answers, `ssh` (through sshpass) logs in at the node's InternalIP and NodePort, a
#    top-up keeps the pod past its first deadline, it ends at the new one,
# 6. deletes the cluster (KEEP_CLUSTER=1 keeps it).
#
# On Linux the kind node's InternalIP (the Docker network) is reachable from the host;
# on Docker Desktop (macOS, Windows) it is not: run the tests from a container on the
# `kind` network, or set SSH_HOST=127.0.0.1 with extraPortMappings (docs/KUBERNETES.md).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
cluster="${KIND_CLUSTER:-paygress-e2e}"
image="${PAYGRESS_IMAGE:-paygress:latest}"

for tool in docker kind kubectl cargo ssh sshpass; do
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
# The lease image, pulled once so the first lease's readiness does not wait for it.
ssh_image="${SSH_BASE_IMAGE:-linuxserver/openssh-server:latest}"
docker pull "$ssh_image"
kind load docker-image "$ssh_image" --name "$cluster"

kubectl apply -f "$here/k8s/"
kubectl create configmap paygress-sidecar-config \
  --from-env-file="$here/paygress.env.example" \
  --namespace=ingress-system --dry-run=client -o yaml | kubectl apply -f -
kubectl rollout restart deployment/paygress-sidecar -n ingress-system

# RBAC: exactly the calls paygress-k8s makes (the fake API in the crate's tests enforces
# the same file), nothing elsewhere.
sa="system:serviceaccount:ingress-system:paygress-sidecar"
can() { [[ "$(kubectl auth can-i "$1" "$2" -n user-workloads --as "$sa" || true)" == "$3" ]] \
  || { echo "RBAC: can-i $1 $2 should be $3" >&2; exit 1; }; }
for v in create get list patch delete; do can "$v" jobs.batch yes; done
for v in list watch delete; do can "$v" pods yes; done
for v in create get list watch delete; do can "$v" services yes; done
for v in create list delete; do can "$v" secrets yes; done
can create pods no
can patch pods no
can get secrets no
can watch jobs.batch no
for v in get list; do
  [[ "$(kubectl auth can-i "$v" nodes --as "$sa")" == yes ]] || { echo "RBAC: $v nodes" >&2; exit 1; }
done
for ns in default kube-system ingress-system; do
  [[ "$(kubectl auth can-i list secrets -n "$ns" --as "$sa" || true)" == no ]] \
    || { echo "too broad: secrets in $ns" >&2; exit 1; }
done

# The real-cluster tests use the current context (kind) as cluster admin.
# No SSH_HOST: replies carry the node's InternalIP (reachable from a Linux host).
(cd "$root" && env -u SSH_HOST POD_NAMESPACE=user-workloads SSH_BASE_IMAGE="$ssh_image" \
  cargo test -p paygress-k8s --test cluster -- --ignored --test-threads=1)

# The sidecar itself comes up (needs RUN_MODE=http|both for /healthz; the example's
# public relays and mints must be reachable from the cluster for a fully ready pod).
kubectl wait --for=condition=available --timeout=300s \
  deployment/paygress-sidecar -n ingress-system \
  || { kubectl logs -n ingress-system -l app=paygress-sidecar --tail=50; exit 1; }
echo "kind-e2e.sh: passed"
