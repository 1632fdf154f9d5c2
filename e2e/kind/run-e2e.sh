#!/usr/bin/env bash
# Runs the llmops e2e suite (e2e/) on a kind cluster, end to end:
#   kind cluster `llmops-e2e` (e2e/kind/kind-config.yaml; reused if it exists) -> fake GPUs and
#   node roles -> operator + vLLM-simulator images built and loaded -> Prometheus
#   (e2e/kind/prometheus.yaml) -> the operator installed by the Helm chart (charts/llmops) ->
#   host routes to the pod CIDRs -> `pytest e2e -m cluster` against that cluster.
#
# Usage: e2e/kind/run-e2e.sh [--keep] [--skip-build] [-- PYTEST_ARGS...]
#        e2e/kind/run-e2e.sh --down
#   --keep        leave cluster, registry and routes up afterwards (re-runs reuse them)
#   --skip-build  use the images already built (llmops/operator:e2e, llmops/vllm-sim:latest)
#   --down        delete the cluster, its registry and the host routes, then exit
# Environment: LLMOPS_E2E_CLUSTER (cluster name), LLMOPS_E2E_NODE_IMAGE (kindest/node image),
#   LLMOPS_E2E_REGISTRY_PORT (host port of the local registry, 5001), LLMOPS_E2E_PYTHON (a Python
#   with llmops and pytest installed; default .venv/bin/python, else python3),
#   LLMOPS_E2E_STATE_DIR (kubeconfig and route list), LLMOPS_E2E_LOG_DIR (logs on failure).
# Needs Linux (the host routes to pod IPs), docker, kind, kubectl, helm, curl, ip, and sudo
# unless run as root.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
KIND_DIR="$REPO_ROOT/e2e/kind"
CLUSTER_NAME=${LLMOPS_E2E_CLUSTER:-llmops-e2e}
NODE_IMAGE=${LLMOPS_E2E_NODE_IMAGE:-}
REGISTRY_NAME="$CLUSTER_NAME-registry"
REGISTRY_PORT=${LLMOPS_E2E_REGISTRY_PORT:-5001}
STATE_DIR=${LLMOPS_E2E_STATE_DIR:-${TMPDIR:-/tmp}/llmops-e2e-kind}
LOG_DIR=${LLMOPS_E2E_LOG_DIR:-$STATE_DIR/logs}
KUBECONFIG_FILE="$STATE_DIR/kubeconfig"
ROUTES_FILE="$STATE_DIR/routes"
WAIT_TIMEOUT=300s

OPERATOR_IMAGE_REPO=llmops/operator
OPERATOR_IMAGE_TAG=e2e
OPERATOR_IMAGE="$OPERATOR_IMAGE_REPO:$OPERATOR_IMAGE_TAG"
# The tag e2e manifests use as spec.engine.image.
SIM_IMAGE=llmops/vllm-sim:latest
RELEASE=llmops
OPERATOR_NAMESPACE=llmops-system
# The chart names its Deployment after the release when the release name contains "llmops".
OPERATOR_DEPLOYMENT=llmops
PROMETHEUS_NAMESPACE=llmops-monitoring
PROMETHEUS_NODE_PORT=30090
PROMETHEUS_IN_CLUSTER_URL="http://prometheus.$PROMETHEUS_NAMESPACE.svc:9090"

KEEP=0
SKIP_BUILD=0
DOWN=0
PYTEST_ARGS=()
CLUSTER_READY=0

say() { printf '[kind-e2e %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# The header comment above, without the '#'.
usage() { awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "${BASH_SOURCE[0]}"; }

parse_args() {
  while (($#)); do
    case "$1" in
      --keep) KEEP=1 ;;
      --skip-build) SKIP_BUILD=1 ;;
      --down) DOWN=1 ;;
      -h | --help) usage; exit 0 ;;
      --) shift; PYTEST_ARGS=("$@"); return ;;
      *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
  done
}

# --- prerequisites -------------------------------------------------------------------------

# Route changes need root: sudo unless we are root.
as_root() { if ((EUID == 0)); then "$@"; else sudo "$@"; fi; }

require_tool() {
  local tool=$1 hint=$2
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' is not installed: $hint"
}

check_prerequisites() {
  [[ "$(uname -s)" == Linux ]] || die "this script needs Linux: the host must route to pod IPs through the kind nodes (Docker Desktop's VM does not allow that)"
  require_tool docker "install Docker Engine (https://docs.docker.com/engine/install/) and make sure your user may use it"
  require_tool kind "install kind v0.20 or newer: go install sigs.k8s.io/kind@v0.29.0, or download https://kind.sigs.k8s.io/dl/v0.29.0/kind-linux-amd64 to /usr/local/bin/kind and chmod +x it"
  require_tool kubectl "install kubectl 1.24 or newer: https://kubernetes.io/docs/tasks/tools/#kubectl"
  require_tool helm "install Helm 3.8 or newer: https://helm.sh/docs/intro/install/"
  require_tool curl "install curl (Debian/Ubuntu: sudo apt-get install curl)"
  require_tool ip "install iproute2 (Debian/Ubuntu: sudo apt-get install iproute2)"
  docker info >/dev/null 2>&1 || die "cannot talk to the Docker daemon (is it running, and may $(id -un) use it?)"
  if ((EUID != 0)); then
    require_tool sudo "run as root, or install sudo: the host routes to pod IPs need root"
  fi
}

find_python() {
  if [[ -n "${LLMOPS_E2E_PYTHON:-}" ]]; then
    PYTHON=$LLMOPS_E2E_PYTHON
  elif [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then
    PYTHON="$REPO_ROOT/.venv/bin/python"
  else
    PYTHON=python3
  fi
  "$PYTHON" -c 'import llmops, llmops_sandbox, pytest, kubernetes' 2>/dev/null \
    || die "$PYTHON cannot import llmops, llmops_sandbox (the suite's fixtures) and pytest; install them: .venv/bin/pip install -e '.[test]' -e src/llmops-sim -e src/llmops-load -e src/llmops-sandbox"
}

# --- cluster -------------------------------------------------------------------------------

cluster_exists() { kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; }

create_or_reuse_cluster() {
  mkdir -p "$STATE_DIR"
  # Everything below talks to this cluster only (never to the user's current context), and
  # from here on a failure is worth collecting logs for.
  export KUBECONFIG="$KUBECONFIG_FILE"
  CLUSTER_READY=1
  if cluster_exists; then
    say "reusing kind cluster $CLUSTER_NAME"
    kind get kubeconfig --name "$CLUSTER_NAME" >"$KUBECONFIG_FILE"
  else
    say "creating kind cluster $CLUSTER_NAME (1 control plane, 6 workers; takes 1-2 minutes)"
    kind create cluster --name "$CLUSTER_NAME" --config "$KIND_DIR/kind-config.yaml" \
      --kubeconfig "$KUBECONFIG_FILE" --wait 180s ${NODE_IMAGE:+--image "$NODE_IMAGE"}
  fi
  say "waiting for all nodes to be Ready"
  kubectl wait --for=condition=Ready nodes --all --timeout="$WAIT_TIMEOUT" >/dev/null
}

# A local registry that the nodes use as a mirror of docker.io: `llmops/vllm-sim:latest` has
# pull policy Always (a :latest tag), so the kubelet resolves it on every pod start and would
# otherwise ask Docker Hub, where it does not exist. Other docker.io images fall through to
# Docker Hub (containerd tries the next host on 404).
start_registry() {
  if [[ "$(docker inspect -f '{{.State.Running}}' "$REGISTRY_NAME" 2>/dev/null || true)" != true ]]; then
    say "starting local registry $REGISTRY_NAME on 127.0.0.1:$REGISTRY_PORT"
    docker rm -f "$REGISTRY_NAME" >/dev/null 2>&1 || true
    docker run -d --restart=always -p "127.0.0.1:$REGISTRY_PORT:5000" --name "$REGISTRY_NAME" registry:2 >/dev/null
  fi
  if [[ "$(docker inspect -f '{{json .NetworkSettings.Networks.kind}}' "$REGISTRY_NAME")" == null ]]; then
    docker network connect kind "$REGISTRY_NAME"
  fi
  local node
  for node in $(kind get nodes --name "$CLUSTER_NAME"); do
    docker exec "$node" mkdir -p /etc/containerd/certs.d/docker.io
    printf 'server = "https://registry-1.docker.io"\n\n[host."http://%s:5000"]\n  capabilities = ["pull", "resolve"]\n' \
      "$REGISTRY_NAME" | docker exec -i "$node" cp /dev/stdin /etc/containerd/certs.d/docker.io/hosts.toml
  done
}

# Labels and taints come from kind-config.yaml; here what the kubelet cannot set itself.
prepare_nodes() {
  local node count
  say "labelling edge workers node-role.kubernetes.io/edge"
  for node in $(kubectl get nodes -l llmops.io/edge=true -o name); do
    kubectl label "$node" node-role.kubernetes.io/edge= --overwrite >/dev/null
  done
  say "patching fake nvidia.com/gpu capacity into GPU workers (count from nvidia.com/gpu.count)"
  while read -r node count; do
    [[ -n "$node" ]] || continue
    kubectl patch node "$node" --subresource=status --type=json -p \
      "[{\"op\":\"add\",\"path\":\"/status/capacity/nvidia.com~1gpu\",\"value\":\"$count\"},
        {\"op\":\"add\",\"path\":\"/status/allocatable/nvidia.com~1gpu\",\"value\":\"$count\"}]" >/dev/null
  done < <(gpu_nodes)
  check_nodes
}

# "<node> <gpu count>" per GPU worker.
gpu_nodes() {
  kubectl get nodes -l nvidia.com/gpu.count \
    -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.metadata.labels.nvidia\.com/gpu\.count}{"\n"}{end}'
}

# The node layout the scenarios expect (as in the sandbox), fake GPUs still allocatable: the
# kubelet leaves extended resources it does not manage alone, which this re-checks.
check_nodes() {
  local node count allocatable dc edge tainted
  while read -r node count; do
    [[ -n "$node" ]] || continue
    allocatable=$(kubectl get node "$node" -o jsonpath='{.status.allocatable.nvidia\.com/gpu}')
    [[ "$allocatable" == "$count" ]] || die "node $node: allocatable nvidia.com/gpu is '$allocatable', expected $count"
  done < <(gpu_nodes)
  dc=$(kubectl get nodes -l 'nvidia.com/gpu.product=NVIDIA-A100-SXM4-80GB,!llmops.io/edge' -o name | wc -l)
  edge=$(kubectl get nodes -l 'llmops.io/edge=true,node-role.kubernetes.io/edge,nvidia.com/gpu.product=NVIDIA-L4' -o name | wc -l)
  tainted=$(kubectl get nodes -o jsonpath='{range .items[*].spec.taints[?(@.key=="llmops.io/edge")]}{.effect}{"\n"}{end}' | grep -cx NoSchedule || true)
  [[ "$dc" == 2 && "$edge" == 4 && "$tainted" == 4 ]] \
    || die "expected 2 datacenter and 4 tainted edge GPU workers (2 sites x 2), found $dc datacenter, $edge edge, $tainted tainted (was the cluster made from another config? run --down first)"
}

# --- images --------------------------------------------------------------------------------

build_images() {
  if ((SKIP_BUILD)); then
    say "--skip-build: using the existing $OPERATOR_IMAGE and $SIM_IMAGE"
    docker image inspect "$OPERATOR_IMAGE" "$SIM_IMAGE" >/dev/null || die "build the images first (run without --skip-build)"
    return
  fi
  say "building $OPERATOR_IMAGE (operator/Dockerfile)"
  docker build -f "$REPO_ROOT/operator/Dockerfile" -t "$OPERATOR_IMAGE" "$REPO_ROOT" >&2
  say "building $SIM_IMAGE (e2e/images/vllm-sim/Dockerfile)"
  docker build -f "$REPO_ROOT/e2e/images/vllm-sim/Dockerfile" -t "$SIM_IMAGE" "$REPO_ROOT" >&2
}

load_images() {
  say "loading both images into the kind nodes"
  kind load docker-image --name "$CLUSTER_NAME" "$OPERATOR_IMAGE" "$SIM_IMAGE" >&2
  say "pushing $SIM_IMAGE to the local registry (resolves the :latest tag for the nodes)"
  local mirrored="localhost:$REGISTRY_PORT/$SIM_IMAGE"
  docker tag "$SIM_IMAGE" "$mirrored"
  docker push -q "$mirrored" >/dev/null
}

# --- Prometheus and the operator -----------------------------------------------------------

install_prometheus() {
  say "installing Prometheus (namespace $PROMETHEUS_NAMESPACE, NodePort $PROMETHEUS_NODE_PORT)"
  local applied
  applied=$(kubectl apply -f "$KIND_DIR/prometheus.yaml")
  if grep -q 'configmap/prometheus-config configured' <<<"$applied"; then
    kubectl -n "$PROMETHEUS_NAMESPACE" rollout restart deployment/prometheus >/dev/null   # new config
  fi
  kubectl -n "$PROMETHEUS_NAMESPACE" rollout status deployment/prometheus --timeout="$WAIT_TIMEOUT" >/dev/null
}

# The chart values for the e2e operator; $1 is the operator image's ID.
operator_values() {
  # The image-id annotation makes `helm upgrade` roll the operator when the image is rebuilt
  # under the same tag (IfNotPresent would keep the old one running).
  cat <<EOF
image:
  repository: $OPERATOR_IMAGE_REPO
  tag: $OPERATOR_IMAGE_TAG
  pullPolicy: IfNotPresent
operator:
  prometheusUrl: $PROMETHEUS_IN_CLUSTER_URL
  verbose: true
  podAnnotations:
    llmops.io/e2e-image-id: "$1"
# e2e/test_activator.py: deployments at zero hold requests in the chart's activator.
activator:
  enabled: true
EOF
}

install_operator() {
  local values="$STATE_DIR/operator-values.yaml"
  operator_values "$(docker image inspect -f '{{.Id}}' "$OPERATOR_IMAGE")" >"$values"
  say "installing the operator with the Helm chart (release $RELEASE, namespace $OPERATOR_NAMESPACE)"
  helm upgrade --install "$RELEASE" "$REPO_ROOT/charts/llmops" --namespace "$OPERATOR_NAMESPACE" \
    --create-namespace -f "$values" >/dev/null
  say "waiting for the operator to be ready"
  kubectl -n "$OPERATOR_NAMESPACE" rollout status "deployment/$OPERATOR_DEPLOYMENT" --timeout="$WAIT_TIMEOUT" >/dev/null
  wait_for_webhook
  say "helm test (the operator's /healthz through its Service)"
  helm test "$RELEASE" --namespace "$OPERATOR_NAMESPACE" --timeout 3m >/dev/null
}

# The admission webhook answers once a server-side dry run of a valid LLMDeployment passes.
wait_for_webhook() {
  local deadline=$((SECONDS + 120)) out
  until out=$(kubectl create --dry-run=server -o name -f - 2>&1 <<'EOF'
apiVersion: llmops.io/v1alpha1
kind: LLMDeployment
metadata: {name: e2e-webhook-check, namespace: default}
spec:
  model: {source: "hf://Qwen/Qwen2.5-0.5B-Instruct"}
  engine: {image: "llmops/vllm-sim:latest", maxModelLen: 4096}
  sharding: {tensorParallelSize: 1}
  replicas: 1
EOF
  ); do
    ((SECONDS < deadline)) || die "the admission webhook did not admit a valid LLMDeployment within 120s: $out"
    sleep 2
  done
}

# --- host routes to pod IPs ----------------------------------------------------------------

# "<node>,<podCIDR>,<InternalIP>" per node (commas: an empty field stays a field).
node_routes() {
  kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name}{","}{.spec.podCIDR}{","}{.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}'
}

add_routes() {
  local node cidr ip current
  touch "$ROUTES_FILE"
  while IFS=, read -r node cidr ip; do
    [[ -n "$node" ]] || continue
    [[ -n "$cidr" && -n "$ip" ]] || die "node $node has no podCIDR or InternalIP ('$cidr' '$ip')"
    current=$(ip route show exact "$cidr")
    if [[ -z "$current" ]]; then
      say "route $cidr via $ip ($node)"
      as_root ip route add "$cidr" via "$ip"
      echo "$cidr $ip" >>"$ROUTES_FILE"
    elif [[ "$current" == *"via $ip "* ]]; then
      :   # already there
    elif grep -q "^$cidr " "$ROUTES_FILE"; then
      say "route $cidr via $ip ($node) replaces one left by an earlier run"
      as_root ip route replace "$cidr" via "$ip"
      echo "$cidr $ip" >>"$ROUTES_FILE"
    else
      die "the host already routes $cidr elsewhere ($current); remove that route or change networking.podSubnet in kind-config.yaml"
    fi
  done < <(node_routes)
}

remove_routes() {
  [[ -f "$ROUTES_FILE" ]] || return 0
  local cidr ip
  while read -r cidr ip; do
    [[ -n "$cidr" ]] || continue
    if [[ "$(ip route show exact "$cidr")" == *"via $ip "* ]]; then
      say "removing route $cidr via $ip"
      as_root ip route del "$cidr" via "$ip" || true
    fi
  done <"$ROUTES_FILE"
  rm -f "$ROUTES_FILE"
}

control_plane_ip() {
  kubectl get nodes -l node-role.kubernetes.io/control-plane \
    -o jsonpath='{.items[0].status.addresses[?(@.type=="InternalIP")].address}'
}

# Prometheus through its NodePort (what the tests use) and directly at its pod IP (what the
# load generator does with vLLM pods): both must answer before the scenarios start.
check_reachability() {
  local prom_pod_ip="" deadline=$((SECONDS + 60))
  PROMETHEUS_URL="http://$(control_plane_ip):$PROMETHEUS_NODE_PORT"
  say "checking the host reaches Prometheus at $PROMETHEUS_URL and directly at its pod IP"
  until prom_pod_ip=$(prometheus_pod_ip) && [[ -n "$prom_pod_ip" ]] \
    && curl -sf --max-time 3 "$PROMETHEUS_URL/-/ready" >/dev/null \
    && curl -sf --max-time 3 "http://$prom_pod_ip:9090/-/ready" >/dev/null; do
    ((SECONDS < deadline)) || die "the host cannot reach $PROMETHEUS_URL or Prometheus' pod IP '$prom_pod_ip' within 60s (see 'ip route'; is a firewall dropping traffic to the kind network?)"
    sleep 2
  done
}

prometheus_pod_ip() {
  kubectl -n "$PROMETHEUS_NAMESPACE" get pods -l app.kubernetes.io/name=prometheus \
    -o jsonpath='{range .items[?(@.status.phase=="Running")]}{.metadata.deletionTimestamp}{" "}{.status.podIP}{"\n"}{end}' \
    | awk 'NF == 1 {print $1; exit}'
}

# --- tests, logs, teardown -----------------------------------------------------------------

run_tests() {
  check_nodes
  say "running pytest e2e -m cluster (LLMOPS_TEST_PROMETHEUS_URL=$PROMETHEUS_URL)"
  cd "$REPO_ROOT"
  LLMOPS_TEST_KUBECONFIG="$KUBECONFIG_FILE" LLMOPS_TEST_PROMETHEUS_URL="$PROMETHEUS_URL" \
    "$PYTHON" -m pytest e2e -m cluster -v -rs ${PYTEST_ARGS[@]+"${PYTEST_ARGS[@]}"}
}

collect_logs() {
  say "collecting logs into $LOG_DIR"
  mkdir -p "$LOG_DIR"
  kubectl get nodes -o wide >"$LOG_DIR/nodes.txt" 2>&1 || true
  kubectl describe nodes >"$LOG_DIR/nodes-describe.txt" 2>&1 || true
  kubectl get all,llmdeployments,endpoints -A -o wide >"$LOG_DIR/objects.txt" 2>&1 || true
  kubectl get events -A --sort-by=.lastTimestamp >"$LOG_DIR/events.txt" 2>&1 || true
  kubectl -n "$OPERATOR_NAMESPACE" describe pods >"$LOG_DIR/operator-pods.txt" 2>&1 || true
  kubectl -n "$OPERATOR_NAMESPACE" logs "deployment/$OPERATOR_DEPLOYMENT" --all-containers --tail=-1 \
    >"$LOG_DIR/operator.log" 2>&1 || true
  kubectl -n "$OPERATOR_NAMESPACE" logs "deployment/$OPERATOR_DEPLOYMENT" --previous --tail=-1 \
    >"$LOG_DIR/operator-previous.log" 2>&1 || true
  kubectl -n "$PROMETHEUS_NAMESPACE" logs deployment/prometheus --tail=-1 >"$LOG_DIR/prometheus.log" 2>&1 || true
  if [[ -n "${PROMETHEUS_URL:-}" ]]; then
    curl -sf --max-time 5 "$PROMETHEUS_URL/api/v1/targets" >"$LOG_DIR/prometheus-targets.json" 2>&1 || true
  fi
  helm status "$RELEASE" --namespace "$OPERATOR_NAMESPACE" >"$LOG_DIR/helm-status.txt" 2>&1 || true
  ip route >"$LOG_DIR/host-routes.txt" 2>&1 || true
  kind export logs --name "$CLUSTER_NAME" "$LOG_DIR/kind" >/dev/null 2>&1 || true
}

teardown() {
  remove_routes
  if cluster_exists; then
    say "deleting kind cluster $CLUSTER_NAME"
    kind delete cluster --name "$CLUSTER_NAME" --kubeconfig "$KUBECONFIG_FILE" >/dev/null 2>&1 || kind delete cluster --name "$CLUSTER_NAME"
  fi
  if docker inspect "$REGISTRY_NAME" >/dev/null 2>&1; then
    say "removing registry $REGISTRY_NAME"
    docker rm -f "$REGISTRY_NAME" >/dev/null
  fi
}

on_exit() {
  local rc=$?
  trap - EXIT
  if ((rc != 0 && CLUSTER_READY)); then
    collect_logs
  fi
  if ((KEEP)); then
    say "--keep: cluster $CLUSTER_NAME, registry and routes stay up (KUBECONFIG=$KUBECONFIG_FILE); remove them with $0 --down"
  else
    teardown
  fi
  if ((rc == 0)); then say "e2e on kind passed"; else say "e2e on kind FAILED (exit $rc)"; fi
  exit "$rc"
}

main() {
  parse_args "$@"
  if ((DOWN)); then
    check_prerequisites
    teardown
    say "down"
    return
  fi
  check_prerequisites
  find_python
  trap on_exit EXIT
  build_images
  create_or_reuse_cluster
  start_registry
  prepare_nodes
  load_images
  install_prometheus
  install_operator
  add_routes
  check_reachability
  run_tests
}

# Sourcing the file (tests) defines the functions without running anything.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
