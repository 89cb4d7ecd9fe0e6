#!/usr/bin/env bash
# Usage: bench/files.sh [SCALE=0.5] [ROUNDS=1]   (issue 2: file backup/restore, shopvault vs restic)
#
# Each round generates the shared PrestaShop-like corpus fresh ($SV/corpus; SCALE 0.5 ~ 1 GB,
# 49k files), then measures both tools against local repositories on the same disk:
#   1. init + first backup
#   2. second backup, nothing changed (plus a plain `find -newer` walk as a reference)
#   3. mutate.sh day 1, then a backup; repository growth = du -sb after - before
#   4. full restore of the latest snapshot into an empty directory (each onto a just-made journaled
#      ext4, see freshfs in lib.sh): restic restore and restic restore --verify; shopvault restore
#      (verification on, its default) and restore --no-verify — when the build has the command
# Every step runs once per round, no warm-up, under /usr/bin/time -v after a sync; the corpus is in
# the page cache (it was just written) for both tools. Which tool goes first alternates from step
# to step and from round to round. With ROUNDS > 1 the table shows medians. Prints a markdown
# table (both figures, ratio shopvault/restic, the issue's target); raw outputs in $SV/files/out.
# Env: SV (scratch, default /tmp/sv), SHARED (default <repo>/../shared/bench), KEEP=1 keeps repos.
. "$(dirname "$0")/lib.sh"
SCALE="${1:-0.5}"; ROUNDS="${2:-1}"
need restic /usr/bin/time git go
W="$SV/files"; OUT="$W/out"; C="$SV/corpus"
trap freshfs_cleanup EXIT
freshfs_cleanup
rm -rf "$W"; mkdir -p "$W" "$OUT" "$W/keys"
build_shopvault
HAVE_RESTORE=0; HAVE_NOVERIFY=0
HELP=$("$SVB" restore --help 2>&1 || true)   # (not piped into grep -q: SIGPIPE + pipefail)
case "$HELP" in *--target*) HAVE_RESTORE=1 ;; esac
case "$HELP" in *--no-verify*) HAVE_NOVERIFY=1 ;; esac

# shopvault: the host key backs up, the restore key restores; the default PrestaShop excludes are
# turned off so both tools store exactly the same tree.
SVREPO="$W/sv-repo"; SVCACHE="$W/sv-cache"; HK="$W/keys/host.key"; RK="$W/keys/restore.key"
sv_first() { "$SVB" init --repo "$SVREPO" --host-key "$HK" --restore-key "$RK" &&
  "$SVB" backup --repo "$SVREPO" --host-key "$HK" --cache-dir "$SVCACHE" --no-default-excludes --json "$C"; }
sv_backup() { "$SVB" backup --repo "$SVREPO" --host-key "$HK" --cache-dir "$SVCACHE" --no-default-excludes --json "$C"; }
sv_restore() { "$SVB" restore --repo "$SVREPO" --restore-key "$RK" latest --target "$W/r-sv/t" "$@"; }
# restic: its normal cache (in scratch), as users run it; password from a file.
export RESTIC_REPOSITORY="$W/restic-repo" RESTIC_PASSWORD_FILE="$W/restic-pass" RESTIC_CACHE_DIR="$W/restic-cache"
echo "bench-password-$$" >"$RESTIC_PASSWORD_FILE"
restic_first() { restic init && restic backup --json --quiet "$C"; }
restic_backup() { restic backup --json --quiet "$C"; }
export -f sv_first sv_backup sv_restore restic_first restic_backup
export SVB SVREPO SVCACHE HK RK C W

declare -A V   # V[metric.step.round] = value; metric: T wall s, U cpu s, M max RSS MiB, G growth/size bytes
pair() { # pair FIRST-IS-SV STEP-SV CMD-SV STEP-RESTIC CMD-RESTIC
  if [ "$1" = 1 ]; then run "$2" "$3"; run "$4" "$5"; else run "$4" "$5"; run "$2" "$3"; fi
}

for RND in $(seq 1 "$ROUNDS"); do
  A=$(( RND % 2 )); B=$(( 1 - A ))   # A=1: shopvault first at steps 1 and 3, restic first at 2 and 4
  freshfs_cleanup; rm -rf "$C" "$SVREPO" "$SVCACHE" "$RESTIC_REPOSITORY" "$RESTIC_CACHE_DIR" "$W"/r-* "$HK" "$RK"
  echo "== round $RND/$ROUNDS: corpus (scale $SCALE) in $C" >&2
  "$SHARED/corpus.sh" "$C" "$SCALE" >&2
  GEN_FILES=$(find "$C" -type f | wc -l); GEN_BYTES=$(dub "$C")

  echo "== init + first backup" >&2
  pair $A sv_first sv_first restic_first restic_first
  V[G.sv_size.$RND]=$(dub "$SVREPO"); V[G.restic_size.$RND]=$(dub "$RESTIC_REPOSITORY")

  echo "== backup, nothing changed" >&2
  pair $B sv_nochange sv_backup restic_nochange restic_backup
  touch "$W/marker"
  run find_walk "find '$C' -newer '$W/marker' | wc -l"

  echo "== mutate.sh day 1, then backup" >&2
  "$SHARED/mutate.sh" "$C" 1 >&2
  s0=$(dub "$SVREPO"); r0=$(dub "$RESTIC_REPOSITORY")
  pair $A sv_mutate sv_backup restic_mutate restic_backup
  V[G.sv_growth.$RND]=$(( $(dub "$SVREPO") - s0 )); V[G.restic_growth.$RND]=$(( $(dub "$RESTIC_REPOSITORY") - r0 ))
  CFILES=$(find "$C" -type f | wc -l); CSIZE=$(find "$C" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')

  echo "== full restore (each onto a just-made journaled ext4: see freshfs in lib.sh)" >&2
  if [ "$B" = 1 ] && [ "$HAVE_RESTORE" = 1 ]; then freshfs "$W/r-sv"; run sv_restore sv_restore; checktree "$W/r-sv/t"; fi
  freshfs "$W/r-restic"; run restic_restore "restic restore latest --target '$W/r-restic/t'"; checktree "$W/r-restic/t"
  if [ "$A" = 1 ] && [ "$HAVE_RESTORE" = 1 ]; then freshfs "$W/r-sv"; run sv_restore sv_restore; checktree "$W/r-sv/t"; fi
  if [ "$HAVE_NOVERIFY" = 1 ]; then freshfs "$W/r-sv"; run sv_restore_nv "sv_restore --no-verify"; checktree "$W/r-sv/t"; fi
  # like for like with shopvault's default (verified) restore: restic's own --verify re-reads every file
  freshfs "$W/r-restic"; run restic_restore_verify "restic restore --verify latest --target '$W/r-restic/t'"; checktree "$W/r-restic/t"
  [ "$HAVE_RESTORE" = 1 ] || echo "   shopvault restore: command not available in this build (skipped)" >&2
done

# ---- table ----
mline() { line "$1" "$(med M "$2")" "$(med M "$3")" 1 MiB; }
gm() { local v; v=$(med G "$1"); [ -n "$v" ] && mib "$v"; }
rssmax() { local s m=""; for s in "$@"; do v=$(med M "$s"); [ -n "$v" ] && { [ -z "$m" ] || [ "$v" -gt "$m" ]; } && m=$v; done; echo "$m"; }
{
  echo "files.sh scale $SCALE, $ROUNDS round(s)$( [ "$ROUNDS" -gt 1 ] && echo ', medians'): corpus $GEN_FILES files, $(mib "$GEN_BYTES") MiB ($CFILES files after the mutate day); $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) × $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem:/ {print $2}') GiB RAM; $(restic version | cut -d' ' -f1-2); shopvault $(git -C "$ROOT" rev-parse --short HEAD)"
  echo
  echo "| operation | shopvault | restic | ratio shopvault/restic | target | met |"
  echo "|---|---|---|---|---|---|"
  tline "init + first backup, wall" sv_first restic_first 0.5
  tline "backup, nothing changed, wall" sv_nochange restic_nochange 0.25
  tline "backup after one mutate day, wall" sv_mutate restic_mutate 0.4
  line "repository growth for the day" "$(gm sv_growth)" "$(gm restic_growth)" 1 MiB
  tline "full restore --no-verify vs restic restore, wall" sv_restore_nv restic_restore 0.4
  tline "full restore (verified) vs restic restore --verify, wall" sv_restore restic_restore_verify 0.4
  tline "full restore (verified) vs restic restore (does less), wall" sv_restore restic_restore 0.4
  mline "peak RSS, first backup" sv_first restic_first
  mline "peak RSS, no-change backup" sv_nochange restic_nochange
  mline "peak RSS, mutate-day backup" sv_mutate restic_mutate
  line "peak RSS, restore" "$(rssmax sv_restore sv_restore_nv)" "$(med M restic_restore)" 1 MiB
  echo "| repository size after first backup | $(gm sv_size) MiB | $(gm restic_size) MiB | $(ratio "$(med G sv_size)" "$(med G restic_size)") | (info) | |"
  echo "| plain \`find -newer\` walk of the tree (reference) | $(med T find_walk) s | | | (info) | |"
  echo
  echo "Wall time is the measure; cpu = user+sys seconds. 1-minute load average before each step: $(awk -F'\t' '{ printf "%s%s %s", (NR>1 ? ", " : ""), $1, $5 }' "$OUT/measurements.tsv")."
} | tee "$OUT/table.md"
[ "${KEEP:-0}" = 1 ] || rm -rf "$SVREPO" "$RESTIC_REPOSITORY" "$SVCACHE" "$RESTIC_CACHE_DIR"
