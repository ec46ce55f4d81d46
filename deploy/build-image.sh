#!/usr/bin/env bash
# Builds the Paygress container image with Docker or Podman (whichever is installed,
# or CONTAINER_ENGINE=docker|podman), from the repository root.
#
#   deploy/build-image.sh [TAG]        # default tag: paygress:<git describe>
#   PUSH=1 deploy/build-image.sh registry.example/paygress:1.2.3
set -euo pipefail
cd "$(dirname "$0")/.."
engine="${CONTAINER_ENGINE:-}"
if [[ -z "$engine" ]]; then
  if command -v docker >/dev/null 2>&1; then engine=docker
  elif command -v podman >/dev/null 2>&1; then engine=podman
  else echo "neither docker nor podman is installed" >&2; exit 1
  fi
fi
tag="${1:-paygress:$(git describe --tags --always --dirty 2>/dev/null || echo latest)}"
# BuildKit cache mounts in the Dockerfile: Docker needs BuildKit, Podman (buildah) has them.
if [[ "$engine" == docker ]]; then export DOCKER_BUILDKIT=1; fi
"$engine" build -f deploy/Dockerfile -t "$tag" .
echo "built $tag with $engine"
if [[ "${PUSH:-0}" == 1 ]]; then "$engine" push "$tag"; fi
