// Package schedule holds what makes shopvault run unattended: the retention
// policy that decides which snapshots forget removes, the systemd units
// that run it, and its monitoring outputs (JSON summary, Prometheus
// textfile, pings, state file, Nagios check).
//
// Nothing here prints or reads the clock: times are passed in.
package schedule

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// DefaultMaxSkew is how far a snapshot's claimed time may be from the time
// the storage recorded for its file before the snapshot is distrusted.
const DefaultMaxSkew = 24 * time.Hour

// Policy says which snapshots to keep. Its semantics are restic's
// (`restic forget --keep-*`):
//
//   - Last keeps the N newest snapshots; Hourly, Daily, Weekly, Monthly and
//     Yearly keep the newest snapshot of each of the N newest hours, days,
//     ISO weeks (Monday to Sunday), months and years that have snapshots.
//     Buckets use the location of each snapshot's Time.
//   - While a bucket kind still has count left when the oldest snapshot is
//     reached, the oldest snapshot is kept too ("oldest daily snapshot"), so
//     a young repository keeps its whole history.
//   - Within keeps every snapshot newer than the newest snapshot (not now)
//     minus Within. Unlike restic, Within is a fixed duration ("30d"), not
//     calendar years and months.
//   - Tags keeps every snapshot that has all tags of one entry; an entry is
//     one tag or several separated by commas; the empty entry matches
//     untagged snapshots.
//   - A policy without any of the above keeps everything (restic's "policy
//     is empty"); MinVerified alone does not make a policy.
//
// Differences from restic, for safety (see ApplyPolicy): snapshots whose
// claimed time is not trustworthy are kept and take no part in the buckets;
// MinVerified keeps the N newest snapshots a drill has verified. Snapshots
// are grouped by Host only (restic groups by host and paths): a shopvault
// snapshot always holds all the sources configured for its host.
type Policy struct {
	Last, Hourly, Daily, Weekly, Monthly, Yearly int
	Within                                       time.Duration
	Tags                                         []string
	MinVerified                                  int
	// MaxSkew overrides DefaultMaxSkew when positive.
	MaxSkew time.Duration
}

// Empty reports whether the policy selects nothing by itself, in which case
// ApplyPolicy keeps every snapshot.
func (p Policy) Empty() bool {
	return p.Last <= 0 && p.Hourly <= 0 && p.Daily <= 0 && p.Weekly <= 0 && p.Monthly <= 0 &&
		p.Yearly <= 0 && p.Within <= 0 && len(p.Tags) == 0
}

// String describes the policy like restic's "Applying Policy:" line.
func (p Policy) String() string {
	var parts []string
	for _, c := range []struct {
		n    int
		name string
	}{{p.Last, "latest"}, {p.Hourly, "hourly"}, {p.Daily, "daily"}, {p.Weekly, "weekly"}, {p.Monthly, "monthly"}, {p.Yearly, "yearly"}} {
		if c.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c.n, c.name))
		}
	}
	s := ""
	if len(parts) > 0 {
		s = "the last " + strings.Join(parts, ", ") + " snapshots"
	}
	add := func(t string) {
		if s != "" {
			s += " and "
		}
		s += t
	}
	if p.Within > 0 {
		add(fmt.Sprintf("all snapshots within %s of the newest", p.Within))
	}
	if len(p.Tags) > 0 {
		add(fmt.Sprintf("all snapshots with tags %q", p.Tags))
	}
	if p.MinVerified > 0 {
		add(fmt.Sprintf("the %d newest verified snapshots", p.MinVerified))
	}
	if p.Empty() {
		return "keep all snapshots (empty policy)"
	}
	return "keep " + s
}

// Snapshot is what the policy needs to know about a snapshot.
type Snapshot struct {
	ID string
	// Time is the time the snapshot claims (written by the host).
	Time time.Time
	// StoredTime is the storage's own modification time of the snapshot
	// file; zero if unknown.
	StoredTime time.Time
	Host       string
	Tags       []string
	// Verified is set when a drill restored and verified the snapshot.
	Verified bool
}

// Decision is a snapshot and why it is kept (Reasons is empty for removed
// snapshots).
type Decision struct {
	Snapshot
	Reasons []string
}

// ApplyPolicy splits snaps into those to keep and those to remove, each
// sorted newest first (by Time, then ID). now is the current time.
//
// Safety rules on top of restic's semantics:
//   - A snapshot whose Time differs from its StoredTime by more than the
//     skew (DefaultMaxSkew), or whose Time is more than the skew in the
//     future of now, is kept with a reason saying so, and does not take
//     part in the buckets, in Last, or in Within's "newest": a host that
//     plants snapshots with forged times cannot push real ones out.
//   - MinVerified keeps the N newest verified snapshots of each host.
func ApplyPolicy(snaps []Snapshot, p Policy, now time.Time) (keep, remove []Decision) {
	skew := p.MaxSkew
	if skew <= 0 {
		skew = DefaultMaxSkew
	}
	groups := map[string][]Snapshot{}
	var hosts []string
	for _, s := range snaps {
		if _, ok := groups[s.Host]; !ok {
			hosts = append(hosts, s.Host)
		}
		groups[s.Host] = append(groups[s.Host], s)
	}
	for _, h := range hosts {
		k, r := applyGroup(groups[h], p, now, skew)
		keep = append(keep, k...)
		remove = append(remove, r...)
	}
	sortDecisions(keep)
	sortDecisions(remove)
	return keep, remove
}

func sortDecisions(ds []Decision) {
	sort.SliceStable(ds, func(i, j int) bool { return newer(ds[i].Snapshot, ds[j].Snapshot) })
}

func newer(a, b Snapshot) bool {
	if !a.Time.Equal(b.Time) {
		return a.Time.After(b.Time)
	}
	return a.ID < b.ID
}

type bucket struct {
	count  int
	key    func(t time.Time, nr int) int
	last   int
	reason string
}

func applyGroup(list []Snapshot, p Policy, now time.Time, skew time.Duration) (keep, remove []Decision) {
	list = append([]Snapshot(nil), list...)
	sort.SliceStable(list, func(i, j int) bool { return newer(list[i], list[j]) })

	reasons := make([][]string, len(list))
	var trusted []int // indexes into list
	for i, s := range list {
		switch {
		case !s.StoredTime.IsZero() && absDur(s.Time.Sub(s.StoredTime)) > skew:
			reasons[i] = append(reasons[i], fmt.Sprintf("claimed time differs from storage time by %s (stored %s); check this host's clock or whether the snapshot was forged",
				roundDur(absDur(s.Time.Sub(s.StoredTime))), s.StoredTime.UTC().Format(time.RFC3339)))
		case s.Time.Sub(now) > skew:
			reasons[i] = append(reasons[i], fmt.Sprintf("dated %s in the future", roundDur(s.Time.Sub(now))))
		default:
			trusted = append(trusted, i)
		}
	}

	if p.Empty() {
		for _, i := range trusted {
			reasons[i] = append(reasons[i], "policy is empty")
		}
	} else {
		applyBuckets(list, trusted, reasons, p, now)
	}

	if p.MinVerified > 0 {
		n := 0
		for i, s := range list {
			if s.Verified && n < p.MinVerified {
				n++
				reasons[i] = append(reasons[i], fmt.Sprintf("verified by a drill (keep-min-verified %d)", p.MinVerified))
			}
		}
	}

	for i, s := range list {
		if len(reasons[i]) > 0 {
			keep = append(keep, Decision{Snapshot: s, Reasons: reasons[i]})
		} else {
			remove = append(remove, Decision{Snapshot: s})
		}
	}
	return keep, remove
}

func applyBuckets(list []Snapshot, trusted []int, reasons [][]string, p Policy, now time.Time) {
	buckets := []bucket{
		{p.Last, func(_ time.Time, nr int) int { return nr }, -1, "last snapshot"},
		{p.Hourly, func(t time.Time, _ int) int { return t.Year()*1000000 + int(t.Month())*10000 + t.Day()*100 + t.Hour() }, -1, "hourly snapshot"},
		{p.Daily, func(t time.Time, _ int) int { return t.Year()*10000 + int(t.Month())*100 + t.Day() }, -1, "daily snapshot"},
		{p.Weekly, func(t time.Time, _ int) int { y, w := t.ISOWeek(); return y*100 + w }, -1, "weekly snapshot"},
		{p.Monthly, func(t time.Time, _ int) int { return t.Year()*100 + int(t.Month()) }, -1, "monthly snapshot"},
		{p.Yearly, func(t time.Time, _ int) int { return t.Year() }, -1, "yearly snapshot"},
	}

	// Within counts from the newest trusted snapshot that is not in the
	// future (restic ignores future snapshots here as well).
	var latest time.Time
	for _, i := range trusted {
		if t := list[i].Time; !t.After(now) && t.After(latest) {
			latest = t
		}
	}

	for nr, i := range trusted {
		s := list[i]
		for _, entry := range p.Tags {
			if hasTags(s.Tags, entry) {
				reasons[i] = append(reasons[i], fmt.Sprintf("has tags %q", entry))
			}
		}
		if p.Within > 0 && !latest.IsZero() && s.Time.After(latest.Add(-p.Within)) {
			reasons[i] = append(reasons[i], fmt.Sprintf("within %s of the newest", p.Within))
		}
		oldest := nr == len(trusted)-1
		for b := range buckets {
			if buckets[b].count <= 0 {
				continue
			}
			v := buckets[b].key(s.Time, nr)
			switch {
			case v != buckets[b].last:
				reasons[i] = append(reasons[i], buckets[b].reason)
			case oldest:
				reasons[i] = append(reasons[i], "oldest "+buckets[b].reason)
			default:
				continue
			}
			buckets[b].last = v
			buckets[b].count--
		}
	}
}

// hasTags reports whether tags contains every tag of the comma-separated
// entry; the empty entry matches only untagged snapshots.
func hasTags(tags []string, entry string) bool {
	if entry == "" {
		return len(tags) == 0
	}
	for _, want := range strings.Split(entry, ",") {
		found := false
		for _, t := range tags {
			if t == want {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func roundDur(d time.Duration) time.Duration {
	if d > time.Hour {
		return d.Round(time.Minute)
	}
	return d.Round(time.Second)
}
