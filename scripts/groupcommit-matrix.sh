#!/bin/bash
# scripts/groupcommit-matrix.sh — the group-commit table of BENCHMARKS.md §2a (make build first).
# before (timer seals: --min-seal-interval 1h, so flush_interval 250ms seals, as before group commit) vs after (group commit)
BQ=${BQ:-bin/bucketq}
run() { # minseal clients batch
  D=$(mktemp -d)
  $BQ produce --bucket-dir $D --listen 127.0.0.1:18889 --otlp-grpc= --otlp-http= --log-level warn --min-seal-interval $1 > /dev/null 2>&1 &
  P=$!
  for i in $(seq 50); do curl -s -o /dev/null 127.0.0.1:18889/readyz && break; sleep 0.1; done
  $BQ bench --url http://127.0.0.1:18889 --clients $2 --batch-size $3 --duration 5s --quiet --json 2>/dev/null
  kill $P; wait $P 2>/dev/null; rm -rf $D
}
echo "# $(date -u +%FT%TZ) nproc=$(nproc) loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
for b in 1 100 500; do for c in 1 4 16 64 256; do
  before=$(run 1h $c $b); after=$(run 0 $c $b)
  echo "$c $b BEFORE $before"
  echo "$c $b AFTER $after"
done; done
echo "# done $(date -u +%FT%TZ) loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
