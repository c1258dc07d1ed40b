#!/usr/bin/env bash
# demo.sh PGB — the story pgb exists for, end to end, on a throwaway PostgreSQL 15 cluster:
#   a table gets a row every 100 ms; WAL is archived by `pgb wal-push`; a base backup is
#   taken mid-way; a restore point is made before a "release"; then the table is dropped.
#   pgb restores to the named point and to a time just before the drop, and the recovered
#   clusters show that every committed row is there; a drill proves the newest backup
#   restores, and pgb extract puts the dropped table back into the live cluster.
# Run by `make demo`. KEEP=1 keeps the temp directory.
set -euo pipefail

PGB=${1:?usage: demo.sh /path/to/pgb}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
[ -x "$PGBIN/initdb" ] || { echo "demo: PostgreSQL 15 not found in $PGBIN (apt-get install postgresql-15, or set PGBIN)" >&2; exit 1; }

TMP=$(mktemp -d /tmp/pgb-demo.XXXXXX)
chmod 755 "$TMP"
DATA=$TMP/data REPO=$TMP/repo
cp "$PGB" "$TMP/pgb"; PGB=$TMP/pgb        # somewhere the postgres user can run it from

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if [ "$(id -u)" = 0 ]; then chown postgres: "$TMP"; fi
export PGHOST=$TMP PGPORT=5432 PGUSER=postgres PGDATABASE=postgres PGB_REPO=$REPO

cleanup() {
  for d in "$DATA" "$TMP/by-name" "$TMP/by-time"; do
    as_pg "$PGBIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true
  done
  if [ -z "${KEEP:-}" ]; then rm -rf "$TMP"; else echo "kept $TMP"; fi
}
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
sql() { as_pg "$PGBIN/psql" -XAtq -v ON_ERROR_STOP=1 "${@:2}" -c "$1"; }
pgb() { as_pg "$PGB" "$@"; }

step "1. A throwaway PostgreSQL 15 cluster that archives every WAL segment with pgb"
as_pg "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust >/dev/null
cat >>"$DATA/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$TMP'
wal_level = replica
archive_mode = on
archive_command = '$PGB wal-push --repo $REPO %p'
archive_timeout = 1
CONF
as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$TMP/postgres.log" -w start >/dev/null
echo "archive_command = '$(sql "SHOW archive_command")'"
pgb check

orders() {   # orders N: N orders, one every 100 ms, each its own transaction
  as_pg "$PGBIN/psql" -XAtq -c "DO \$\$ BEGIN FOR i IN 1..$1 LOOP
    INSERT INTO orders (item) VALUES ('item ' || i); COMMIT; PERFORM pg_sleep(0.1); END LOOP; END \$\$"
}

step "2. Orders arrive: one row every 100 ms, each its own transaction"
sql "CREATE TABLE orders (id bigserial PRIMARY KEY, placed timestamptz NOT NULL DEFAULT clock_timestamp(), item text)"
orders 40 &
WRITER=$!
sleep 2

step "3. The nightly base backup runs while orders keep arriving"
pgb backup-push --pgdata "$DATA" --fast
wait $WRITER

step "4. Before a risky release: a named restore point, then more orders"
pgb restore-point before_release
AT_POINT=$(sql "SELECT count(*) FROM orders")
echo "orders committed at the restore point: $AT_POINT"
orders 40
BEFORE=$(sql "SELECT count(*) FROM orders")
LAST=$(sql "SELECT max(placed) FROM orders")
sleep 1
STOP_AT=$(sql "SELECT clock_timestamp()")
sleep 1

step "5. The release goes wrong: the table is dropped"
sql "DROP TABLE orders"
echo "$(date -u +%T) DROP TABLE orders   (it had $BEFORE rows, the last placed at $LAST)"
seg=$(sql "SELECT pg_walfile_name(pg_switch_wal())")
for _ in $(seq 1 100); do
  [[ "$(sql "SELECT last_archived_wal FROM pg_stat_archiver")" > "$seg" ]] || [ "$(sql "SELECT last_archived_wal FROM pg_stat_archiver")" = "$seg" ] && break
  sleep 0.1
done

step "6. What the repository holds, what it can recover, and what happened"
pgb backup-list
pgb restore-point list
pgb status
pgb events --table orders

start_restored() {   # start_restored DIR SOCKETDIR PORT
  as_pg mkdir -p "$2"
  as_pg "$PGBIN/pg_ctl" -D "$1" -l "$1.log" -w -o "-c listen_addresses='' -c unix_socket_directories='$2' -c port=$3 -c archive_mode=off" start >/dev/null
}
wait_for() {   # wait_for SOCKETDIR PORT SQL EXPECTED
  for _ in $(seq 1 600); do
    [ "$(PGHOST=$1 PGPORT=$2 sql "$3" 2>/dev/null || true)" = "$4" ] && return 0
    sleep 0.1
  done
  echo "timed out waiting for: $3 = $4" >&2; return 1
}

step "7. Restore to the named point: pgb restore --target-name before_release"
pgb restore --pgdata "$TMP/by-name" --target-name before_release
start_restored "$TMP/by-name" "$TMP/s1" 5433
wait_for "$TMP/s1" 5433 "SELECT pg_get_wal_replay_pause_state()" paused
GOT_POINT=$(PGHOST=$TMP/s1 PGPORT=5433 sql "SELECT count(*) FROM orders")
echo "recovered cluster, paused at the restore point: $GOT_POINT orders (committed then: $AT_POINT)"

step "8. Restore to a time just before the drop: pgb restore --target-time '$STOP_AT'"
pgb restore --pgdata "$TMP/by-time" --target-time "$STOP_AT" --target-action promote
start_restored "$TMP/by-time" "$TMP/s2" 5434
wait_for "$TMP/s2" 5434 "SELECT pg_is_in_recovery()" f
GOT=$(PGHOST=$TMP/s2 PGPORT=5434 sql "SELECT count(*) FROM orders")
GOT_LAST=$(PGHOST=$TMP/s2 PGPORT=5434 sql "SELECT max(placed) FROM orders")
echo "recovered cluster, promoted: $GOT orders, the last placed at $GOT_LAST"
echo "before the drop:             $BEFORE orders, the last placed at $LAST"

step "9. The nightly drill: pgb drill restores the newest backup to the end of the archive and checks it"
pgb drill

step "10. Only the dropped table back into the live cluster: pgb extract --before-event XID"
DROP_XID=$(pgb events --table public.orders --json | sed -n 's/^ *"xid": \([0-9]*\),$/\1/p' | tail -n 1)
echo "pgb events: the DROP TABLE orders was transaction $DROP_XID"
sql "SELECT 1" >/dev/null   # the live cluster still runs: the rest of the database stays as it is
pgb extract --table public.orders --before-event "$DROP_XID" --into "host=$TMP port=$PGPORT user=postgres dbname=postgres"
BACK=$(sql "SELECT count(*) FROM orders")
BACK_LAST=$(sql "SELECT max(placed) FROM orders")
echo "live cluster:    $BACK orders, the last placed at $BACK_LAST"
echo "before the drop: $BEFORE orders, the last placed at $LAST"

if [ "$GOT_POINT" = "$AT_POINT" ] && [ "$GOT" = "$BEFORE" ] && [ "$GOT_LAST" = "$LAST" ] &&
   [ "$BACK" = "$BEFORE" ] && [ "$BACK_LAST" = "$LAST" ]; then
  printf '\ndemo passed: every committed order is back, in the recovered clusters and in the live one\n'
else
  printf '\ndemo FAILED: rows missing\n'; exit 1
fi
