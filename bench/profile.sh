#!/usr/bin/env bash
# Usage: bench/profile.sh [SCALE=0.5]   CPU (and heap) profile of shopvault's first backup, of
# a second backup with nothing changed and of a full (verified) restore
#
# Builds a pprof-capable shopvault WITHOUT touching the product code: `go build -overlay` swaps
# cmd/shopvault/main.go for a copy whose run() is wrapped by a CPU profile (SHOPVAULT_CPUPROFILE)
# and a heap profile at exit (SHOPVAULT_MEMPROFILE). Uses the corpus in $SV/corpus when present
# (generates it otherwise; note mutate.sh may have changed it), backs it up into a fresh repository
# and prints `go tool pprof -top` (flat and cumulative). Profiles stay in $SV/profile.
. "$(dirname "$0")/lib.sh"
SCALE="${1:-0.5}"
P="$SV/profile"; C="$SV/corpus"
rm -rf "$P"; mkdir -p "$P/overlay"
sed 's/code := run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)/code := benchProfiled(func() int { return run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr) })/' \
  "$ROOT/cmd/shopvault/main.go" >"$P/overlay/main.go"
grep -q benchProfiled "$P/overlay/main.go" || { echo "profile.sh: cmd/shopvault/main.go changed shape; update the sed" >&2; exit 1; }
cat >"$P/overlay/bench_pprof.go" <<'EOF'
package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
)

// benchProfiled runs f under a CPU profile (SHOPVAULT_CPUPROFILE) and writes a heap profile at the
// end (SHOPVAULT_MEMPROFILE). Bench-only: injected with go build -overlay by bench/profile.sh.
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
	code := f()
	if p := os.Getenv("SHOPVAULT_MEMPROFILE"); p != "" {
		if out, err := os.Create(p); err == nil {
			runtime.GC()
			_ = pprof.Lookup("allocs").WriteTo(out, 0)
			out.Close()
		}
	}
	return code
}
EOF
printf '{"Replace":{"%s":"%s","%s":"%s"}}\n' \
  "$ROOT/cmd/shopvault/main.go" "$P/overlay/main.go" "$ROOT/cmd/shopvault/bench_pprof.go" "$P/overlay/bench_pprof.go" >"$P/overlay.json"
(cd "$ROOT" && go build -overlay "$P/overlay.json" -o "$SV/bin/shopvault-prof" ./cmd/shopvault)

[ -d "$C" ] || "$SHARED/corpus.sh" "$C" "$SCALE" >&2
"$SV/bin/shopvault-prof" init --repo "$P/repo" --host-key "$P/host.key" --restore-key "$P/restore.key" >/dev/null
sync
SHOPVAULT_CPUPROFILE="$P/cpu.pprof" SHOPVAULT_MEMPROFILE="$P/allocs.pprof" /usr/bin/time -v -o "$P/time.txt" \
  "$SV/bin/shopvault-prof" backup --repo "$P/repo" --host-key "$P/host.key" --cache-dir "$P/cache" \
  --no-default-excludes --json "$C" | tee "$P/summary.json"
grep -E 'Elapsed|Maximum resident|Percent of CPU' "$P/time.txt"
echo "== flat"; go tool pprof -top -nodecount=25 "$SV/bin/shopvault-prof" "$P/cpu.pprof" 2>/dev/null | tee "$P/top-flat.txt"
echo "== cumulative"; go tool pprof -top -cum -nodecount=40 "$SV/bin/shopvault-prof" "$P/cpu.pprof" 2>/dev/null | tee "$P/top-cum.txt"
echo "== allocations (alloc_space)"; go tool pprof -sample_index=alloc_space -top -nodecount=15 "$SV/bin/shopvault-prof" "$P/allocs.pprof" 2>/dev/null | tee "$P/top-alloc.txt"
echo "== second backup, nothing changed"
SHOPVAULT_CPUPROFILE="$P/cpu-nochange.pprof" /usr/bin/time -v -o "$P/time-nochange.txt" \
  "$SV/bin/shopvault-prof" backup --repo "$P/repo" --host-key "$P/host.key" --cache-dir "$P/cache" \
  --no-default-excludes --json "$C" | tee "$P/summary-nochange.json"
grep -E 'Elapsed|Maximum resident|Percent of CPU' "$P/time-nochange.txt"
go tool pprof -top -cum -nodecount=30 "$SV/bin/shopvault-prof" "$P/cpu-nochange.pprof" 2>/dev/null | tee "$P/top-nochange-cum.txt"
echo "== full restore (verified)"
SHOPVAULT_CPUPROFILE="$P/cpu-restore.pprof" /usr/bin/time -v -o "$P/time-restore.txt" \
  "$SV/bin/shopvault-prof" restore --repo "$P/repo" --restore-key "$P/restore.key" latest --target "$P/restored" >/dev/null
grep -E 'Elapsed|Maximum resident|Percent of CPU' "$P/time-restore.txt"
go tool pprof -top -nodecount=25 "$SV/bin/shopvault-prof" "$P/cpu-restore.pprof" 2>/dev/null | tee "$P/top-restore.txt"
go tool pprof -top -cum -nodecount=30 "$SV/bin/shopvault-prof" "$P/cpu-restore.pprof" 2>/dev/null | tee "$P/top-restore-cum.txt"
rm -rf "$P/repo" "$P/cache" "$P/restored"
