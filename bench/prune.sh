#!/usr/bin/env bash
# Usage: bench/prune.sh [SCALE=0.1] [NIGHTS=30] [PRUNE_ROUNDS=3]   (issue 6: forget + prune vs restic forget --prune)
#
# Generates the shared PrestaShop-like corpus fresh ($SV/prune/corpus), backs it up with both tools
# into local repositories, then simulates NIGHTS nights: `mutate.sh DIR N` (~1% of files) and a
# backup with each tool (which goes first alternates by night). Files only: the database is not part
# of this benchmark.
#
# Retention: snapshot times are the wall clock and cannot be faked for Go binaries (faketime's
# LD_PRELOAD does not reach Go's vDSO clock, checked with both tools), so all backups of the run fall
# on the same day and --keep-daily would keep one. The policy of the issue (--keep-daily 7
# --keep-weekly 4, one backup a night, weeks ending on the last night) keeps the last 7 nights plus
# the nights N-7, N-14, N-21; this is reproduced without dates: those weekly nights (and night N) are
# backed up with --tag weekly by both tools, and forget runs with `--keep-last 7 --keep-tag weekly`.
# With 30 nights + the first backup (31 snapshots) that keeps 10 and removes 21, for both tools.
#
# Measured under /usr/bin/time -v after a sync, PRUNE_ROUNDS times on fresh copies (medians):
# `shopvault forget --prune` (host key) and `restic forget --prune` (restic's cache from the
# backups); then, once, `du -sb` of both repositories,
# `shopvault check --read-data` (restore key; must pass) and, for reference, `restic check
# --read-data`; then `shopvault prune --repack` (restore key: rewrites partly used packs, which the
# host-key prune leaves alone), its size and a second check --read-data. Every nightly backup is
# measured too (sums reported). Prints a markdown table with ratios and the issue's targets; raw
# outputs in $SV/prune/out.
# Env: SV (scratch, default /tmp/sv), SHARED (default <repo>/../shared/bench), KEEP=1 keeps repos,
# REPACK_THRESHOLD (prune --repack's --repack-threshold, default 0.1 = repo.DefaultRepackThreshold).
. "$(dirname "$0")/lib.sh"
SCALE="${1:-0.1}"; NIGHTS="${2:-30}"; PRUNE_ROUNDS="${3:-3}"
need restic /usr/bin/time git go
W="$SV/prune"; OUT="$W/out"; C="$W/corpus"
rm -rf "$W"; mkdir -p "$W" "$OUT" "$W/keys"
build_shopvault
SV_REV=$(git -C "$ROOT" rev-parse --short HEAD)   # the commit the binary was built from (plus any uncommitted edits)

SVREPO="$W/sv-repo"; SVCACHE="$W/sv-cache"; HK="$W/keys/host.key"; RK="$W/keys/restore.key"
export RESTIC_REPOSITORY="$W/restic-repo" RESTIC_PASSWORD_FILE="$W/restic-pass" RESTIC_CACHE_DIR="$W/restic-cache"
echo "bench-password-$$" >"$RESTIC_PASSWORD_FILE"
sv_backup() { "$SVB" backup --repo "$SVREPO" --host-key "$HK" --cache-dir "$SVCACHE" --no-default-excludes --json "$@" "$C"; }
restic_backup() { restic backup --json --quiet "$@" "$C"; }
sv_prune() { "$SVB" forget --repo "$SVREPO" --host-key "$HK" --keep-last 7 --keep-tag weekly --prune; }
restic_prune() { restic forget --keep-last 7 --keep-tag weekly --prune; }
# --repack-threshold: repo.DefaultRepackThreshold (0.1); the CLI flag's own default still says 0.2.
sv_repack() { "$SVB" prune --repo "$SVREPO" --host-key "$HK" --restore-key "$RK" --repack --repack-threshold "$REPACK_THRESHOLD"; }
sv_check() { "$SVB" check --repo "$SVREPO" --restore-key "$RK" --read-data; }
restic_check() { restic check --read-data; }
export -f sv_backup restic_backup sv_prune restic_prune sv_repack sv_check restic_check
REPACK_THRESHOLD="${REPACK_THRESHOLD:-0.1}"
export SVB SVREPO SVCACHE HK RK C REPACK_THRESHOLD

declare -A V   # V[metric.step] = value; T wall s, U cpu s, M max RSS MiB
run() { measure "$1" bash -c "$2"; V[T.$1]=$WALL; V[U.$1]=$CPU; V[M.$1]=$RSS; }
sum() { awk -F'\t' -v p="$1" '$1 ~ "^" p "\\." { s += $2 } END { printf "%.2f", s }' "$OUT/measurements.tsv"; }
med() { # med METRIC STEP : median over the prune rounds
  local i v=""
  for i in $(seq 1 "$PRUNE_ROUNDS"); do v="$v ${V[$1.$2.$i]}"; done
  echo $v | tr ' ' '\n' | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR+1)/2]; else printf "%.10g\n", (a[NR/2] + a[NR/2+1]) / 2 }'
}
breakdown() { # breakdown DIR : "data 639.02, index 1.58, ..." (du -sb of each top-level entry, MiB, largest first)
  local e; for e in "$1"/*; do printf '%s\t%s\n' "$(basename "$e")" "$(dub "$e")"; done |
    sort -t$'\t' -k2 -rn | awk -F'\t' '{ printf "%s%s %.2f", (NR > 1 ? ", " : ""), $1, $2/1048576 }'
}
maxrss() { awk -F'\t' -v p="$1" '$1 ~ "^" p "\\." && $4+0 > m { m = $4+0 } END { print m+0 }' "$OUT/measurements.tsv"; }

echo "== corpus (scale $SCALE) in $C" >&2
"$SHARED/corpus.sh" "$C" "$SCALE" >&2
GEN_FILES=$(find "$C" -type f | wc -l); GEN_BYTES=$(dub "$C")
"$SVB" init --repo "$SVREPO" --host-key "$HK" --restore-key "$RK" >"$OUT/sv_init.out" 2>&1
restic init >"$OUT/restic_init.out" 2>&1
echo "== night 0: first backups" >&2
run sv_night.0 "sv_backup"; run restic_night.0 "restic_backup"

for n in $(seq 1 "$NIGHTS"); do
  echo "== night $n/$NIGHTS" >&2
  "$SHARED/mutate.sh" "$C" "$n" >"$OUT/mutate.$n.log" 2>&1
  TAG=""; if [ "$n" -ge $(( NIGHTS - 21 )) ] && [ $(( (NIGHTS - n) % 7 )) = 0 ]; then TAG="--tag weekly"; fi
  if [ $(( n % 2 )) = 1 ]; then
    run "sv_night.$n" "sv_backup $TAG"; run "restic_night.$n" "restic_backup $TAG"
  else
    run "restic_night.$n" "restic_backup $TAG"; run "sv_night.$n" "sv_backup $TAG"
  fi
done
LIVE_FILES=$(find "$C" -type f | wc -l); LIVE_BYTES=$(dub "$C")
SV_BEFORE=$(dub "$SVREPO"); R_BEFORE=$(dub "$RESTIC_REPOSITORY")
SV_SNAPS0=$("$SVB" snapshots --repo "$SVREPO" --host-key "$HK" 2>/dev/null | grep -cE '^[0-9a-f]{8} ')
R_SNAPS0=$(restic snapshots --json | grep -o '"short_id"' | wc -l)

# forget + prune runs PRUNE_ROUNDS times on copies of the 30-night repositories (restic's cache
# too), alternating which tool goes first; the table gives medians, the last round's repositories
# are the ones measured and checked afterwards.
cp -a "$SVREPO" "$W/sv-repo.0"; cp -a "$RESTIC_REPOSITORY" "$W/restic-repo.0"; cp -a "$RESTIC_CACHE_DIR" "$W/restic-cache.0"
for i in $(seq 1 "$PRUNE_ROUNDS"); do
  echo "== forget + prune, round $i/$PRUNE_ROUNDS" >&2
  if [ "$i" -gt 1 ]; then
    rm -rf "$SVREPO" "$RESTIC_REPOSITORY" "$RESTIC_CACHE_DIR"
    cp -a "$W/sv-repo.0" "$SVREPO"; cp -a "$W/restic-repo.0" "$RESTIC_REPOSITORY"; cp -a "$W/restic-cache.0" "$RESTIC_CACHE_DIR"
  fi
  if [ $(( i % 2 )) = 1 ]; then run "sv_prune.$i" sv_prune; run "restic_prune.$i" restic_prune
  else run "restic_prune.$i" restic_prune; run "sv_prune.$i" sv_prune; fi
done
rm -rf "$W/sv-repo.0" "$W/restic-repo.0" "$W/restic-cache.0"
for m in T U M; do for t in sv_prune restic_prune; do V[$m.$t]=$(med "$m" "$t"); done; done
SV_AFTER=$(dub "$SVREPO"); R_AFTER=$(dub "$RESTIC_REPOSITORY")
SV_PARTS=$(breakdown "$SVREPO"); R_PARTS=$(breakdown "$RESTIC_REPOSITORY")
SV_SNAPS=$("$SVB" snapshots --repo "$SVREPO" --host-key "$HK" 2>/dev/null | grep -cE '^[0-9a-f]{8} ')
R_SNAPS=$(restic snapshots --json | grep -o '"short_id"' | wc -l)
[ "$SV_SNAPS" = "$R_SNAPS" ] || { echo "bench: shopvault kept $SV_SNAPS snapshots, restic $R_SNAPS" >&2; exit 1; }

echo "== check --read-data" >&2
run sv_check sv_check          # measure aborts the run when the check fails
run restic_check restic_check

echo "== shopvault prune --repack (restore key), check --read-data again" >&2
run sv_repack sv_repack
SV_REPACKED=$(dub "$SVREPO"); SV_PARTS_REPACKED=$(breakdown "$SVREPO")
run sv_check_repack sv_check

# ---- table ----
line() { # op sv restic target(max ratio) unit [sv-cpu restic-cpu]
  local r a b rc=""
  r=$(ratio "$2" "$3"); [ -z "$3" ] && r="-"; a="${2:+$2 $5}"; b="${3:+$3 $5}"
  [ -n "${6:-}" ] && [ -n "$a" ] && a="$a (cpu $6)"
  [ -n "${6:-}" ] && [ -n "${7:-}" ] && rc=" (cpu $(ratio "$6" "$7"))"
  [ -n "${7:-}" ] && b="$b (cpu $7)"
  printf '| %s | %s | %s | %s%s | %s | %s |\n' "$1" "${a:-n/a}" "${b:--}" "$r" "$rc" "$4" \
    "$(case "$4" in ≤*) [ "$r" = - ] && echo "" || verdict "$r" "${4#≤ }" ;; *) echo "" ;; esac)"
}
{
  echo "prune.sh scale $SCALE, $NIGHTS nights: corpus $GEN_FILES files, $(mib "$GEN_BYTES") MiB at night 0, $LIVE_FILES files, $(mib "$LIVE_BYTES") MiB after night $NIGHTS; $(( NIGHTS + 1 )) snapshots, $SV_SNAPS kept (\`--keep-last 7 --keep-tag weekly\`); $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) × $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem:/ {print $2}') GiB RAM; $(restic version | cut -d' ' -f1-2); shopvault $SV_REV"
  echo
  echo "| operation | shopvault | restic | ratio shopvault/restic | target | met |"
  echo "|---|---|---|---|---|---|"
  line "forget + prune, wall (median of $PRUNE_ROUNDS)" "${V[T.sv_prune]}" "${V[T.restic_prune]}" "≤ 0.5" s "${V[U.sv_prune]}" "${V[U.restic_prune]}"
  line "forget + prune, peak RSS (median)" "${V[M.sv_prune]}" "${V[M.restic_prune]}" "≤ 1" MiB
  line "repository size after prune" "$(mib "$SV_AFTER")" "$(mib "$R_AFTER")" "≤ 1" MiB
  line "then \`shopvault prune --repack --repack-threshold $REPACK_THRESHOLD\` (restore key), wall" "${V[T.sv_repack]}" "" "(info)" s "${V[U.sv_repack]}"
  line "forget + prune + prune --repack, wall" "$(awk -v a="${V[T.sv_prune]}" -v b="${V[T.sv_repack]}" 'BEGIN { printf "%.2f", a+b }')" "${V[T.restic_prune]}" "≤ 0.5" s
  line "prune --repack, peak RSS" "${V[M.sv_repack]}" "${V[M.restic_prune]}" "≤ 1" MiB
  line "repository size after prune --repack" "$(mib "$SV_REPACKED")" "$(mib "$R_AFTER")" "≤ 1" MiB
  line "check --read-data after --repack (passed), wall" "${V[T.sv_check_repack]}" "" "(info)" s "${V[U.sv_check_repack]}"
  line "repository size before prune" "$(mib "$SV_BEFORE")" "$(mib "$R_BEFORE")" "(info)" MiB
  line "check --read-data after prune (passed), wall" "${V[T.sv_check]}" "${V[T.restic_check]}" "(info)" s "${V[U.sv_check]}" "${V[U.restic_check]}"
  line "check --read-data, peak RSS" "${V[M.sv_check]}" "${V[M.restic_check]}" "(info)" MiB
  line "first backup, wall" "${V[T.sv_night.0]}" "${V[T.restic_night.0]}" "(info)" s "${V[U.sv_night.0]}" "${V[U.restic_night.0]}"
  line "$NIGHTS nightly backups, wall summed" "$(sum sv_night | awk -v f="${V[T.sv_night.0]}" '{ printf "%.2f", $1 - f }')" \
    "$(sum restic_night | awk -v f="${V[T.restic_night.0]}" '{ printf "%.2f", $1 - f }')" "(info)" s
  line "nightly backups, highest peak RSS" "$(maxrss sv_night)" "$(maxrss restic_night)" "(info)" MiB
  echo
  echo "Repositories by directory (du -sb, MiB) after forget + prune: shopvault $SV_PARTS; restic $R_PARTS. Shopvault after prune --repack: $SV_PARTS_REPACKED."
  echo
  echo "forget + prune per round (wall s, shopvault/restic): $(for i in $(seq 1 "$PRUNE_ROUNDS"); do printf '%s%s/%s' "$([ "$i" -gt 1 ] && echo ', ')" "${V[T.sv_prune.$i]}" "${V[T.restic_prune.$i]}"; done)."
  echo
  echo "Wall time is the measure; cpu = user+sys seconds. Live data after night $NIGHTS: $(mib "$LIVE_BYTES") MiB; shopvault's repository after prune is $(ratio "$SV_AFTER" "$LIVE_BYTES")× that ($(ratio "$SV_REPACKED" "$LIVE_BYTES")× after --repack), restic's $(ratio "$R_AFTER" "$LIVE_BYTES")×. Snapshots before forget: shopvault $SV_SNAPS0, restic $R_SNAPS0. 1-minute load average before: $(awk -F'\t' '$1 ~ /prune|repack|check/ { printf "%s%s %s", (n++ ? ", " : ""), $1, $5 }' "$OUT/measurements.tsv")."
} | tee "$OUT/table.md"
[ "${KEEP:-0}" = 1 ] || rm -rf "$SVREPO" "$RESTIC_REPOSITORY" "$SVCACHE" "$RESTIC_CACHE_DIR" "$C"
