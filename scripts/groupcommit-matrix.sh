#!/bin/bash
# scripts/groupcommit-matrix.sh — the group-commit tables of BENCHMARKS.md §2a (make build first).
# Each cell runs "before" then "after", each a fresh `bucketq produce` on a fresh directory bucket,
# driven by `bucketq bench` for 5 s; one JSON report per line.
#   default: before = timer seals (--min-seal-interval 1h, so flush_interval 250ms seals, as before
#            group commit), after = group commit, both with $BQ.
#   BQ_BEFORE=path/to/old/bucketq BEFORE_MINSEAL=0: before = another build (e.g. the previous seal
#            rule) with group commit on.
#   CELLS="64:1 16:500" limits the cells (clients:events-per-request); REPS repeats each cell.
BQ=${BQ:-bin/bucketq}
BQ_BEFORE=${BQ_BEFORE:-$BQ}
BEFORE_MINSEAL=${BEFORE_MINSEAL:-1h}
REPS=${REPS:-1}
run() { # binary minseal clients batch
  D=$(mktemp -d)
  $1 produce --bucket-dir $D --listen 127.0.0.1:18889 --otlp-grpc= --otlp-http= --log-level warn --min-seal-interval $2 > /dev/null 2>&1 &
  P=$!
  for i in $(seq 50); do curl -s -o /dev/null 127.0.0.1:18889/readyz && break; sleep 0.1; done
  $BQ bench --url http://127.0.0.1:18889 --clients $3 --batch-size $4 --duration 5s --quiet --json 2>/dev/null | tr -d '\n '
  kill $P; wait $P 2>/dev/null; rm -rf $D
}
if [ -z "$CELLS" ]; then
  for b in 1 100 500; do for c in 1 4 16 64 256; do CELLS="$CELLS $c:$b"; done; done
fi
echo "# $(date -u +%FT%TZ) nproc=$(nproc) loadavg=$(cut -d' ' -f1-3 /proc/loadavg) before=$BQ_BEFORE --min-seal-interval $BEFORE_MINSEAL after=$BQ"
for cell in $CELLS; do for r in $(seq $REPS); do
  c=${cell%:*} b=${cell#*:}
  echo "$c $b BEFORE $(run $BQ_BEFORE $BEFORE_MINSEAL $c $b)"
  echo "$c $b AFTER $(run $BQ 0 $c $b)"
done; done
echo "# done $(date -u +%FT%TZ) loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
