# Helpers shared by bench/files.sh and bench/dump.sh. Source it after setting nothing:
#   . "$(dirname "$0")/lib.sh"
# Sets ROOT (repo top), SHARED (../shared/bench, override with SHARED=), SV (scratch, default
# /tmp/sv), SVB (the shopvault binary built from ROOT into $SV/bin), and defines measure/row helpers.
set -euo pipefail
ROOT="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)"
SHARED="${SHARED:-$ROOT/../shared/bench}"
SHARED="$(cd "$SHARED" && pwd)"
export SV="${SV:-/tmp/sv}"
if [ -e "$SV" ] && [ ! -d "$SV" ]; then
  echo "bench: scratch \$SV=$SV exists and is not a directory; run with SV=/some/other/dir" >&2
  exit 2
fi
mkdir -p "$SV/bin"
export PATH="/usr/local/go/bin:$SV/bin:$PATH"

need() { # need CMD... : fail early with the Debian package to install
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || { echo "bench: $c not found (apt-get install -y restic mydumper mariadb-server mariadb-client zstd time)" >&2; exit 2; }
  done
}

build_shopvault() { # builds $SVB from the working tree (no build tags; restore is detected at run time)
  SVB="$SV/bin/shopvault"
  (cd "$ROOT" && go build -o "$SVB" ./cmd/shopvault)
}

# measure NAME CMD... : runs CMD under /usr/bin/time -v after a sync (so one tool's write-back is
# not charged to the next); stdout -> $OUT/NAME.out, stderr -> $OUT/NAME.err, time report ->
# $OUT/NAME.time; a line NAME WALL CPU RSS LOADAVG appended to $OUT/measurements.tsv. Sets WALL
# and CPU (user+sys, seconds), RSS (MiB) and LOAD (1-minute load average before the run). A failure aborts the run.
measure() {
  local name=$1; shift
  sync
  LOAD=$(cut -d' ' -f1 /proc/loadavg)
  if ! /usr/bin/time -v -o "$OUT/$name.time" "$@" >"$OUT/$name.out" 2>"$OUT/$name.err"; then
    echo "bench: $name failed: $*" >&2; tail -20 "$OUT/$name.err" >&2; exit 1
  fi
  WALL=$(awk -F': ' '/Elapsed \(wall clock\)/ { n=split($2, p, ":"); s=0; for (i=1; i<=n; i++) s=s*60+p[i]; printf "%.2f", s }' "$OUT/$name.time")
  CPU=$(awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.2f", s }' "$OUT/$name.time")
  RSS=$(awk -F': ' '/Maximum resident set size/ { printf "%.0f", $2/1024 }' "$OUT/$name.time")
  printf '  %-28s %8s s wall %8s s cpu %6s MiB   (load average before: %s)\n' "$name" "$WALL" "$CPU" "$RSS" "$LOAD" >&2
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$WALL" "$CPU" "$RSS" "$LOAD" >>"$OUT/measurements.tsv"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b+0 == 0) print "n/a"; else printf "%.2f", a/b }'; }
# verdict RATIO MAX : "yes" when RATIO <= MAX
verdict() { awk -v r="$1" -v m="$2" 'BEGIN { if (r == "n/a") print "n/a"; else if (r+0 <= m+0) print "yes"; else print "NO" }'; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b/1048576 }'; }
dub() { du -sb "$1" | cut -f1; }

# freshfs DIR SIZE_GIB : makes DIR a just-created, journaled ext4 filesystem (a loop-mounted sparse
# image in $SV/fs-images), as a restore onto a new server's disk sees it. Restoring into a
# directory of this VM's journal-less root filesystem right after `rm -rf` of an earlier restore
# charges ~270 µs of kernel time per created file (see bench/README "A measurement trap"), so each
# restore gets its own fresh filesystem: the same conditions for every tool and every round.
# Needs root, losetup and mkfs.ext4; without them DIR stays a plain directory (and a warning says so).
# The inode tables are initialised up front (no lazy init thread running during the measurement).
freshfs() {
  local dir=$1 size=${2:-4} img
  if mountpoint -q "$dir" 2>/dev/null; then umount "$dir"; fi
  rm -rf "$dir"; mkdir -p "$dir"
  if [ "$(id -u)" != 0 ] || ! command -v mkfs.ext4 >/dev/null; then
    echo "bench: not root or no mkfs.ext4: $dir is a plain directory (restore rows may pay the rm -rf penalty)" >&2
    return 0
  fi
  mkdir -p "$SV/fs-images"; img="$SV/fs-images/$(basename "$dir").img"
  rm -f "$img"; truncate -s "${size}G" "$img"
  mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$img"
  mount -o loop "$img" "$dir"
  FRESHFS_MOUNTS="${FRESHFS_MOUNTS:-} $dir"
}
# freshfs_cleanup : unmounts what freshfs mounted (call from an EXIT trap)
freshfs_cleanup() {
  local d
  for d in ${FRESHFS_MOUNTS:-} $(findmnt -rn -o TARGET | grep "^$SV/" || true); do mountpoint -q "$d" 2>/dev/null && umount "$d" || true; done
  rm -rf "$SV/fs-images"
}

# Helpers of the scripts that measure in rounds (files.sh, sftp.sh). They expect `declare -A V` and
# ROUNDS, RND (the current round), CFILES/CSIZE (the corpus' file count and bytes) in the caller.
# run STEP CMD : measure CMD as STEP of round RND into V[T|U|M.STEP.RND] (wall, cpu, max RSS)
run() { measure "$1.$RND" bash -c "$2"; V[T.$1.$RND]=$WALL; V[U.$1.$RND]=$CPU; V[M.$1.$RND]=$RSS; }
# the restored tree must hold the corpus' regular files and bytes (a cheap sanity check, not a diff)
checktree() {
  local n s
  n=$(find "$1" -type f | wc -l); s=$(find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { print s+0 }')
  [ "$n" = "$CFILES" ] && [ "$s" = "$CSIZE" ] || { echo "bench: $1 has $n files / $s bytes, corpus $CFILES / $CSIZE" >&2; exit 1; }
  rm -rf "$1"; sync
}
med() { # med METRIC STEP : median over rounds (empty when never measured)
  local r v=""
  for r in $(seq 1 "$ROUNDS"); do [ -n "${V[$1.$2.$r]:-}" ] && v="$v ${V[$1.$2.$r]}"; done
  [ -z "$v" ] && return 0
  echo $v | tr ' ' '\n' | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR+1)/2]; else printf "%.10g\n", (a[NR/2] + a[NR/2+1]) / 2 }'
}
line() { # op sv restic target(max ratio) unit [sv-cpu restic-cpu]
  local r a b rc=""
  r=$(ratio "$2" "$3"); a="${2:+$2 $5}"; b="${3:+$3 $5}"
  if [ -n "${6:-}" ] && [ -n "$a" ]; then a="$a (cpu $6)"; rc=" (cpu $(ratio "$6" "${7:-}"))"; fi
  [ -n "${7:-}" ] && b="$b (cpu $7)"
  printf '| %s | %s | %s | %s%s | ≤ %s | %s |\n' "$1" "${a:-n/a}" "${b:-n/a}" "$r" "$rc" "$4" "$(verdict "$r" "$4")"
}
tline() { line "$1" "$(med T "$2")" "$(med T "$3")" "$4" s "$(med U "$2")" "$(med U "$3")"; }
