#!/bin/sh
# The control plane of the test stack: a fresh PKI, etcd, then kube-apiserver on :6443,
# authenticating one static admin token ($CONTROLPLANE_TOKEN, group system:masters).
# Writes the kubeconfig to $K3S_KUBECONFIG_OUTPUT with the server at 127.0.0.1, as k3s
# does, so the same bootstrap rewrite applies. Exits when either process exits.
set -eu
OUT=${K3S_KUBECONFIG_OUTPUT:-/kube/kubeconfig.yaml}
TOKEN=${CONTROLPLANE_TOKEN:?set CONTROLPLANE_TOKEN}
HOST=${CONTROLPLANE_HOST:-k3s}
D=/var/lib/controlplane
mkdir -p "$D/pki" "$D/etcd"
cd "$D/pki"
openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
openssl req -x509 -new -key ca.key -subj /CN=joulie-compose-ca -days 7 -out ca.crt 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out apiserver.key 2>/dev/null
openssl req -new -key apiserver.key -subj /CN=kube-apiserver -out apiserver.csr 2>/dev/null
printf 'subjectAltName=DNS:%s,DNS:localhost,DNS:kubernetes.default.svc,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' \
  "$HOST" > ext.cnf
openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 7 \
  -extfile ext.cnf -out apiserver.crt 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out sa.key 2>/dev/null
openssl ec -in sa.key -pubout -out sa.pub 2>/dev/null
echo "$TOKEN,admin,admin-uid,system:masters" > tokens.csv

etcd --name compose --data-dir "$D/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster compose=http://127.0.0.1:2380 --unsafe-no-fsync --log-level warn &
kube-apiserver --etcd-servers http://127.0.0.1:2379 \
  --bind-address 0.0.0.0 --secure-port 6443 \
  --tls-cert-file apiserver.crt --tls-private-key-file apiserver.key --cert-dir "$D/certs" \
  --client-ca-file ca.crt --token-auth-file tokens.csv --authorization-mode RBAC \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file sa.pub --service-account-signing-key-file sa.key \
  --service-cluster-ip-range 10.0.0.0/24 --disable-admission-plugins ServiceAccount \
  --endpoint-reconciler-type none --profiling=false &

mkdir -p "$(dirname "$OUT")"
cat > "$OUT.tmp" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: compose
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority-data: $(base64 -w0 ca.crt)
contexts:
- name: compose
  context: {cluster: compose, user: admin}
current-context: compose
users:
- name: admin
  user: {token: $TOKEN}
KUBECONFIG
chmod 0644 "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
# Either process exiting ends the container (restart policy brings it back).
wait -n 2>/dev/null || wait
