#!/usr/bin/env bash
# A real single-node Kubernetes (v1.20.2, built from Debian's own `kubernetes` source package) for the
# kube deployer's end-to-end suite, following ../shared/reference/infra.md:
#
#   scripts/kube-cluster.sh build   apt packages + the five Kubernetes binaries, cached outside the repo
#   scripts/kube-cluster.sh up      the cluster in network namespace $NS (needs root)
#   scripts/kube-cluster.sh down    stops it and undoes everything `up` changed
#   scripts/kube-cluster.sh env     prints the variables a client needs (KUBECONFIG, registry, podman)
#
# The cluster lives in its own network namespace (node address 10.231.0.20) joined to the host by one veth
# whose host end is 10.231.0.1/24; the host gets routes to the node, the pod network (10.232.0.0/24) and the
# service IPs (10.96.0.0/16) through it, and nothing else. No namespace has a default route, nothing is
# masqueraded, so nothing the cluster runs can reach anywhere but these namespaces.
# `up` records the global sysctls kubelet changes and `down` restores them, with the cgroups, mounts and
# namespace it made. Images come from a registry inside the namespace (10.231.0.20:5000); no pulls leave it.
set -euo pipefail

CACHE=${WEAVER_KUBE_CACHE:-/var/cache/effect-weaver-kube}
STATE=${WEAVER_KUBE_STATE:-/tmp/effect-weaver-kube}
NS=${WEAVER_KUBE_NS:-wvkube}
K8S_VERSION=1.20.2
NODE_IP=10.231.0.20
HOST_IP=10.231.0.1
REGISTRY=$NODE_IP:5000
BIN=$CACHE/bin
CGROUP=wvkube
SYSCTLS="vm.overcommit_memory kernel.panic kernel.panic_on_oops"
PACKAGES="golang-go rsync gcc libc6-dev etcd-server containerd runc podman iptables docker-registry openssl curl"

log() { echo "[kube-cluster] $*" >&2; }
in_ns() { nsenter --net="/run/netns/$NS" "$@"; }

build() {
  local missing=""
  for p in $PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    log "installing$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
  mkdir -p "$BIN"
  local want="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy"
  local todo=""
  for b in $want; do [ -x "$BIN/$b" ] || todo="$todo cmd/$b"; done
  [ -z "$todo" ] && { log "binaries cached in $BIN"; return; }
  local src=$CACHE/src
  if [ ! -d "$src/kubernetes-$K8S_VERSION" ]; then
    mkdir -p "$src"
    # Debian's sources list has only binary entries; add a source entry for the download and remove it after.
    local list=/etc/apt/sources.list.d/effect-weaver-kube-src.sources
    local uri
    uri=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    printf 'Types: deb-src\nURIs: %s\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "${uri:-http://deb.debian.org/debian}" >"$list"
    apt-get update -qq
    (cd "$src" && apt-get source --download-only -qq kubernetes) || { rm -f "$list"; apt-get update -qq; exit 1; }
    rm -f "$list"
    apt-get update -qq
    (cd "$src" && tar xzf kubernetes_*.orig.tar.gz)
  fi
  local k=$src/kubernetes-$K8S_VERSION
  mkdir -p "$k/.go/src/k8s.io" "$CACHE/gocache" "$CACHE/home"
  ln -sfn ../../.. "$k/.go/src/k8s.io/kubernetes"
  log "building$todo (about 7-8 minutes cold)"
  (cd "$k" && GOPATH=$k/.go GOCACHE=$CACHE/gocache HOME=$CACHE/home CGO_ENABLED=0 make WHAT="${todo# }" >"$CACHE/build.log" 2>&1) \
    || { tail -30 "$CACHE/build.log" >&2; exit 1; }
  for b in $want; do cp "$k/_output/local/bin/linux/amd64/$b" "$BIN/$b"; done
  if [ ! -x "$BIN/pause" ]; then gcc -Os -static -o "$BIN/pause" "$k/build/pause/linux/pause.c"; fi
  log "built into $BIN"
}

# ---------------------------------------------------------------------------------------------------------------
# up / down / env / status
# ---------------------------------------------------------------------------------------------------------------
PKI=$STATE/pki
KUBECONFIG_FILE=$STATE/kubeconfig
CTRD_SOCK=$STATE/containerd/containerd.sock
POD_CIDR=10.232.0.0/24
POD_GW=10.232.0.1
SERVICE_CIDR=10.96.0.0/16
NODE_NAME=wvnode1
HOST_IF=wvkube0
BASE_IMAGE=localhost/node-base:20
PAUSE_IMAGE=localhost/pause:wv
UP_TIMEOUT=${WEAVER_KUBE_UP_TIMEOUT:-90}
# in stop order: kubelet first (so it restarts nothing), etcd last
DAEMONS="kubelet kube-proxy kube-scheduler kube-controller-manager kube-apiserver registry containerd etcd"
# Paths that kubelet, containerd, CNI, runc and podman create outside $STATE whatever their flags say. `up` records
# which are absent; `down` removes those (HOST_PATHS recursively; HOST_DIRS only once they are empty).
HOST_PATHS="/var/lib/kubelet/device-plugins /var/lib/kubelet/pod-resources /var/lib/kubelet /var/lib/cni /var/log/pods
  /var/log/containers /run/containerd /opt/containerd /run/runc /var/lib/containers/cache /dev/shm/libpod_lock
  /var/cache/containers/short-name-aliases.conf.lock /etc/cni/net.d/cni.lock /run/xtables.lock /usr/libexec/kubernetes
  /var/run/kubernetes"
HOST_DIRS="/var/lib/containers /var/cache/containers /run/netns /run/mount" # /run/mount last: umount makes it
export KUBECACHEDIR=$STATE/kube-cache # kubectl's discovery cache, else ~/.kube/cache

need_root() { [ "$(id -u)" -eq 0 ] || { log "'$1' needs root"; exit 1; }; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

podman_env() {
  export CONTAINERS_STORAGE_CONF=$STATE/containers/storage.conf
  export CONTAINERS_REGISTRIES_CONF=$STATE/containers/registries.conf
  export CONTAINERS_CONF=$STATE/containers/containers.conf
}
pm() { podman --runtime runc "$@"; }
kc() { kubectl --kubeconfig="$KUBECONFIG_FILE" "$@"; }
ctrk() { timeout 20 ctr -a "$CTRD_SOCK" -n k8s.io "$@"; }

# A pid is one of ours while its command line mentions $STATE (every daemon's does: config, data dir or kubeconfig).
ours() { [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$STATE"; }
pid_of() { [ -s "$STATE/pids/$1.pid" ] && cat "$STATE/pids/$1.pid"; }
alive() { local p; p=$(pid_of "$1") && ours "$p"; }

start_daemon() {
  local name=$1; shift
  # setsid: the daemons outlive the shell that ran `up` and get no signal meant for its process group.
  (cd "$STATE" && exec setsid nsenter --net="/run/netns/$NS" "$@" >"$STATE/logs/$name.log" 2>&1 </dev/null) &
  echo $! >"$STATE/pids/$name.pid"
}

# TERM the named daemons together, wait up to 10 s, then KILL whatever is left (etcd sometimes ignores TERM).
stop_daemons() {
  local name p pids="" i left
  for name in "$@"; do
    if p=$(pid_of "$name") && ours "$p"; then kill -TERM "$p" 2>/dev/null || true; pids="$pids $p"; fi
  done
  for i in $(seq 50); do
    left=""; for p in $pids; do ours "$p" && left="$left $p"; done
    [ -z "$left" ] && break
    sleep 0.2
  done
  for p in $left; do log "pid $p ($(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-60)) ignored SIGTERM: KILL"; kill -KILL "$p" 2>/dev/null || true; done
  for name in "$@"; do rm -f "$STATE/pids/$name.pid"; done
}

fail() {
  log "FAILED: $*"
  local f
  # let the image job (podman, in the background during `up`) finish rather than leave it writing into $STATE
  [ -n "${images_pid:-}" ] && wait "$images_pid" 2>/dev/null || true
  for f in "$STATE"/logs/*.log; do
    [ -f "$f" ] || continue
    printf '\n==== %s (last 25 lines)\n' "$f" >&2
    tail -n 25 "$f" >&2
  done
  log "FAILED: $*; the state is left in $STATE for inspection, remove it with: $0 down"
  exit 1
}

wait_for() { # what seconds command...
  local what=$1 secs=$2; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || fail "timed out after ${secs}s waiting for $what"
    sleep 0.2
  done
}

is_up() {
  [ -e "$STATE/up" ] || return 1
  local d; for d in $DAEMONS; do alive "$d" || return 1; done
}

half_up() {
  [ -e "$STATE" ] || [ -e "/run/netns/$NS" ] || ip link show "$HOST_IF" >/dev/null 2>&1 ||
    ls -d /sys/fs/cgroup/*/"$CGROUP" >/dev/null 2>&1
}

write_pki() {
  mkdir -p "$PKI"
  (
    cd "$PKI"
    openssl genrsa -out ca.key 2048
    openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=wvkube-ca" -out ca.crt \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"
    openssl genrsa -out apiserver.key 2048
    openssl req -new -key apiserver.key -subj "/CN=kube-apiserver" -out apiserver.csr
    cat >apiserver.ext <<EOT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$NODE_IP,IP:10.96.0.1,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EOT
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 3650 \
      -extfile apiserver.ext -out apiserver.crt
    openssl genrsa -out sa.key 2048
    openssl rsa -in sa.key -pubout -out sa.pub
    echo "wvtoken,admin,admin,system:masters" >tokens.csv
    chmod 600 ./*.key tokens.csv
  ) >"$STATE/logs/pki.log" 2>&1 || fail "openssl"
  cat >"$KUBECONFIG_FILE" <<EOT
apiVersion: v1
kind: Config
clusters:
- name: wvkube
  cluster:
    server: https://$NODE_IP:6443
    certificate-authority: $PKI/ca.crt
users:
- name: admin
  user:
    token: wvtoken
contexts:
- name: wvkube
  context:
    cluster: wvkube
    user: admin
    namespace: default
current-context: wvkube
EOT
  chmod 600 "$KUBECONFIG_FILE"
}

write_configs() {
  mkdir -p "$STATE/containerd" "$STATE/cni/net.d" "$STATE/registry" "$STATE/containers"
  cat >"$STATE/containerd/config.toml" <<EOT
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
[grpc]
  address = "$CTRD_SOCK"
[ttrpc]
  address = "$CTRD_SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  # Lowering oom_score_adj needs CAP_SYS_RESOURCE, which this machine's bounding set lacks: without this, runc
  # fails every pod sandbox (oom_score_adj -998) with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$STATE/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."$REGISTRY"]
    endpoint = ["http://$REGISTRY"]
EOT
  cat >"$STATE/cni/net.d/10-wvkube.conflist" <<EOT
{
  "cniVersion": "0.4.0",
  "name": "wvkube",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$POD_CIDR", "gateway": "$POD_GW" }]],
        "routes": [{ "dst": "$SERVICE_CIDR" }, { "dst": "10.231.0.0/24" }],
        "dataDir": "$STATE/cni/networks"
      }
    }
  ]
}
EOT
  cat >"$STATE/registry.yml" <<EOT
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $STATE/registry
  delete:
    enabled: true
http:
  addr: $REGISTRY
EOT
  cat >"$STATE/containers/storage.conf" <<EOT
[storage]
driver = "overlay"
graphroot = "$STATE/containers/storage"
runroot = "$STATE/containers/run"
EOT
  cat >"$STATE/containers/registries.conf" <<EOT
unqualified-search-registries = []

[[registry]]
location = "$REGISTRY"
insecure = true
EOT
  # Keeps podman's own state under $STATE too, uses runc (crun fails here), never creates a network in the root
  # namespace, and keeps rlimits under the hard limits (CAP_SYS_RESOURCE is missing; see infra.md row 3f).
  cat >"$STATE/containers/containers.conf" <<EOT
[containers]
netns = "none"
default_ulimits = ["nofile=1024:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$STATE/containers/events.log"
tmp_dir = "$STATE/containers/tmp"
image_copy_tmp_dir = "$STATE/containers/tmp"
static_dir = "$STATE/containers/storage/libpod"
volume_path = "$STATE/containers/storage/volumes"
[network]
network_config_dir = "$STATE/containers/networks"
EOT
}

setup_network() {
  ip netns add "$NS"
  ip link add "$HOST_IF" type veth peer name eth0 netns "$NS"
  ip addr add "$HOST_IP/24" dev "$HOST_IF"
  ip link set "$HOST_IF" up
  ip -n "$NS" link set lo up
  ip -n "$NS" addr add "$NODE_IP/24" dev eth0
  ip -n "$NS" link set eth0 up
  in_ns sysctl -qw net.ipv4.ip_forward=1
  in_ns sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
  # The bridge CNI plugin would create cni0 with the first pod; making it now (same name and gateway address,
  # which the plugin adopts) lets the node route to ClusterIPs from the start.
  ip -n "$NS" link add cni0 type bridge
  ip -n "$NS" addr add "$POD_GW/24" dev cni0
  ip -n "$NS" link set cni0 up
  ip -n "$NS" route add "$SERVICE_CIDR" dev cni0
  ip route add "$POD_CIDR" via "$NODE_IP" dev "$HOST_IF"
  ip route add "$SERVICE_CIDR" via "$NODE_IP" dev "$HOST_IF"
}

build_images() {
  podman_env
  local b=$STATE/build t
  rm -rf "$b"; mkdir -p "$b/pause" "$b/node"
  # (a) the sandbox image, local to containerd
  t=$(now)
  cp "$BIN/pause" "$b/pause/pause"
  tar -C "$b/pause" --owner=0 --group=0 --numeric-owner -c . | pm import --change 'ENTRYPOINT ["/pause"]' - "$PAUSE_IMAGE"
  pm save --format docker-archive -o "$b/pause.tar" "$PAUSE_IMAGE"
  local i; for i in $(seq 100); do [ -S "$CTRD_SOCK" ] && break; sleep 0.2; done
  ctrk images import "$b/pause.tar"
  echo "pause image in $(since "$t") s"
  # (b) the base image for apps: the host's node binary, its shared libraries and a shell
  t=$(now)
  local rf=$b/node node lib
  node=$(readlink -f "$(command -v node)")
  mkdir -p "$rf/usr/local/bin" "$rf/bin" "$rf/usr/bin" "$rf/etc" "$rf/root" "$rf/tmp" "$rf/var/tmp" "$rf/proc" "$rf/sys" "$rf/dev"
  chmod 1777 "$rf/tmp" "$rf/var/tmp"
  cp "$node" "$rf/usr/local/bin/node"
  cp -L /bin/sh "$rf/bin/sh"
  for lib in $(ldd "$node" /bin/sh | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && $1 !~ /:$/ { print $1 }' | sort -u); do
    mkdir -p "$rf$(dirname "$lib")"
    cp -L "$lib" "$rf$lib"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$rf/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$rf/etc/group"
  printf 'hosts: files dns\n' >"$rf/etc/nsswitch.conf"
  : >"$rf/etc/hosts"; : >"$rf/etc/resolv.conf"; echo node-base >"$rf/etc/hostname"
  tar -C "$rf" --owner=0 --group=0 --numeric-owner -c . |
    pm import --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' --change 'CMD ["node"]' - "$BASE_IMAGE"
  local out
  out=$(pm run --rm --network none "$BASE_IMAGE" node -e 'console.log(1)')
  [ "$out" = 1 ] || { echo "node-base check printed '$out'"; return 1; }
  for i in $(seq 100); do curl -sf "http://$REGISTRY/v2/" >/dev/null && break; sleep 0.2; done
  pm push --tls-verify=false "$BASE_IMAGE" "$REGISTRY/node-base:20"
  echo "node-base image in $(since "$t") s"
  rm -rf "$b"
}

record_before() {
  local d="$STATE/before" p
  mkdir -p "$d"
  : >"$d/absent"
  for p in $HOST_PATHS $HOST_DIRS; do [ -e "$p" ] || echo "$p" >>"$d/absent"; done
  for p in /sys/fs/cgroup/*/libpod_parent; do [ -e "$p" ] && echo "$p"; done >"$d/libpod_parent" || true
  ip netns list | awk '{ print $1 }' >"$d/netns"
  local k
  for k in $SYSCTLS; do printf '%s=%s\n' "$k" "$(sysctl -n "$k")"; done >"$STATE/sysctls"
}

up() {
  need_root up
  local b c
  for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy pause; do
    [ -x "$BIN/$b" ] || { log "$BIN/$b is missing: run scripts/kube-cluster.sh build first"; exit 1; }
  done
  for c in etcd containerd ctr runc podman docker-registry openssl iptables nsenter setsid curl kubectl node; do
    command -v "$c" >/dev/null || { log "$c is not installed: run scripts/kube-cluster.sh build first"; exit 1; }
  done
  if is_up; then log "already up (state in $STATE); nothing to do"; return 0; fi
  if half_up; then log "found a partly started cluster: running down first"; down; fi
  local t0; t0=$(now)
  mkdir -p "$STATE/pids" "$STATE/logs" "$STATE/etcd"
  chmod 700 "$STATE/etcd"
  record_before
  setup_network
  write_pki
  write_configs
  local c2; for c2 in cpu cpuacct cpuset memory pids devices freezer blkio systemd; do mkdir -p "/sys/fs/cgroup/$c2/$CGROUP"; done

  start_daemon etcd etcd --name wvkube --data-dir "$STATE/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster wvkube=http://127.0.0.1:2380
  start_daemon containerd containerd --config "$STATE/containerd/config.toml"
  start_daemon registry docker-registry serve "$STATE/registry.yml"
  build_images >"$STATE/logs/images.log" 2>&1 &
  local images_pid=$!

  # kubelet spends about 5 s in cAdvisor start-up (a CRI-O probe) before it talks to the API server, and it and
  # kube-proxy retry until the API server answers: start them now, alongside it.
  wait_for "containerd" 30 test -S "$CTRD_SOCK"
  start_daemon kubelet "$BIN/kubelet" --kubeconfig="$KUBECONFIG_FILE" --container-runtime=remote \
    --container-runtime-endpoint="unix://$CTRD_SOCK" --root-dir="$STATE/kubelet" --cert-dir="$STATE/kubelet-pki" \
    --volume-plugin-dir="$STATE/kubelet-plugins" --cgroup-driver=cgroupfs --cgroup-root="/$CGROUP" --fail-swap-on=false \
    --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --address="$NODE_IP" --read-only-port=0 \
    --authorization-mode=AlwaysAllow --pod-infra-container-image="$PAUSE_IMAGE" \
    --eviction-hard='memory.available<100Mi,nodefs.available<1%,imagefs.available<1%,nodefs.inodesFree<1%' \
    --image-gc-high-threshold=100 --image-gc-low-threshold=99 --oom-score-adj=0 \
    --containerd="$CTRD_SOCK" --node-status-update-frequency=1s
  start_daemon kube-proxy "$BIN/kube-proxy" --kubeconfig="$KUBECONFIG_FILE" --hostname-override="$NODE_NAME" \
    --proxy-mode=iptables --cluster-cidr="$POD_CIDR" --bind-address="$NODE_IP" --oom-score-adj=0 \
    --conntrack-max-per-core=0 --conntrack-tcp-timeout-established=0 --conntrack-tcp-timeout-close-wait=0 \
    --metrics-bind-address=127.0.0.1:10249 --healthz-bind-address=127.0.0.1:10256

  wait_for "etcd" 30 in_ns curl -sf http://127.0.0.1:2379/health
  start_daemon kube-apiserver "$BIN/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 \
    --bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port=6443 \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" --client-ca-file="$PKI/ca.crt" \
    --cert-dir="$PKI/generated" --token-auth-file="$PKI/tokens.csv" \
    --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$PKI/sa.pub" \
    --service-account-signing-key-file="$PKI/sa.key" --service-cluster-ip-range="$SERVICE_CIDR" \
    --authorization-mode=AlwaysAllow --kubelet-preferred-address-types=InternalIP --allow-privileged=true \
    --profiling=false
  wait_for "kube-apiserver" 60 curl -sf --cacert "$PKI/ca.crt" -H "Authorization: Bearer wvtoken" "https://$NODE_IP:6443/readyz"

  start_daemon kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig="$KUBECONFIG_FILE" --leader-elect=false \
    --controllers=deployment,replicaset,endpoint,endpointslice,garbagecollector,namespace,horizontalpodautoscaling,nodelifecycle,serviceaccount,serviceaccount-token \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" --use-service-account-credentials=false \
    --port=0 --secure-port=0 --profiling=false
  start_daemon kube-scheduler "$BIN/kube-scheduler" --kubeconfig="$KUBECONFIG_FILE" --leader-elect=false --port=0 --secure-port=0
  wait "$images_pid" || fail "building the images (see $STATE/logs/images.log)"

  local end=$((SECONDS + UP_TIMEOUT)) ready="" token="" svc=""
  while :; do
    ready=$(kc get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)
    token=$(kc -n default get serviceaccount default -o 'jsonpath={.secrets[0].name}' 2>/dev/null || true)
    svc=$(in_ns iptables -t nat -S KUBE-SERVICES 2>/dev/null | grep -c -- '-d 10.96.0.1/32' || true)
    [ "$ready" = True ] && [ -n "$token" ] && [ "${svc:-0}" -gt 0 ] && break
    [ "$SECONDS" -lt "$end" ] ||
      fail "after ${UP_TIMEOUT}s: node $NODE_NAME Ready=${ready:-?}, default/default token secret=${token:-none}, kube-proxy rules for 10.96.0.1=${svc:-0}"
    local d; for d in $DAEMONS; do alive "$d" || fail "$d exited"; done
    sleep 0.5
  done
  touch "$STATE/up"
  log "up in $(since "$t0") s: node $NODE_NAME Ready at $NODE_IP, API https://$NODE_IP:6443, registry $REGISTRY, base image $BASE_IMAGE; eval \"\$($0 env)\""
}

# Kill every process that belongs to the cluster: in its network namespace or a pod's, with its root, working
# directory or command line under $STATE. Never by name.
sweep() {
  local pat; pat=$(mktemp)
  printf '%s\n' "$STATE" >"$pat"
  local round pids p n skip
  skip=" 1 $$ $BASHPID "
  p=$$; while [ "$p" -gt 1 ] 2>/dev/null; do p=$(awk '/^PPid:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 1); skip="$skip$p "; done
  for round in 1 2 3 4; do
    pids=""
    [ -e "/run/netns/$NS" ] && pids="$pids $(ip netns pids "$NS" 2>/dev/null | tr '\n' ' ')"
    for n in $(new_netns); do pids="$pids $(ip netns pids "$n" 2>/dev/null | tr '\n' ' ')"; done
    pids="$pids $(find /proc/[0-9]*/root /proc/[0-9]*/cwd -maxdepth 0 -printf '%h %l\n' 2>/dev/null |
      awk -v s="$STATE" 'index($2, s) == 1 { sub("/proc/", "", $1); print $1 }' | tr '\n' ' ' || true)"
    pids="$pids $(grep -laF -f "$pat" /proc/[0-9]*/cmdline 2>/dev/null | awk -F/ '{ print $3 }' | tr '\n' ' ' || true)"
    local kill_list=""
    for p in $(echo "$pids" | tr ' ' '\n' | sort -un); do
      case "$skip" in *" $p "*) continue ;; esac
      [ -d "/proc/$p" ] && kill_list="$kill_list $p"
    done
    [ -z "$kill_list" ] && break
    log "stopping leftover processes:$kill_list"
    if [ "$round" -eq 1 ]; then kill -TERM $kill_list 2>/dev/null || true; sleep 1; else kill -KILL $kill_list 2>/dev/null || true; sleep 0.5; fi
  done
  rm -f "$pat"
}

# The network namespaces containerd made for pods since `up` (cni-*).
new_netns() {
  [ -f "$STATE/before/netns" ] || return 0
  ip netns list 2>/dev/null | awk '{ print $1 }' | grep '^cni-' | grep -vxF -f "$STATE/before/netns" || true
}

unmount_under() {
  local root=$1 i t
  for i in 1 2 3 4 5; do
    local targets
    targets=$(findmnt -rno TARGET | awk -v r="$root" '$0 == r || index($0, r "/") == 1' | sort -r)
    [ -z "$targets" ] && return 0
    for t in $targets; do umount "$t" 2>/dev/null || umount -l "$t" 2>/dev/null || true; done
  done
  findmnt -rno TARGET | awk -v r="$root" '$0 == r || index($0, r "/") == 1' | sed 's/^/[kube-cluster] still mounted: /' >&2
}

rm_cgroup_tree() {
  local d=$1 i
  [ -d "$d" ] || return 0
  for i in $(seq 25); do
    find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [ -d "$d" ] || return 0
    sleep 0.2
  done
  log "could not remove cgroup $d"
}

down() {
  need_root down
  local t0 p n k v d; t0=$(now)
  # 1. kubelet first, so it restarts no container, then every container through containerd
  [ -d "$STATE/pids" ] && stop_daemons kubelet
  if alive containerd && [ -S "$CTRD_SOCK" ]; then
    local tasks; tasks=$(ctrk tasks ls -q 2>/dev/null || true)
    for p in $tasks; do ctrk tasks kill -a -s SIGKILL "$p" >/dev/null 2>&1 || true; done
    for p in $tasks; do ctrk tasks delete -f "$p" >/dev/null 2>&1 || true; done
    for p in $(ctrk containers ls -q 2>/dev/null || true); do ctrk containers delete "$p" >/dev/null 2>&1 || true; done
  fi
  # 2. the other daemons, then anything left in the namespaces or under $STATE
  [ -d "$STATE/pids" ] && stop_daemons $DAEMONS
  sweep
  # 3. pod network namespaces, mounts
  for n in $(new_netns); do ip netns delete "$n" 2>/dev/null || true; done
  unmount_under "$STATE"
  # 4. the network
  ip route del "$POD_CIDR" via "$NODE_IP" 2>/dev/null || true
  ip route del "$SERVICE_CIDR" via "$NODE_IP" 2>/dev/null || true
  [ -e "/run/netns/$NS" ] && { ip netns delete "$NS" || log "could not delete netns $NS"; }
  ip link show "$HOST_IF" >/dev/null 2>&1 && ip link delete "$HOST_IF"
  # 5. cgroups
  for d in /sys/fs/cgroup/*/"$CGROUP"; do rm_cgroup_tree "$d"; done
  for d in /sys/fs/cgroup/*/libpod_parent; do
    [ -d "$d" ] && [ -f "$STATE/before/libpod_parent" ] && ! grep -qxF "$d" "$STATE/before/libpod_parent" && rm_cgroup_tree "$d"
  done
  # 6. sysctls kubelet changed, and what the daemons made outside $STATE
  if [ -f "$STATE/sysctls" ]; then
    while IFS='=' read -r k v; do [ -n "$k" ] && sysctl -qw "$k=$v"; done <"$STATE/sysctls"
  fi
  if [ -f "$STATE/before/absent" ]; then
    for p in $HOST_PATHS; do
      grep -qxF "$p" "$STATE/before/absent" && [ -e "$p" ] && { unmount_under "$p"; rm -rf --one-file-system "$p"; }
    done
    for p in $HOST_DIRS; do
      grep -qxF "$p" "$STATE/before/absent" && [ -d "$p" ] || continue
      # `ip netns add` made /run/netns a mount point (only undone once no namespace is left in it)
      [ "$p" = /run/netns ] && [ -z "$(ls -A /run/netns)" ] && while mountpoint -q /run/netns; do umount /run/netns || break; done
      rmdir "$p" 2>/dev/null || true
    done
  fi
  # 7. the state directory itself
  if [ -e "$STATE" ]; then
    unmount_under "$STATE"
    rm -rf --one-file-system "$STATE"
  fi
  log "down in $(since "$t0") s"
}

print_env() {
  cat <<EOT
export KUBECONFIG=$KUBECONFIG_FILE
export CONTAINERS_STORAGE_CONF=$STATE/containers/storage.conf
export CONTAINERS_REGISTRIES_CONF=$STATE/containers/registries.conf
export CONTAINERS_CONF=$STATE/containers/containers.conf
export KUBECACHEDIR=$KUBECACHEDIR
export WEAVER_KUBE_REGISTRY=$REGISTRY
export WEAVER_KUBE_BASE_IMAGE=$BASE_IMAGE
export WEAVER_KUBE_NODE_IP=$NODE_IP
export WEAVER_KUBE_STATE=$STATE
EOT
}

status() {
  if is_up; then
    echo "up: state in $STATE"
    kc get nodes -o wide 2>/dev/null
    kc get pods -A -o wide 2>/dev/null
  elif half_up; then
    echo "partly up (run: $0 down)"; return 1
  else
    echo "down"; return 3
  fi
}

case "${1:-}" in
  build) build ;;
  up) up ;;
  down) down ;;
  env) print_env ;;
  status) status ;;
  *) echo "usage: $0 build|up|down|env|status" >&2; exit 2 ;;
esac
