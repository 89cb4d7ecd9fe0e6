#!/usr/bin/env bash
# Usage: bench/staging.sh [SCALE=0.05]     (issue 5: time to a verified staging clone)
#
# The benchmark shop: files from shared/bench/corpus.sh (scale 1 = ~2 GiB) and database `prestashop`
# from shared/bench/db.sh (scale 1 = ~9.9M rows), on the throwaway mariadbd "staging". Both tools get
# one backup of both (not timed), then the timed part, fresh targets each round:
#   shopvault: restore latest --to staging (files restored into the target root, database loaded into
#              the target's database with every table's row count and digest proven, PrestaShop rewrite,
#              every file re-hashed against the snapshot): the verified clone in one command.
#   peers:     restic restore --verify (files + the dump.sql of mariadb-dump --single-transaction)
#              + mariadb prestashop_peer < dump.sql; hand edits of the config counted as zero time.
# Local repositories on the same disk. ROUNDS (default 1) rounds, medians. KEEP=1 keeps the server.
. "$(dirname "$0")/lib.sh"
SCALE="${1:-0.05}"
ROUNDS="${ROUNDS:-1}"
need mariadb mariadb-dump restic /usr/bin/time git go
build_shopvault
W="$SV/staging"; OUT="$W/out"
freshfs_cleanup; rm -rf "$W"; mkdir -p "$W" "$OUT" "$W/keys"

echo "== mariadbd 'staging' and database prestashop at scale $SCALE" >&2
"$SHARED/db.sh" start staging >&2
"$SHARED/db.sh" load staging "$SCALE" >"$OUT/load-sizes.txt" 2>&1 || { cat "$OUT/load-sizes.txt" >&2; exit 1; }
eval "$("$SHARED/db.sh" env staging)"
if [ "${KEEP:-0}" = 1 ]; then trap freshfs_cleanup EXIT; else trap 'freshfs_cleanup; "$SHARED/db.sh" stop staging >&2' EXIT; fi
CNF="$W/my.cnf"
printf '[client]\nuser=root\nsocket=%s\n' "$SOCK" >"$CNF"; chmod 600 "$CNF"
sql() { mariadb --defaults-file="$CNF" "$@"; }

echo "== corpus at scale $SCALE" >&2
SHOP="$W/shop"
"$SHARED/corpus.sh" "$SHOP" "$SCALE" >&2
FILES=$(dub "$SHOP")
DATA=$(sql -N -e "SELECT SUM(data_length+index_length) FROM information_schema.tables WHERE table_schema='prestashop'")
echo "   files $(mib "$FILES") MiB, database $(mib "$DATA") MiB data+index" >&2

echo "== backups (not timed)" >&2
HK="$W/keys/host.key"; RK="$W/keys/restore.key"
"$SVB" init --repo "$W/sv-repo" --host-key "$HK" --restore-key "$RK" >"$OUT/init.txt" 2>&1
"$SVB" backup --repo "$W/sv-repo" --host-key "$HK" --cache-dir "$W/sv-cache" --json \
  --db "unix($SOCK)/prestashop" --db-credentials "$CNF" --db-threads 2 "$SHOP" >"$OUT/sv-backup.json"
export RESTIC_REPOSITORY="$W/restic-repo" RESTIC_PASSWORD_FILE="$W/restic-pass" RESTIC_CACHE_DIR="$W/restic-cache"
echo "bench-password-$$" >"$RESTIC_PASSWORD_FILE"
mkdir -p "$W/dumpdir"
mariadb-dump --defaults-file="$CNF" --single-transaction --quick prestashop >"$W/dumpdir/dump.sql"
restic init -q
restic backup -q "$SHOP" "$W/dumpdir" >"$OUT/restic-backup.txt"

declare -A T
sv_round() { # sv_round N
  local root="$W/stage-sv-$1/t" db="prestashop_sv_$1" cfg="$W/sv-$1.toml"
  freshfs "$W/stage-sv-$1"   # a just-made journaled ext4, as for the peers (lib.sh)
  cat >"$cfg" <<TOML
repository = "$W/sv-repo"
host-key = "$HK"
restore-key = "$RK"
state-dir = "$W/state"
cache-dir = "$W/sv-cache"
[[sources]]
paths = ["$SHOP"]
[targets.staging]
root = "$root"
db-address = "unix($SOCK)/"
db-credentials-file = "$CNF"
db-name = "$db"
domain = "staging.example.org"
TOML
  measure "shopvault_staging_$1" "$SVB" --config "$cfg" restore latest --to staging --json --db-threads 2
  T[sv_$1]=$WALL
}
peer_round() {
  local root="$W/stage-restic-$1/t" db="prestashop_peer_$1"
  freshfs "$W/stage-restic-$1"
  measure "restic_restore_mariadb_$1" bash -c "restic restore -q --verify latest --target '$root' &&
    mariadb --defaults-file='$CNF' -e 'CREATE DATABASE $db' &&
    mariadb --defaults-file='$CNF' $db < '$root$W/dumpdir/dump.sql'"
  T[peer_$1]=$WALL
}
for i in $(seq 1 "$ROUNDS"); do
  echo "== round $i" >&2
  sv_round "$i"
  peer_round "$i"
  freshfs_cleanup; rm -rf "$W/stage-sv-$i" "$W/stage-restic-$i"
  sql -e "DROP DATABASE prestashop_sv_$i; DROP DATABASE prestashop_peer_$i"
done
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR]=$1 } END { if (NR%2) print a[(NR+1)/2]; else printf "%.2f", (a[NR/2]+a[NR/2+1])/2 }'; }
SVM=$(median $(for i in $(seq 1 "$ROUNDS"); do echo "${T[sv_$i]}"; done))
PM=$(median $(for i in $(seq 1 "$ROUNDS"); do echo "${T[peer_$i]}"; done))
R=$(ratio "$SVM" "$PM")
{
  echo "staging.sh scale $SCALE: files $(mib "$FILES") MiB, database $(mib "$DATA") MiB, dump.sql $(mib "$(dub "$W/dumpdir/dump.sql")") MiB; $ROUNDS round(s); $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores; $(restic version | cut -d' ' -f1-2); shopvault $(git -C "$ROOT" rev-parse --short HEAD)"
  echo "| measure | shopvault | peers | ratio | target | met |"
  echo "|---|---|---|---|---|---|"
  echo "| verified staging clone, local repo (wall, median) | $SVM s | restic restore --verify + mariadb < dump.sql: $PM s | $R | ≤ 0.4 | $(verdict "$R" 0.4) |"
} | tee "$OUT/summary.md"
