#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite against real servers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# tests/test_metrics_server.py has a real Prometheus scrape the exporter: Debian's `prometheus`
# package (as root, or with passwordless sudo; the test skips, saying why, when it cannot be installed).
# In containers policy-rc.d keeps the package's service from starting; the test starts its own.
if ! command -v prometheus >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
    echo "test.sh: installing Debian's prometheus for the metrics tests" >&2
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
        --no-install-recommends prometheus >/dev/null; } || echo "test.sh: could not install prometheus" >&2
fi
# tests/test_k8s.py builds the rendered kustomize folder with `kubectl kustomize` (offline): Debian's
# `kubernetes-client` package when no kubectl is installed (the tests skip, saying why, without one).
if ! command -v kubectl >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
    echo "test.sh: installing Debian's kubernetes-client for the Kubernetes tests" >&2
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
        --no-install-recommends kubernetes-client >/dev/null; } || echo "test.sh: could not install kubectl" >&2
fi
exec .venv/bin/python -m pytest "$@"
