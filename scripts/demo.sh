#!/usr/bin/env bash
# demo.sh PGB — pgb's main job end to end on a throwaway PostgreSQL 15 cluster:
# every WAL segment the cluster completes is archived by `pgb wal-push`, and
# `pgb wal-fetch` gives back a byte-identical copy. Run by `make demo`.
# KEEP=1 keeps the temp directory.
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
export PGHOST=$TMP PGPORT=5432 PGUSER=postgres PGDATABASE=postgres

cleanup() {
  as_pg "$PGBIN/pg_ctl" -D "$DATA" -m immediate stop >/dev/null 2>&1 || true
  if [ -z "${KEEP:-}" ]; then rm -rf "$TMP"; else echo "kept $TMP"; fi
}
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
sql() { as_pg "$PGBIN/psql" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }

step "1. A throwaway PostgreSQL 15 cluster whose archive_command is pgb"
as_pg "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust >/dev/null
cat >>"$DATA/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$TMP'
wal_level = replica
archive_mode = on
archive_command = '$PGB wal-push --repo $REPO %p'
CONF
as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$TMP/postgres.log" -w start >/dev/null
echo "data directory: $DATA"
echo "repository:     $REPO"
echo "archive_command = '$(sql "SHOW archive_command")'"

step "2. pgb check: is the archiving path working end to end?"
as_pg "$PGB" check --repo "$REPO"

step "3. Writes and segment switches"
sql "CREATE TABLE orders (id bigserial PRIMARY KEY, placed timestamptz DEFAULT now(), note text)"
for i in 1 2 3 4; do
  sql "INSERT INTO orders (note) SELECT repeat('x', 200) FROM generate_series(1, 20000)"
  seg=$(sql "SELECT pg_walfile_name(pg_switch_wal())")
  echo "completed segment $seg ($(sql "SELECT count(*) FROM orders") rows)"
done
for _ in $(seq 1 100); do
  [ "$(sql "SELECT last_archived_wal FROM pg_stat_archiver")" = "$seg" ] && break
  sleep 0.1
done
sql "SELECT 'pg_stat_archiver: archived ' || archived_count || ', failed ' || failed_count || ', last ' || last_archived_wal FROM pg_stat_archiver"

step "4. What the repository holds"
(cd "$REPO" && find . -type f | sort | sed 's|^\./||' | while read -r f; do
  printf '%-52s %9d bytes\n' "$f" "$(stat -c %s "$f")"
done)

step "5. pgb wal-fetch gives back the segment byte for byte"
as_pg "$PGB" wal-fetch --repo "$REPO" "$seg" "$TMP/fetched"
orig=$(sha256sum <"$DATA/pg_wal/$seg" | cut -c1-64)
back=$(sha256sum <"$TMP/fetched" | cut -c1-64)
echo "pg_wal/$seg  sha256 $orig"
echo "fetched copy                      sha256 $back"
cmp "$DATA/pg_wal/$seg" "$TMP/fetched" && echo "identical: $(stat -c %s "$TMP/fetched") bytes"

step "6. A segment that was never archived is the end of the archive (exit 1)"
set +e
as_pg "$PGB" wal-fetch --repo "$REPO" 0000000100000000000000FF "$TMP/never"; rc=$?
set -e
echo "pgb wal-fetch 0000000100000000000000FF -> exit $rc$([ -e "$TMP/never" ] && echo ', file written!' || echo ', nothing written')"
[ "$rc" = 1 ]

printf '\ndemo passed\n'
