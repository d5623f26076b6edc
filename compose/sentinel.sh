#!/bin/sh
# A Sentinel of the compose profile "sentinel": monitors MASTER_NAME (quorum 2 of 3),
# starting from the master another Sentinel already knows, else DEFAULT_MASTER.
# Sentinel rewrites its configuration, so it lives in a writable temporary file.
set -eu
# Arguments: this host's name, the first-start master, the master's name, the Sentinels.
ME="$1" DEFAULT_MASTER="$2" MASTER_NAME="$3"
shift 3
SENTINELS="$*"
master=""
for s in $SENTINELS; do
  [ "$s" = "$ME" ] && continue
  master="$(redis-cli -h "$s" -p 26379 --raw SENTINEL get-master-addr-by-name "$MASTER_NAME" \
    2>/dev/null | head -n 1 || true)"
  [ -n "$master" ] && break
done
master="${master:-$DEFAULT_MASTER}"
conf=/tmp/sentinel.conf
cat > "$conf" <<CONF
port 26379
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $ME
sentinel monitor $MASTER_NAME $master 6379 2
sentinel down-after-milliseconds $MASTER_NAME 5000
sentinel failover-timeout $MASTER_NAME 60000
sentinel parallel-syncs $MASTER_NAME 1
CONF
exec redis-server "$conf" --sentinel
