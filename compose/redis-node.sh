#!/bin/sh
# A Redis server of the Sentinel topology (compose profile "sentinel"). On every start
# it asks the Sentinels for the current master and starts as its replica; when no
# Sentinel knows a master yet (first start) the node named DEFAULT_MASTER starts as
# master. A restarted old master therefore always returns as a replica.
set -eu
# Arguments: this host's name, the first-start master, the master's name, the Sentinels.
ME="$1" DEFAULT_MASTER="$2" MASTER_NAME="$3"
shift 3
SENTINELS="$*"
master=""
for s in $SENTINELS; do
  master="$(redis-cli -h "$s" -p 26379 --raw SENTINEL get-master-addr-by-name "$MASTER_NAME" \
    2>/dev/null | head -n 1 || true)"
  [ -n "$master" ] && break
done
if [ -z "$master" ] && [ "$ME" != "$DEFAULT_MASTER" ]; then
  master="$DEFAULT_MASTER"
fi
set -- --appendonly yes --maxmemory-policy noeviction --replica-announce-ip "$ME"
if [ -n "$master" ] && [ "$master" != "$ME" ]; then
  set -- "$@" --replicaof "$master" 6379
fi
exec redis-server "$@"
