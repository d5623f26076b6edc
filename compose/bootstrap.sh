#!/bin/sh
# One-shot set-up of the local k3s cluster for docker compose (the "bootstrap" service,
# run in the rancher/k3s image, which has sh and kubectl):
#   1. wait for k3s to write its kubeconfig into the shared volume;
#   2. rewrite its server URL (https://127.0.0.1:6443, only right inside the k3s
#      container) to https://k3s:6443 into a second file, the one the operator uses;
#   3. wait for the API server, apply the NodePowerProfile CRD, wait until it is
#      established;
#   4. create FAKE_NODES fake Node objects (no kubelet: the operator only reads nodes and
#      writes their labels, so API objects are enough) and label every node
#      joulie.io/managed=true.
set -eu

SRC=${K3S_KUBECONFIG_OUTPUT:-/kube/kubeconfig.yaml}
DST=${OPERATOR_KUBECONFIG:-/kube/kubeconfig-compose.yaml}
API=${K3S_API_URL:-https://k3s:6443}
CRD=${CRD_FILE:-/manifests/crd/nodepowerprofiles.yaml}
TWIN_CRD=${TWIN_CRD_FILE:-/manifests/crd/nodetwins.yaml}
HARDWARE_CRD=${HARDWARE_CRD_FILE:-/manifests/crd/nodehardwares.yaml}
FAKE_NODES=${FAKE_NODES:-3}
MANAGED_LABEL=${MANAGED_LABEL:-joulie.io/managed=true}

tries=0
until [ -s "$SRC" ]; do
  tries=$((tries + 1))
  [ "$tries" -le 120 ] || { echo "bootstrap: $SRC never appeared" >&2; exit 1; }
  sleep 1
done

sed "s#https://127.0.0.1:6443#${API}#g; s#https://localhost:6443#${API}#g" "$SRC" > "$DST.tmp"
chmod 0644 "$DST.tmp"
mv "$DST.tmp" "$DST"
export KUBECONFIG="$DST"
echo "bootstrap: wrote $DST (server $API)"

tries=0
until kubectl get --raw=/readyz >/dev/null 2>&1; do
  tries=$((tries + 1))
  [ "$tries" -le 90 ] || { echo "bootstrap: API server $API not ready" >&2; exit 1; }
  sleep 2
done

kubectl apply -f "$CRD"
kubectl wait --for=condition=Established --timeout=60s crd/nodepowerprofiles.joulie.io
kubectl apply -f "$TWIN_CRD"
kubectl wait --for=condition=Established --timeout=60s crd/nodetwins.joulie.io
kubectl apply -f "$HARDWARE_CRD"
kubectl wait --for=condition=Established --timeout=60s crd/nodehardwares.joulie.io

i=0
while [ "$i" -lt "$FAKE_NODES" ]; do
  kubectl apply -f - <<NODE
apiVersion: v1
kind: Node
metadata:
  name: fake-node-$i
  labels:
    kubernetes.io/hostname: fake-node-$i
    type: fake
spec:
  taints:
    - key: joulie.io/fake
      value: "true"
      effect: NoSchedule
NODE
  i=$((i + 1))
done

tries=0
until [ "$(kubectl get nodes -o name | wc -l)" -gt "$FAKE_NODES" ]; do
  tries=$((tries + 1))
  [ "$tries" -le 60 ] || { echo "bootstrap: the k3s node never registered" >&2; exit 1; }
  sleep 2
done
kubectl label nodes --all --overwrite "$MANAGED_LABEL"
kubectl get nodes --show-labels
echo "bootstrap: done"
