#!/usr/bin/env bash
# Installs what the deployment tests need (integration/tests/deploy.rs and
# slurm.rs), pinned, into $QUARRY_TOOLS_DIR (default ~/.cache/quarry/bin):
#
#   - docker-compose (Debian's package) to check docker-compose.yml;
#   - helm (helm.sh/helm/v4) and kubeconform, built with `go install`, to
#     render and validate deploy/helm/quarry;
#   - the Kubernetes OpenAPI document and the ServiceMonitor CRD, taken from
#     the Go modules k8s.io/kubernetes and prometheus-operator (the tests turn
#     them into kubeconform's schemas: no schema download at test time);
#   - Slurm and MUNGE (Debian's slurmctld, slurmd, slurm-client, munge) for a
#     single-node Slurm on 127.0.0.1.
#
#   scripts/deploy-tools.sh
#
# Idempotent and quiet when everything is there; a first run builds helm
# (3-4 minutes on two cores). Output of failed steps goes to stderr.
set -euo pipefail

HELM_VERSION=v4.3.2
KUBECONFORM_VERSION=v0.7.0
KUBERNETES_VERSION=v1.37.2
PROMETHEUS_OPERATOR_VERSION=v0.85.0

tools_dir=${QUARRY_TOOLS_DIR:-${HOME:?HOME is not set}/.cache/quarry/bin}
mkdir -p "$tools_dir"
log=$(mktemp -t quarry-deploy-tools.XXXXXX)
trap 'rm -f "$log"' EXIT

fail() {
    echo "deploy-tools: $1 failed:" >&2
    tail -n 40 "$log" >&2
    exit 1
}

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
else
    as_root=(sudo)
fi
missing=()
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
for program in slurmctld slurmd sbatch munged; do
    command -v "$program" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin" command -v "$program" >/dev/null 2>&1 || missing+=("$program")
done
if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    { "${as_root[@]}" apt-get update -qq &&
      "${as_root[@]}" apt-get install -y -qq --no-install-recommends \
          docker-compose slurmctld slurmd slurm-client munge; } >"$log" 2>&1 ||
        fail "apt-get install docker-compose slurmctld slurmd slurm-client munge"
fi

if ! command -v go >/dev/null 2>&1; then
    for candidate in /usr/local/go/bin /usr/lib/go/bin; do
        [ -x "$candidate/go" ] && PATH="$candidate:$PATH" && break
    done
fi
command -v go >/dev/null 2>&1 || { echo "deploy-tools: Go is needed to build helm and kubeconform" >&2; exit 1; }

# go install PACKAGE@VERSION into the tools directory, once per version.
install_go_tool() {
    local name=$1 package=$2 version=$3
    local stamp="$tools_dir/.$name-$version"
    if [ -x "$tools_dir/$name" ] && [ -e "$stamp" ]; then
        return
    fi
    echo "deploy-tools: building $name $version" >&2
    GOBIN="$tools_dir" CGO_ENABLED=0 go install -p 1 "$package@$version" >"$log" 2>&1 ||
        fail "go install $package@$version"
    touch "$stamp"
}
install_go_tool helm helm.sh/helm/v4/cmd/helm "$HELM_VERSION"
install_go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"

# One file out of a Go module, copied to the tools directory.
module_file() {
    local module=$1 version=$2 path=$3 target=$4
    if [ -s "$target" ]; then
        return
    fi
    local dir
    dir=$(go mod download -json "$module@$version" 2>"$log" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p') ||
        fail "go mod download $module@$version"
    [ -n "$dir" ] && [ -f "$dir/$path" ] || fail "finding $path in $module@$version"
    cp "$dir/$path" "$target.tmp" && mv "$target.tmp" "$target"
}
schemas="$tools_dir/k8s"
mkdir -p "$schemas"
module_file k8s.io/kubernetes "$KUBERNETES_VERSION" api/openapi-spec/swagger.json \
    "$schemas/kubernetes-$KUBERNETES_VERSION-swagger.json"
module_file github.com/prometheus-operator/prometheus-operator "$PROMETHEUS_OPERATOR_VERSION" \
    example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml \
    "$schemas/servicemonitors-$PROMETHEUS_OPERATOR_VERSION.yaml"
