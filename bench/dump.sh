#!/usr/bin/env bash
# Usage: bench/dump.sh [SCALE=0.25]     (issue 4: MariaDB dump/load, shopvault vs mariadb-dump,
#                                       mydumper/myloader and restic --stdin)
#
# Starts the shared throwaway mariadbd "bench" (db.sh start bench) and fills database `prestashop`
# (db.sh load bench SCALE; scale 1 = 9.9M rows, ~1.5 GB dump), then measures, alternating tools:
#   dump:  mariadb-dump --single-transaction --quick | zstd -3 > file
#          shopvault backup --db (no paths) --db-threads 1, then --db-threads 2 (each into a fresh,
#          already initialised repository: the init is not timed)
#          mydumper -t 2 (plain files)
#   load:  shopvault db load (its default: 4 tables at a time);  mariadb NEW < dump.sql;  myloader -t 2
#   dedup: db.sh mutate bench 1, then a shopvault backup (--db-threads 2) into the repo of the
#          2-thread dump vs `mariadb-dump ... | restic backup --stdin` on day 0 and day 1:
#          repository growth (du -sb) for the day.
# Each step runs once under /usr/bin/time -v after a sync. Prints a markdown table with ratios and
# the issue's targets; raw outputs in $SV/dump/out. The server is stopped at the end unless KEEP=1.
# Env: SV (scratch, default /tmp/sv), SHARED (default <repo>/../shared/bench).
. "$(dirname "$0")/lib.sh"
SCALE="${1:-0.25}"
need mariadb mariadb-dump mydumper myloader zstd restic /usr/bin/time git go
W="$SV/dump"; OUT="$W/out"
rm -rf "$W"; mkdir -p "$W" "$OUT"
build_shopvault

echo "== mariadbd 'bench' and database prestashop at scale $SCALE" >&2
"$SHARED/db.sh" start bench >&2
"$SHARED/db.sh" load bench "$SCALE" >"$OUT/load-sizes.txt" 2>&1 || { cat "$OUT/load-sizes.txt" >&2; exit 1; }
eval "$("$SHARED/db.sh" env bench)"
[ "${KEEP:-0}" = 1 ] || trap '"$SHARED/db.sh" stop bench >&2' EXIT
CNF="$W/my.cnf"
printf '[client]\nuser=root\nsocket=%s\n' "$SOCK" >"$CNF"; chmod 600 "$CNF"
sql() { mariadb --defaults-file="$CNF" "$@"; }
ROWS=$(sql -N -e "SELECT SUM(table_rows) FROM information_schema.tables WHERE table_schema='prestashop'")
DATA=$(sql -N -e "SELECT SUM(data_length+index_length) FROM information_schema.tables WHERE table_schema='prestashop'")
echo "   ~$ROWS rows, $(mib "$DATA") MiB data+index" >&2

HK="$W/keys/host.key"; RK="$W/keys/restore.key"; mkdir -p "$W/keys"
export SVB CNF SOCK W HK RK
export RESTIC_REPOSITORY="$W/restic-repo" RESTIC_PASSWORD_FILE="$W/restic-pass" RESTIC_CACHE_DIR="$W/restic-cache"
echo "bench-password-$$" >"$RESTIC_PASSWORD_FILE"
MDUMP="mariadb-dump --defaults-file='$CNF' --single-transaction --quick prestashop"

# sv_dump THREADS: backup of the database only (no paths) into the fresh repository sv-tN
sv_dump() {
  "$SVB" backup --repo "$W/sv-t$1" --host-key "$HK.$1" --cache-dir "$W/sv-cache-t$1" --json \
    --db "unix($SOCK)/prestashop" --db-credentials "$CNF" --db-threads "$1"
}
for t in 1 2; do "$SVB" init --repo "$W/sv-t$t" --host-key "$HK.$t" --restore-key "$RK.$t" >"$OUT/init-t$t.txt" 2>&1; done
export -f sv_dump

# server CPU seconds (utime+stime of mariadbd) spent during a step, next to the client's cpu
HZ=$(getconf CLK_TCK)
srvcpu() { awk '{ print $14 + $15 }' "/proc/$PID/stat"; }
declare -A T M U S
run() {
  local s0; s0=$(srvcpu)
  measure "$1" bash -c "$2"; T[$1]=$WALL; M[$1]=$RSS; U[$1]=$CPU
  S[$1]=$(awk -v a="$s0" -v b="$(srvcpu)" -v hz="$HZ" 'BEGIN { printf "%.1f", (b-a)/hz }')
  echo "    server cpu ${S[$1]} s" >&2
}

echo "== dump" >&2
run mariadb_dump_zstd "$MDUMP | zstd -3 -q -T1 > '$W/dump.sql.zst'"
run sv_dump_t1 "sv_dump 1"
run sv_dump_t2 "sv_dump 2"
run mydumper_t2 "mydumper -S '$SOCK' -u root -B prestashop -t 2 -o '$W/mydumper'"
ZSIZE=$(stat -c %s "$W/dump.sql.zst"); SVT2=$(dub "$W/sv-t2")

echo "== load (each into a new database, dropped afterwards)" >&2
zstd -d -q "$W/dump.sql.zst" -o "$W/dump.sql"
DSIZE=$(stat -c %s "$W/dump.sql")
newdb() { sql -e "DROP DATABASE IF EXISTS $1; CREATE DATABASE $1 CHARACTER SET utf8mb4"; }
newdb load_sv
run sv_load "'$SVB' db load --repo '$W/sv-t2' --restore-key '$RK.2' latest --db prestashop --into 'unix($SOCK)/load_sv' --db-credentials '$CNF' --json"
sql -e "DROP DATABASE load_sv"
newdb load_mariadb
run mariadb_load "mariadb --defaults-file='$CNF' load_mariadb < '$W/dump.sql'"
sql -e "DROP DATABASE load_mariadb"
run myloader_t2 "myloader -S '$SOCK' -u root -d '$W/mydumper' -B load_myloader -o -t 2"
sql -e "DROP DATABASE IF EXISTS load_myloader"
rm -f "$W/dump.sql"

echo "== dedup: restic --stdin day 0, db.sh mutate day 1, then both again" >&2
run restic_day0 "restic init -q && $MDUMP | restic backup -q --stdin --stdin-filename prestashop.sql"
R0=$(dub "$RESTIC_REPOSITORY")
"$SHARED/db.sh" mutate bench 1 >&2
S0=$(dub "$W/sv-t2")
run sv_day1 "'$SVB' backup --repo '$W/sv-t2' --host-key '$HK.2' --cache-dir '$W/sv-cache-t2' --json --db 'unix($SOCK)/prestashop' --db-credentials '$CNF' --db-threads 2"
run restic_day1 "$MDUMP | restic backup -q --stdin --stdin-filename prestashop.sql"
SG=$(( $(dub "$W/sv-t2") - S0 )); RG=$(( $(dub "$RESTIC_REPOSITORY") - R0 ))

# ---- table ----
line() { # op sv peer target(max ratio) unit peer-name [sv-step peer-step]
  local r a b
  r=$(ratio "$2" "$3"); a="${2:+$2 $5}"; b="${3:+$3 $5}"
  if [ -n "${7:-}" ]; then
    a="$a (cpu ${U[$7]} + server ${S[$7]})"; b="$b (cpu ${U[$8]} + server ${S[$8]})"
  fi
  printf '| %s | %s | %s: %s | %s | ≤ %s | %s |\n' "$1" "${a:-n/a}" "$6" "${b:-n/a}" "$r" "$4" "$(verdict "$r" "$4")"
}
{
  echo "dump.sh scale $SCALE: ~$ROWS rows, $(mib "$DATA") MiB data+index, mariadb-dump $(mib "$DSIZE") MiB ($(mib "$ZSIZE") MiB zstd -3); $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) × $(lscpu | sed -n 's/^Model name: *//p'); $(mariadbd --version | grep -o 'Ver [^ ]*'); $(mydumper --version | cut -d, -f1); $(restic version | cut -d' ' -f1-2); shopvault $(git -C "$ROOT" rev-parse --short HEAD)"
  echo
  echo "| operation | shopvault | peer | ratio shopvault/peer | target | met |"
  echo "|---|---|---|---|---|---|"
  line "dump, 1 thread, wall" "${T[sv_dump_t1]}" "${T[mariadb_dump_zstd]}" 0.7 s "mariadb-dump \\| zstd -3" sv_dump_t1 mariadb_dump_zstd
  line "dump, 2 threads, wall" "${T[sv_dump_t2]}" "${T[mydumper_t2]}" 1 s "mydumper -t 2" sv_dump_t2 mydumper_t2
  line "load (default 4 tables at a time), wall" "${T[sv_load]}" "${T[mariadb_load]}" 0.35 s "mariadb < dump.sql" sv_load mariadb_load
  line "load (default 4 tables at a time), wall" "${T[sv_load]}" "${T[myloader_t2]}" 1 s "myloader -t 2" sv_load myloader_t2
  line "repository growth after one mutate day" "$(mib "$SG")" "$(mib "$RG")" 0.5 MiB "restic --stdin"
  echo "| peak RSS: dump t1 / t2 / load / day-1 backup | ${M[sv_dump_t1]} / ${M[sv_dump_t2]} / ${M[sv_load]} / ${M[sv_day1]} MiB | mariadb-dump\\|zstd ${M[mariadb_dump_zstd]}, mydumper ${M[mydumper_t2]}, myloader ${M[myloader_t2]}, restic day 1 ${M[restic_day1]} MiB | | (info) | |"
  VER=$(grep -o '"verify":[0-9]*' "$OUT/sv_load.out" | head -1 | cut -d: -f2)
  echo "| shopvault db load: of which verification (row counts + digests read back) | ${VER:+$(awk -v n="$VER" 'BEGIN { printf "%.1f s", n/1e9 }')} | | | (info) | |"
  echo "| day-1 backup wall | ${T[sv_day1]} s | restic --stdin: day 0 ${T[restic_day0]} s, day 1 ${T[restic_day1]} s | $(ratio "${T[sv_day1]}" "${T[restic_day1]}") | (info) | |"
  echo "| repository size after first dump | $(mib "$SVT2") MiB | restic day 0: $(mib "$R0") MiB | | (info) | |"
  echo
  echo "Wall time is the measure; cpu = the client's user+sys seconds, server = mariadbd's. 1-minute load average before each step: $(awk -F'\t' '{ printf "%s%s %s", (NR>1 ? ", " : ""), $1, $5 }' "$OUT/measurements.tsv")."
} | tee "$OUT/table.md"
