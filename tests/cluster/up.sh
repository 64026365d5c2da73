#!/usr/bin/env bash
# Starts a real Kubernetes control plane on loopback for the real-cluster tests: etcd,
# kube-apiserver (secure port only, client certificates and service-account tokens, Node and
# RBAC authorisation), kube-controller-manager (the Job, garbage-collector, namespace and
# service-account controllers), kube-scheduler, and nodesim playing two nodes' kubelets
# (tests/cluster/go/nodesim: pods run to completion without containers, as with kwok).
#
#   tests/cluster/up.sh            # builds or reuses the programs (build.sh), starts, waits
#   . target/cluster/env           # GUST_TEST_KUBECONFIG and the ports
#   tests/cluster/down.sh          # stops everything and removes the state folder
#
# Everything lives in one folder: $GUST_CLUSTER_DIR, by default target/cluster in the clone:
# certificates, kubeconfigs (admin.kubeconfig is cluster-admin), etcd's data, each program's
# log (logs/) and process id (pids/). Ports are free ones chosen at start. Fails, printing the
# logs' ends, when the cluster is not ready within $GUST_CLUSTER_TIMEOUT seconds (default 120).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
dir=${GUST_CLUSTER_DIR:-$repo/target/cluster}
timeout=${GUST_CLUSTER_TIMEOUT:-120}

log() { printf 'up.sh: %s\n' "$*" >&2; }

if [ -f "$dir/env" ] && "$here/status.sh" >/dev/null 2>&1; then
  log "already up: . $dir/env"
  exit 0
fi
"$here/down.sh" >/dev/null 2>&1 || true

bin=$("$here/build.sh" | tail -n 1)
# etcd and nodesim are links to this clone's build of them; another clone's build.sh may point
# them at its own later, so take the files they name now.
etcd=$(readlink -f "$bin/etcd")
nodesim=$(readlink -f "$bin/nodesim")
mkdir -p "$dir"/{pki,logs,pids,etcd}
chmod 700 "$dir"
pki=$dir/pki

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
etcd_port=$(free_port)
etcd_peer_port=$(free_port)
api_port=$(free_port)
cm_port=$(free_port)
sched_port=$(free_port)
kubelet_port=$(free_port)

# Certificates: one CA signs the API server's serving certificate and every client's.
openssl_quiet() { openssl "$@" 2>/dev/null; }
openssl_quiet req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=gust-test-ca" \
  -keyout "$pki/ca.key" -out "$pki/ca.crt"
cert() { # cert NAME SUBJECT EXTENSIONS
  openssl_quiet req -newkey rsa:2048 -nodes -subj "$2" -keyout "$pki/$1.key" -out "$pki/$1.csr"
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" "$3" \
    >"$pki/$1.ext"
  openssl_quiet x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 365 -extfile "$pki/$1.ext" -out "$pki/$1.crt"
}
cert apiserver "/CN=kube-apiserver" "extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
cert admin "/O=system:masters/CN=gust-test-admin" "extendedKeyUsage=clientAuth"
cert controller-manager "/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth"
cert scheduler "/CN=system:kube-scheduler" "extendedKeyUsage=clientAuth"
cert kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
# The service-account token signing key.
openssl_quiet genrsa -out "$pki/sa.key" 2048
openssl_quiet rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub"

kubeconfig() { # kubeconfig NAME CERT
  cat >"$dir/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: gust-test
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority-data: $(base64 -w0 <"$pki/ca.crt")
users:
- name: $1
  user:
    client-certificate-data: $(base64 -w0 <"$pki/$2.crt")
    client-key-data: $(base64 -w0 <"$pki/$2.key")
contexts:
- name: gust-test
  context: {cluster: gust-test, user: $1}
current-context: gust-test
EOF
  chmod 600 "$dir/$1.kubeconfig"
}
kubeconfig admin admin
kubeconfig controller-manager controller-manager
kubeconfig scheduler scheduler

start() { # start NAME PROGRAM ARGS...
  local name=$1
  shift
  setsid "$@" >"$dir/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$dir/pids/$name.pid"
}

start etcd "$etcd" --data-dir "$dir/etcd" \
  --listen-client-url "http://127.0.0.1:$etcd_port" --listen-peer-url "http://127.0.0.1:$etcd_peer_port"
apiserver_args=(
  --etcd-servers "http://127.0.0.1:$etcd_port"
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" --insecure-port 0
  --endpoint-reconciler-type none
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key"
  --client-ca-file "$pki/ca.crt"
  --authorization-mode Node,RBAC
  --enable-admission-plugins NodeRestriction
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key"
  --service-account-issuer https://kubernetes.default.svc.cluster.local
  --service-cluster-ip-range 10.96.0.0/16
  --kubelet-client-certificate "$pki/kubelet-client.crt" --kubelet-client-key "$pki/kubelet-client.key"
  --kubelet-preferred-address-types InternalIP
  --allow-privileged --profiling=false --v 1
)
start kube-apiserver "$bin/kube-apiserver" "${apiserver_args[@]}"
# Its arguments, one a line: a test starts a second API server on the same etcd from them.
printf '%s\n' "${apiserver_args[@]}" >"$dir/kube-apiserver.args"
cat >"$dir/env" <<EOF
export GUST_TEST_KUBECONFIG=$dir/admin.kubeconfig
export GUST_TEST_CLUSTER_DIR=$dir
export GUST_TEST_KUBECTL=$bin/kubectl
export GUST_TEST_KUBE_BIN=$bin
export GUST_TEST_NODESIM=$nodesim
export GUST_TEST_API_PORT=$api_port
export GUST_TEST_KUBELET_PORT=$kubelet_port
EOF
kubectl=("$bin/kubectl" --kubeconfig "$dir/admin.kubeconfig")

fail() {
  log "$*"
  for file in "$dir"/logs/*.log; do
    printf '\n--- %s (last lines)\n' "$file" >&2
    tail -n 25 "$file" >&2
  done
  "$here/down.sh" --keep-logs >&2 || true
  exit 1
}
deadline=$((SECONDS + timeout))
wait_for() { # wait_for WHAT COMMAND...
  until "${@:2}" >/dev/null 2>&1; do
    "$here/status.sh" >/dev/null 2>&1 || fail "a program of the control plane stopped while waiting for $1"
    [ $SECONDS -lt $deadline ] || fail "timed out after ${timeout}s waiting for $1"
    sleep 0.5
  done
}
wait_for "the API server" "${kubectl[@]}" get --raw /readyz
# The controllers and the scheduler once the API server serves its RBAC roles (they exit
# when refused at start).
start kube-controller-manager "$bin/kube-controller-manager" \
  --kubeconfig "$dir/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$dir/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$dir/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$cm_port" --port 0 --leader-elect=false \
  --controllers job,garbagecollector,namespace,serviceaccount,serviceaccount-token \
  --use-service-account-credentials \
  --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
  --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
  --profiling=false --v 1
start kube-scheduler "$bin/kube-scheduler" \
  --kubeconfig "$dir/scheduler.kubeconfig" \
  --authentication-kubeconfig "$dir/scheduler.kubeconfig" \
  --authorization-kubeconfig "$dir/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$sched_port" --port 0 --leader-elect=false \
  --profiling=false --v 1

# The nodes' kubelets once the API server answers (nodesim registers them).
start nodesim "$nodesim" --kubeconfig "$dir/admin.kubeconfig" --nodes 2 \
  --kubelet-port "$kubelet_port" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key"
wait_for "the nodes" "${kubectl[@]}" wait --for condition=Ready --timeout 1s node --all
wait_for "the node list" test "$("${kubectl[@]}" get nodes -o name | wc -l)" -eq 2
# Pods need the namespace's default service account and its token (the controller-manager's).
default_token() { test -n "$("${kubectl[@]}" get serviceaccount default -o jsonpath='{.secrets[0].name}')"; }
wait_for "the default service account's token" default_token
log "ready in ${SECONDS}s: . $dir/env (kube-apiserver $("${kubectl[@]}" version -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])') at https://127.0.0.1:$api_port)"
