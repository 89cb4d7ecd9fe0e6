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
# Each from local repositories on the same disk and (SFTP=1, the default) from repositories on the
# shared loopback OpenSSH "storage box" (../shared/bench/sshd.sh): shopvault over its sftp backend,
# restic over `ssh -s sftp`. ROUNDS (default 1) rounds, medians. KEEP=1 keeps the server.
. "$(dirname "$0")/lib.sh"
SCALE="${1:-0.05}"
ROUNDS="${ROUNDS:-1}"
SFTP="${SFTP:-1}"
need mariadb mariadb-dump restic /usr/bin/time git go
[ "$SFTP" = 1 ] && need ssh ssh-keygen /usr/sbin/sshd
build_shopvault
W="$SV/staging"; OUT="$W/out"
freshfs_cleanup; rm -rf "$W"; mkdir -p "$W" "$OUT" "$W/keys"

echo "== mariadbd 'staging' and database prestashop at scale $SCALE" >&2
"$SHARED/db.sh" start staging >&2
"$SHARED/db.sh" load staging "$SCALE" >"$OUT/load-sizes.txt" 2>&1 || { cat "$OUT/load-sizes.txt" >&2; exit 1; }
eval "$("$SHARED/db.sh" env staging)"
SSHD_STARTED=0
cleanup() {
  freshfs_cleanup
  [ "$SSHD_STARTED" = 1 ] && "$SHARED/sshd.sh" stop >/dev/null 2>&1
  [ "${KEEP:-0}" = 1 ] || "$SHARED/db.sh" stop staging >&2
}
trap cleanup EXIT
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

SVREPO_local="$W/sv-repo"; SSHCFG=""
if [ "$SFTP" = 1 ]; then
  echo "== the same backups into repositories on the loopback sshd (not timed)" >&2
  S="$SV/sshd"
  [ -f "$S/pid" ] && kill -0 "$(cat "$S/pid")" 2>/dev/null || SSHD_STARTED=1
  PORT=$("$SHARED/sshd.sh" start)
  BOX="$SV/box/staging"; rm -rf "$BOX"; mkdir -p "$BOX"
  printf '[127.0.0.1]:%s %s\n' "$PORT" "$(cut -d' ' -f1-2 "$S/host_key.pub")" >"$W/known_hosts"
  SVREPO_sftp="sftp://root@127.0.0.1:$PORT$BOX/sv-repo"
  SSHCFG="[ssh]
known-hosts = \"$W/known_hosts\"
key-file = \"$S/client_key\""
  SVS=(--known-hosts "$W/known_hosts" --ssh-key "$S/client_key")
  "$SVB" init --repo "$SVREPO_sftp" "${SVS[@]}" --host-key "$HK.sftp" --restore-key "$RK.sftp" >"$OUT/init-sftp.txt" 2>&1
  "$SVB" backup --repo "$SVREPO_sftp" "${SVS[@]}" --host-key "$HK.sftp" --cache-dir "$W/sv-cache-sftp" --json \
    --db "unix($SOCK)/prestashop" --db-credentials "$CNF" --db-threads 2 "$SHOP" >"$OUT/sv-backup-sftp.json"
  RESTIC_SFTP=(-r "sftp:box:$BOX/restic-repo" -o "sftp.command=ssh -F $S/ssh_config box -s sftp")
  restic "${RESTIC_SFTP[@]}" init -q
  restic "${RESTIC_SFTP[@]}" backup -q "$SHOP" "$W/dumpdir" >"$OUT/restic-backup-sftp.txt"
fi
NETS="local"; [ "$SFTP" = 1 ] && NETS="local sftp"

declare -A T
sv_round() { # sv_round N NET
  local root="$W/stage-sv-$1/t" db="prestashop_sv_$1" cfg="$W/sv-$1.toml" net=$2 repo hk rk cache
  if [ "$net" = sftp ]; then repo=$SVREPO_sftp hk="$HK.sftp" rk="$RK.sftp" cache="$W/sv-cache-sftp"
  else repo=$SVREPO_local hk=$HK rk=$RK cache="$W/sv-cache"; fi
  freshfs "$W/stage-sv-$1"   # a just-made journaled ext4, as for the peers (lib.sh)
  cat >"$cfg" <<TOML
repository = "$repo"
host-key = "$hk"
restore-key = "$rk"
state-dir = "$W/state"
cache-dir = "$cache"
$([ "$net" = sftp ] && echo "$SSHCFG")
[[sources]]
paths = ["$SHOP"]
[targets.staging]
root = "$root"
db-address = "unix($SOCK)/"
db-credentials-file = "$CNF"
db-name = "$db"
domain = "staging.example.org"
TOML
  measure "shopvault_staging_${net}_$1" "$SVB" --config "$cfg" restore latest --to staging --json
  T[sv_${net}_$1]=$WALL
}
peer_round() { # peer_round N NET
  local root="$W/stage-restic-$1/t" db="prestashop_peer_$1" net=$2 rargs=""
  [ "$net" = sftp ] && rargs=$(printf '%q ' "${RESTIC_SFTP[@]}")
  freshfs "$W/stage-restic-$1"
  measure "restic_restore_mariadb_${net}_$1" bash -c "restic $rargs restore -q --verify latest --target '$root' &&
    mariadb --defaults-file='$CNF' -e 'CREATE DATABASE $db' &&
    mariadb --defaults-file='$CNF' $db < '$root$W/dumpdir/dump.sql'"
  T[peer_${net}_$1]=$WALL
}
for i in $(seq 1 "$ROUNDS"); do
  for net in $NETS; do
    echo "== round $i, $net repositories" >&2
    if [ $(( i % 2 )) = 1 ]; then sv_round "$i" "$net"; peer_round "$i" "$net"
    else peer_round "$i" "$net"; sv_round "$i" "$net"; fi
    freshfs_cleanup; rm -rf "$W/stage-sv-$i" "$W/stage-restic-$i"
    sql -e "DROP DATABASE prestashop_sv_$i; DROP DATABASE prestashop_peer_$i"
  done
done
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR]=$1 } END { if (NR%2) print a[(NR+1)/2]; else printf "%.2f", (a[NR/2]+a[NR/2+1])/2 }'; }
declare -A SVM PM R
for net in $NETS; do
  SVM[$net]=$(median $(for i in $(seq 1 "$ROUNDS"); do echo "${T[sv_${net}_$i]}"; done))
  PM[$net]=$(median $(for i in $(seq 1 "$ROUNDS"); do echo "${T[peer_${net}_$i]}"; done))
  R[$net]=$(ratio "${SVM[$net]}" "${PM[$net]}")
done
{
  echo "staging.sh scale $SCALE: files $(mib "$FILES") MiB, database $(mib "$DATA") MiB, dump.sql $(mib "$(dub "$W/dumpdir/dump.sql")") MiB; $ROUNDS round(s); $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores; $(restic version | cut -d' ' -f1-2); shopvault $(git -C "$ROOT" rev-parse --short HEAD)"
  echo "| measure | shopvault | peers | ratio | target | met |"
  echo "|---|---|---|---|---|---|"
  for net in $NETS; do
    echo "| verified staging clone, $net repo (wall, median) | ${SVM[$net]} s ($(for i in $(seq 1 "$ROUNDS"); do printf '%s ' "${T[sv_${net}_$i]}"; done)) | restic restore --verify + mariadb < dump.sql: ${PM[$net]} s ($(for i in $(seq 1 "$ROUNDS"); do printf '%s ' "${T[peer_${net}_$i]}"; done)) | ${R[$net]} | ≤ 0.4 | $(verdict "${R[$net]}" 0.4) |"
  done
} | tee "$OUT/summary.md"
