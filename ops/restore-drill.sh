#!/bin/sh
# The restore drill (ops/backup-and-restore.md): prove, on the live deployment, that tonight's
# backup would bring the data back. Harmless to the live database: it takes a backup, verifies
# it, restores it into a scratch database DRILL_DB, compares the MediaNest tables' row counts
# with the backup's own snapshot, checks the copy is a working medianest-workers database
# (migrations at head, the ledger readable), then drops the copy. Exit 0: the drill passed.
#
#   docker compose exec -T worker-maintenance sh < ops/restore-drill.sh      # compose
#   sh ops/restore-drill.sh                                                  # a host install
#
# Needs what a worker has: medianest-workers, DATABASE_URL, BACKUP_DIR (or DATA_DIR), the
# server's pg_dump/pg_restore; the database user may create databases. tests/ops runs it.
set -eu

DRILL_DB=${DRILL_DB:-medianest_restore_drill}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

say() { printf 'restore drill: %s\n' "$*"; }
field() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }

say "1/6 taking a backup"
medianest-workers backup now >"$work/backup.json"
file=$(field "$work/backup.json" path)
say "    $file ($(field "$work/backup.json" size_bytes) bytes)"

say "2/6 verifying it (pg_restore --list, then every data block read)"
medianest-workers backup verify "$file" >"$work/verify.json"

say "3/6 restoring it into $DRILL_DB"
medianest-workers backup restore "$file" --into "$DRILL_DB" >"$work/restore.json"

say "4/6 comparing row counts with the backup's snapshot"
python3 - "$work/backup.json" "$work/restore.json" <<'PY'
import json
import sys

taken = json.load(open(sys.argv[1]))["row_counts"]
restored = json.load(open(sys.argv[2]))["row_counts"]
for table in sorted(taken):
    mark = "ok" if restored.get(table) == taken[table] else "DIFFERS"
    print(f"    {table:<22} {taken[table]:>10} {restored.get(table)!s:>10}  {mark}")
if restored != taken:
    sys.exit("restore drill: FAILED, the restored row counts differ from the backup's")
PY

drill_url=$(python3 -c 'import os, sys
from medianest_workers.db.admin import database_url
print(database_url(os.environ["DATABASE_URL"], sys.argv[1]))' "$DRILL_DB")

say "5/6 using the copy: migrations at head, the ledger readable"
DATABASE_URL=$drill_url medianest-workers migrate >"$work/migrate.log" 2>&1 \
    || { cat "$work/migrate.log"; exit 1; }
DATABASE_URL=$drill_url medianest-workers jobs list --limit 5 >/dev/null

say "6/6 dropping $DRILL_DB"
python3 -c 'import os, sys
from medianest_workers.db.admin import drop_database
drop_database(os.environ["DATABASE_URL"], sys.argv[1])' "$DRILL_DB"

say "passed"
