#!/usr/bin/env bash
# Usage: bench/sftp.sh [SCALE=0.25] [ROUNDS=1]   (issue 3: SFTP backup/restore, shopvault vs restic's sftp backend)
#
# Generates the shared PrestaShop-like corpus ($SV/sftp/corpus; SCALE 0.25 ~ 0.5 GB, 25k files), starts
# the shared loopback OpenSSH "storage box" (../shared/bench/sshd.sh, 127.0.0.1, internal-sftp) and a
# userspace delay relay in front of it (bench/sftp-delay: +10 ms each way = 20 ms RTT; the kernel here
# has no sch_netem, and it keeps every address on 127.0.0.1). Then, on each link (loopback, 20 ms RTT),
# each tool into a fresh repository on the box:
#   1. init + first backup over SFTP (both commands timed together)
#   2. full restore of that snapshot over SFTP into an empty local directory: restic restore and
#      restic restore --verify; shopvault restore --no-verify (like the first) and shopvault restore
#      (re-reads every restored file, like the second)
# Every step runs once per round under /usr/bin/time -v after a sync; which tool goes first alternates
# from step to step and round to round; with ROUNDS > 1 the table shows medians. Both tools run with
# their defaults: shopvault 4 SSH connections (pure Go x/crypto, AES-GCM), restic one `ssh -s sftp`
# process (OpenSSH client, its default cipher). Restored trees are checked for the corpus' file count
# and byte total. Prints a markdown table (also $SV/sftp/out/table.md); raw outputs next to it.
# PROFILE=1 (default) then profiles shopvault (CPU, go tool pprof) over the loopback link: a first
# backup and a --no-verify restore, untimed, into $SV/sftp/out/prof-*.txt.
# Env: SV (scratch, default /tmp/svsftp), SHARED, KEEP=1 keeps repos, PROFILE=0 skips the profile,
#      SV_FLAGS extra shopvault flags for every SFTP command (e.g. "--connections 8").
export SV="${SV:-/tmp/svsftp}"
. "$(dirname "$0")/lib.sh"
SCALE="${1:-0.25}"; ROUNDS="${2:-1}"; PROFILE="${PROFILE:-1}"
need restic /usr/bin/time git go ssh ssh-keygen
[ -x /usr/sbin/sshd ] || { echo "bench: /usr/sbin/sshd not found (apt-get install -y openssh-server)" >&2; exit 2; }
W="$SV/sftp"; OUT="$W/out"; C="$W/corpus"; BOX="$SV/box/sftpbench"
rm -rf "$W" "$BOX"; mkdir -p "$W" "$OUT" "$W/keys" "$BOX"
build_shopvault
(cd "$ROOT" && go build -o "$SV/bin/sftp-delay" ./bench/sftp-delay)

# ---- servers: the shared loopback sshd (stopped at the end only if we started it) + the delay relay
S="$SV/sshd"
SSHD_WAS_UP=0
[ -f "$S/pid" ] && kill -0 "$(cat "$S/pid")" 2>/dev/null && SSHD_WAS_UP=1
PORT=$("$SHARED/sshd.sh" start)
"$SV/bin/sftp-delay" -target "127.0.0.1:$PORT" -delay 10ms >"$W/delay.addr" 2>"$W/delay.err" &
DELAY_PID=$!
cleanup() {
  kill "$DELAY_PID" 2>/dev/null || true
  [ "$SSHD_WAS_UP" = 1 ] || "$SHARED/sshd.sh" stop >/dev/null || true
  freshfs_cleanup
  [ "${KEEP:-0}" = 1 ] || rm -rf "$BOX" "$W"/sv-cache-* "$W"/restic-cache "$W"/r-*
}
trap cleanup EXIT
for i in $(seq 1 50); do [ -s "$W/delay.addr" ] && break; sleep 0.1; done
DPORT=$(sed -n 's/^127\.0\.0\.1:\([0-9]*\)$/\1/p' "$W/delay.addr")
[ -n "$DPORT" ] || { echo "bench: sftp-delay did not start: $(cat "$W/delay.err")" >&2; exit 1; }
# shopvault checks host keys against known_hosts (no InsecureIgnoreHostKey): record the box's key
# for both ports; restic's ssh gets an ssh_config with one Host per link.
HOSTKEY=$(cut -d' ' -f1-2 "$S/host_key.pub")
printf '[127.0.0.1]:%s %s\n[127.0.0.1]:%s %s\n' "$PORT" "$HOSTKEY" "$DPORT" "$HOSTKEY" >"$W/known_hosts"
sed 's/^Host box$/Host box-loop/' "$S/ssh_config" >"$W/ssh_config"
sed -e 's/^Host box$/Host box-rtt20/' -e "s/^  Port .*/  Port $DPORT/" "$S/ssh_config" >>"$W/ssh_config"
timeout 10 ssh -F "$W/ssh_config" box-rtt20 true || { echo "bench: ssh through the delay relay failed" >&2; exit 1; }
ping_ms() { # median wall ms of a trivial ssh session through NET (connection setup = several RTTs)
  local i t
  for i in 1 2 3; do
    t=$( { /usr/bin/time -f %e ssh -F "$W/ssh_config" "box-$1" true; } 2>&1 )
    echo "$t"
  done | sort -g | sed -n 2p
}
SSH_LOOP=$(ping_ms loop); SSH_RTT20=$(ping_ms rtt20)

# ---- the tools. NET is loop or rtt20.
svurl() { case "$1" in loop) echo "sftp://root@127.0.0.1:$PORT$BOX/sv-$1" ;; rtt20) echo "sftp://root@127.0.0.1:$DPORT$BOX/sv-$1" ;; esac; }
svx() { local net=$1 cmd=$2; shift 2
  # shellcheck disable=SC2086
  "$SVB" "$cmd" --repo "$(svurl "$net")" --known-hosts "$W/known_hosts" --ssh-key "$S/client_key" ${SV_FLAGS:-} "$@"; }
sv_first() { svx "$1" init --host-key "$W/keys/host-$1" --restore-key "$W/keys/restore-$1" &&
  svx "$1" backup --host-key "$W/keys/host-$1" --cache-dir "$W/sv-cache-$1" --no-default-excludes --json "$C"; }
sv_restore() { local net=$1; shift; svx "$net" restore --restore-key "$W/keys/restore-$net" latest --target "$W/r-sv/t" "$@"; }
export RESTIC_PASSWORD_FILE="$W/restic-pass" RESTIC_CACHE_DIR="$W/restic-cache"
echo "bench-password-$$" >"$RESTIC_PASSWORD_FILE"
rx() { local net=$1; shift; restic -r "sftp:box-$net:$BOX/restic-$net" -o sftp.command="ssh -F $W/ssh_config box-$net -s sftp" "$@"; }
restic_first() { rx "$1" init && rx "$1" backup --json --quiet "$C"; }
restic_restore() { local net=$1; shift; rx "$net" restore latest --target "$W/r-restic/t" "$@"; }
export -f svurl svx sv_first sv_restore rx restic_first restic_restore
export SVB W S C BOX PORT DPORT

declare -A V   # V[metric.step.round]: T wall s, U cpu s, M max RSS MiB, G repository bytes
FLIP=0
first_sv() { FLIP=$(( 1 - FLIP )); [ "$FLIP" = 1 ]; }   # alternates from call to call

for RND in $(seq 1 "$ROUNDS"); do
  [ $(( RND % 2 )) = 0 ] && FLIP=1 || FLIP=0   # even rounds start with restic
  freshfs_cleanup; rm -rf "$C" "$BOX"/* "$W"/sv-cache-* "$W/restic-cache" "$W"/r-* "$W"/keys/*
  echo "== round $RND/$ROUNDS: corpus (scale $SCALE) in $C; sshd 127.0.0.1:$PORT, relay :$DPORT" >&2
  "$SHARED/corpus.sh" "$C" "$SCALE" >&2
  CFILES=$(find "$C" -type f | wc -l); CSIZE=$(find "$C" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
  for NET in loop rtt20; do
    echo "== $NET: init + first backup" >&2
    if first_sv; then run "sv_first_$NET" "sv_first $NET"; run "restic_first_$NET" "restic_first $NET"
    else run "restic_first_$NET" "restic_first $NET"; run "sv_first_$NET" "sv_first $NET"; fi
    V[G.sv_size_$NET.$RND]=$(dub "$BOX/sv-$NET"); V[G.restic_size_$NET.$RND]=$(dub "$BOX/restic-$NET")
    echo "== $NET: full restore" >&2
    # each restore onto a just-made journaled ext4 (freshfs in lib.sh)
    svr() { freshfs "$W/r-sv"; run "sv_restore_nv_$NET" "sv_restore $NET --no-verify"; checktree "$W/r-sv/t"
      freshfs "$W/r-sv"; run "sv_restore_$NET" "sv_restore $NET"; checktree "$W/r-sv/t"; }
    rr() { freshfs "$W/r-restic"; run "restic_restore_$NET" "restic_restore $NET"; checktree "$W/r-restic/t"
      freshfs "$W/r-restic"; run "restic_restore_v_$NET" "restic_restore $NET --verify"; checktree "$W/r-restic/t"; }
    if first_sv; then svr; rr; else rr; svr; fi
  done
done

# ---- profile (untimed): where shopvault spends CPU over SFTP
if [ "$PROFILE" = 1 ]; then
  echo "== profile: shopvault first backup and --no-verify restore over loopback SFTP (pprof)" >&2
  P="$W/prof"; mkdir -p "$P"
  # the same overlay trick as bench/profile.sh: wrap run() in a CPU profile without touching product code
  sed 's/code := run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)/code := benchProfiled(func() int { return run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr) })/' \
    "$ROOT/cmd/shopvault/main.go" >"$P/main.go"
  if grep -q benchProfiled "$P/main.go"; then
    cat >"$P/bench_pprof.go" <<'EOF'
package main

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// benchProfiled runs f under a CPU profile written to SHOPVAULT_CPUPROFILE (bench only, injected
// by bench/sftp.sh with go build -overlay).
func benchProfiled(f func() int) int {
	if p := os.Getenv("SHOPVAULT_CPUPROFILE"); p != "" {
		out, err := os.Create(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, "cpuprofile:", err)
			return 1
		}
		defer out.Close()
		if err := pprof.StartCPUProfile(out); err != nil {
			fmt.Fprintln(os.Stderr, "cpuprofile:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	return f()
}
EOF
    printf '{"Replace":{"%s":"%s","%s":"%s"}}\n' "$ROOT/cmd/shopvault/main.go" "$P/main.go" \
      "$ROOT/cmd/shopvault/bench_pprof.go" "$P/bench_pprof.go" >"$P/overlay.json"
    (cd "$ROOT" && go build -overlay "$P/overlay.json" -o "$SV/bin/shopvault-prof" ./cmd/shopvault)
    export SVB="$SV/bin/shopvault-prof"
    SHOPVAULT_CPUPROFILE="$P/backup.pprof" bash -c "rm -rf '$W/sv-cache-loop' '$W'/keys/*-loop '$BOX/sv-loop' && sv_first loop" >"$OUT/prof-backup.out" 2>&1
    SHOPVAULT_CPUPROFILE="$P/restore.pprof" bash -c "sv_restore loop --no-verify" >"$OUT/prof-restore.out" 2>&1
    freshfs_cleanup; rm -rf "$W/r-sv"
    for k in backup restore; do
      { echo "== $k: flat"; go tool pprof -top -nodecount=25 "$SVB" "$P/$k.pprof" 2>/dev/null
        echo "== $k: cumulative"; go tool pprof -top -cum -nodecount=40 "$SVB" "$P/$k.pprof" 2>/dev/null; } >"$OUT/prof-$k.txt"
    done
    echo "   pprof tops in $OUT/prof-backup.txt and $OUT/prof-restore.txt" >&2
  else
    echo "   cmd/shopvault/main.go changed shape; profile skipped" >&2
  fi
fi

# ---- table ----
info() { echo "| $1 | $2 | $3 | $(ratio "${4:-}" "${5:-}") | (info) | |"; }
{
  echo "sftp.sh scale $SCALE, $ROUNDS round(s)$( [ "$ROUNDS" -gt 1 ] && echo ', medians'): corpus $CFILES files, $(mib "$CSIZE") MiB; $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) × $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem:/ {print $2}') GiB RAM; $(restic version | cut -d' ' -f1-2), $(ssh -V 2>&1 | cut -d, -f1); shopvault $(git -C "$ROOT" rev-parse --short HEAD)${SV_FLAGS:+ with $SV_FLAGS}; \`ssh box true\` median ${SSH_LOOP} s loopback, ${SSH_RTT20} s at 20 ms RTT"
  echo
  echo "| operation over SFTP | shopvault | restic | ratio shopvault/restic | target | met |"
  echo "|---|---|---|---|---|---|"
  for NET in loop rtt20; do
    [ "$NET" = loop ] && L="loopback" || L="20 ms RTT"
    tline "$L: init + first backup, wall" "sv_first_$NET" "restic_first_$NET" 0.5
    tline "$L: full restore --no-verify, wall" "sv_restore_nv_$NET" "restic_restore_$NET" 0.4
    tline "$L: full restore (verified) vs restic restore --verify, wall" "sv_restore_$NET" "restic_restore_v_$NET" 0.4
  done
  for NET in loop rtt20; do
    [ "$NET" = loop ] && L="loopback" || L="20 ms RTT"
    info "$L: full restore (verified) vs restic restore (verifies nothing), wall" "$(med T "sv_restore_$NET") s" "$(med T "restic_restore_$NET") s" "$(med T "sv_restore_$NET")" "$(med T "restic_restore_$NET")"
  done
  for NET in loop rtt20; do
    [ "$NET" = loop ] && L="loopback" || L="20 ms RTT"
    info "$L: peak RSS backup / restore (verified)" "$(med M "sv_first_$NET") / $(med M "sv_restore_$NET") MiB" "$(med M "restic_first_$NET") / $(med M "restic_restore_$NET") MiB"
  done
  info "repository size after first backup" "$(mib "$(med G sv_size_loop)") MiB" "$(mib "$(med G restic_size_loop)") MiB" "$(med G sv_size_loop)" "$(med G restic_size_loop)"
  echo
  echo "Wall time is the measure; cpu = user+sys seconds of the client (restic's includes its ssh child; sshd's CPU is in neither). 1-minute load average before each step: $(awk -F'\t' '{ printf "%s%s %s", (NR>1 ? ", " : ""), $1, $5 }' "$OUT/measurements.tsv")."
} | tee "$OUT/table.md"
