#!/bin/bash
# Check that the image keeps its cache on the /data volume: start a container on a fresh named volume,
# wait for the page and the demo pair, check the demo snapshot landed under /data (not ~/data), then
# start a second container on the kept volume and check it reuses the snapshot instead of rebuilding it.
# Usage: bash scripts/docker_check.sh [IMAGE]   (default slr-explorer:local, as ../shared/tools/docker-build.sh tags it)
# Prints the seconds from `docker run` to the first HTTP answer and to the pair's "loaded" line, per start.
set -euo pipefail
IMAGE=${1:-slr-explorer:local}; VOLUME=slr-check-$$; NAME=slr-check-$$; PORT=${PORT:-7861}
say() { echo "[$(date +%T)] $*"; }
fail() { echo "FAIL: $*"; docker logs "$NAME" 2>&1 | tail -20; exit 1; }
cleanup() { docker rm -f "$NAME" >/dev/null 2>&1 || true; docker volume rm "$VOLUME" >/dev/null 2>&1 || true; }
trap cleanup EXIT

start() {  # start a container on the volume; print "page S pair S" (seconds after docker run)
  local began page="" pair=""
  began=$(date +%s.%N)
  docker run -d --name "$NAME" -p "127.0.0.1:$PORT:7860" -v "$VOLUME:/data" "$IMAGE" >/dev/null
  for _ in $(seq 600); do
    if [ -z "$page" ] && curl -sf -o /dev/null "http://127.0.0.1:$PORT/"; then
      page=$(echo "$(date +%s.%N) - $began" | bc)
    fi
    if [ -z "$pair" ] && docker logs "$NAME" 2>&1 | grep -q "^loaded "; then
      pair=$(echo "$(date +%s.%N) - $began" | bc)
    fi
    [ -n "$page" ] && [ -n "$pair" ] && break
    docker inspect -f '{{.State.Running}}' "$NAME" | grep -q true || fail "the container stopped"
    sleep 0.5
  done
  [ -n "$page" ] && [ -n "$pair" ] || fail "no page or no pair after 300 s"
  printf 'page %.1f s, pair %.1f s\n' "$page" "$pair"
}

snapshot() {  # the demo snapshot's config file and its modification time, inside the container
  docker exec "$NAME" sh -c 'find /data "$HOME/data" -name model.safetensors -path "*/models/*" -printf "%p %T@\n" 2>/dev/null' | sort
}

cleanup
say "first start on a fresh volume $VOLUME"
echo "first start: $(start)"
docker logs "$NAME" 2>&1 | grep -q "is not writable" && fail "the entrypoint fell back from /data"
first=$(snapshot)
[ -n "$first" ] || fail "no model snapshot found in the container"
echo "$first" | grep -qv "^/data/" && fail "a snapshot outside /data: $first"
say "snapshot on the volume: $first"
docker rm -f "$NAME" >/dev/null
say "restart on the kept volume"
echo "restart: $(start)"
again=$(snapshot)
[ "$again" = "$first" ] || fail "the restart rebuilt the snapshot ($first -> $again)"
say "OK: the cache stays on /data and a restart reuses it"
