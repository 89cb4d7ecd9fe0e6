package schedule

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

func at(s string) time.Time {
	t, err := time.Parse("2006-01-02 15:04:05", s)
	if err != nil {
		panic(err)
	}
	return t
}

// snap is a trusted snapshot: stored five minutes after its time.
func snap(id, ts string, tags ...string) Snapshot {
	t := at(ts)
	return Snapshot{ID: id, Time: t, StoredTime: t.Add(5 * time.Minute), Host: "shop", Tags: tags}
}

func ids(ds []Decision) []string {
	out := []string{}
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}

func reasonsOf(ds []Decision, id string) []string {
	for _, d := range ds {
		if d.ID == id {
			return d.Reasons
		}
	}
	return nil
}

// TestResticDocumentedExample reproduces the example of restic's manual
// ("Removing snapshots according to a policy"): one backup every Sunday for
// 12 weeks, then `forget --keep-daily 4` keeps the last four.
func TestResticDocumentedExample(t *testing.T) {
	snaps := []Snapshot{
		snap("0a1f9759", "2019-09-01 11:00:00"), snap("46cfe4d5", "2019-09-08 11:00:00"),
		snap("f6b1f037", "2019-09-15 11:00:00"), snap("eb430a5d", "2019-09-22 11:00:00"),
		snap("8cf1cb9a", "2019-09-29 11:00:00"), snap("5d33b116", "2019-10-06 11:00:00"),
		snap("b9553125", "2019-10-13 11:00:00"), snap("e1a7b58b", "2019-10-20 11:00:00"),
		snap("8f8018c0", "2019-10-27 11:00:00"), snap("59403279", "2019-11-03 11:00:00"),
		snap("dfee9fb4", "2019-11-10 11:00:00"), snap("e1ae2f40", "2019-11-17 11:00:00"),
	}
	keep, remove := ApplyPolicy(snaps, Policy{Daily: 4}, at("2019-11-18 00:00:00"))
	if got, want := ids(keep), []string{"e1ae2f40", "dfee9fb4", "59403279", "8f8018c0"}; !reflect.DeepEqual(got, want) {
		t.Errorf("keep %v, want %v", got, want)
	}
	if got, want := ids(remove), []string{"e1a7b58b", "b9553125", "5d33b116", "8cf1cb9a", "eb430a5d", "f6b1f037", "46cfe4d5", "0a1f9759"}; !reflect.DeepEqual(got, want) {
		t.Errorf("remove %v, want %v", got, want)
	}
	for _, d := range keep {
		if !reflect.DeepEqual(d.Reasons, []string{"daily snapshot"}) {
			t.Errorf("%s reasons %q, want [daily snapshot]", d.ID, d.Reasons)
		}
	}
}

// TestResticHundredYears is the manual's second example: a backup every day
// for 100 years and --keep-daily 7 --keep-weekly 5 --keep-monthly 12
// --keep-yearly 75 keep 7 dailies, 4 more weeklies, 12 or 11 monthlies and
// 75 or 74 yearlies. Ending on Sunday 2023-12-31 makes the newest snapshot
// the daily, weekly, monthly and yearly one at once, so exactly 7+4+11+74.
func TestResticHundredYears(t *testing.T) {
	end := at("2023-12-31 03:00:00")
	var snaps []Snapshot
	for d := end; d.Year() > 1923; d = d.AddDate(0, 0, -1) {
		snaps = append(snaps, Snapshot{ID: d.Format("2006-01-02"), Time: d, StoredTime: d, Host: "shop"})
	}
	keep, remove := ApplyPolicy(snaps, Policy{Daily: 7, Weekly: 5, Monthly: 12, Yearly: 75}, end.Add(time.Hour))
	want := map[string]string{}
	for d := 25; d <= 31; d++ {
		want[fmt.Sprintf("2023-12-%02d", d)] = "daily snapshot"
	}
	for _, d := range []string{"2023-12-24", "2023-12-17", "2023-12-10", "2023-12-03"} { // Sundays
		want[d] = "weekly snapshot"
	}
	for m := time.January; m <= time.November; m++ {
		last := time.Date(2023, m+1, 0, 0, 0, 0, 0, time.UTC)
		want[last.Format("2006-01-02")] = "monthly snapshot"
	}
	for y := 2022; y >= 1949; y-- {
		want[fmt.Sprintf("%d-12-31", y)] = "yearly snapshot"
	}
	if len(want) != 7+4+11+74 {
		t.Fatalf("test expectation has %d entries", len(want))
	}
	if len(keep) != len(want) || len(keep)+len(remove) != len(snaps) {
		t.Errorf("kept %d, removed %d of %d; want %d kept", len(keep), len(remove), len(snaps), len(want))
	}
	for _, d := range keep {
		r, ok := want[d.ID]
		if !ok {
			t.Errorf("kept %s (%v), not expected", d.ID, d.Reasons)
			continue
		}
		if !contains(d.Reasons, r) {
			t.Errorf("%s kept for %q, want %q among them", d.ID, d.Reasons, r)
		}
	}
	if got := reasonsOf(keep, "2023-12-31"); !reflect.DeepEqual(got, []string{"daily snapshot", "weekly snapshot", "monthly snapshot", "yearly snapshot"}) {
		t.Errorf("newest snapshot reasons %q", got)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestPolicyTable(t *testing.T) {
	now := at("2024-06-30 12:00:00")
	five := []Snapshot{
		snap("a", "2024-06-01 12:00:00"), snap("b", "2024-06-02 12:00:00"), snap("c", "2024-06-03 12:00:00"),
		snap("d", "2024-06-04 12:00:00"), snap("e", "2024-06-05 12:00:00"),
	}
	for _, tc := range []struct {
		name    string
		snaps   []Snapshot
		policy  Policy
		keep    []string
		reasons map[string][]string
	}{
		{name: "keep-last", snaps: five, policy: Policy{Last: 3}, keep: []string{"e", "d", "c"},
			reasons: map[string][]string{"c": {"last snapshot"}}},
		{name: "keep-last more than there are", snaps: five, policy: Policy{Last: 9}, keep: []string{"e", "d", "c", "b", "a"}},
		{name: "oldest kept while daily count is left",
			snaps:  []Snapshot{snap("d2", "2024-06-02 03:00:00"), snap("d1b", "2024-06-01 15:00:00"), snap("d1a", "2024-06-01 03:00:00")},
			policy: Policy{Daily: 5}, keep: []string{"d2", "d1b", "d1a"},
			reasons: map[string][]string{"d1b": {"daily snapshot"}, "d1a": {"oldest daily snapshot"}}},
		{name: "oldest not kept when count is used up",
			snaps:  []Snapshot{snap("d2", "2024-06-02 03:00:00"), snap("d1b", "2024-06-01 15:00:00"), snap("d1a", "2024-06-01 03:00:00")},
			policy: Policy{Daily: 2}, keep: []string{"d2", "d1b"}},
		{name: "hourly",
			snaps:  []Snapshot{snap("h1", "2024-06-01 10:05:00"), snap("h2", "2024-06-01 10:40:00"), snap("h3", "2024-06-01 11:10:00"), snap("h4", "2024-06-01 12:00:00")},
			policy: Policy{Hourly: 2}, keep: []string{"h4", "h3"}},
		{name: "within is relative to the newest, strictly after", snaps: five, policy: Policy{Within: 48 * time.Hour},
			keep: []string{"e", "d"}, reasons: map[string][]string{"d": {"within 48h0m0s of the newest"}}},
		{name: "tags", policy: Policy{Last: 1, Tags: []string{"manual", "x,y", ""}},
			snaps: []Snapshot{snap("n", "2024-06-05 12:00:00", "nightly"), snap("m", "2024-06-04 12:00:00", "manual"),
				snap("xy", "2024-06-03 12:00:00", "y", "x"), snap("xonly", "2024-06-02 12:00:00", "x"), snap("untagged", "2024-06-01 12:00:00")},
			keep:    []string{"n", "m", "xy", "untagged"},
			reasons: map[string][]string{"m": {`has tags "manual"`}, "xy": {`has tags "x,y"`}, "untagged": {`has tags ""`}}},
		{name: "empty policy keeps all", snaps: five, policy: Policy{}, keep: []string{"e", "d", "c", "b", "a"},
			reasons: map[string][]string{"a": {"policy is empty"}}},
		{name: "ISO weeks: Sunday and Monday differ, Saturday and Sunday do not",
			snaps:  []Snapshot{snap("mon", "2024-01-01 03:00:00"), snap("sun", "2023-12-31 03:00:00"), snap("sat", "2023-12-30 03:00:00")},
			policy: Policy{Weekly: 2}, keep: []string{"mon", "sun"}},
		{name: "ISO week spans the new year",
			snaps:  []Snapshot{snap("fri", "2021-01-01 03:00:00"), snap("thu", "2020-12-31 03:00:00"), snap("wed", "2020-12-23 03:00:00")},
			policy: Policy{Weekly: 1}, keep: []string{"fri"}},
		{name: "monthly and yearly",
			snaps: []Snapshot{snap("jan24", "2024-01-15 03:00:00"), snap("dec23", "2023-12-20 03:00:00"), snap("dec23a", "2023-12-01 03:00:00"),
				snap("nov23", "2023-11-11 03:00:00"), snap("dec22", "2022-12-31 03:00:00")},
			policy: Policy{Monthly: 2, Yearly: 3}, keep: []string{"jan24", "dec23", "dec22"},
			reasons: map[string][]string{"jan24": {"monthly snapshot", "yearly snapshot"}, "dec23": {"monthly snapshot", "yearly snapshot"}, "dec22": {"yearly snapshot"}}},
		{name: "hosts are separate groups", policy: Policy{Last: 1},
			snaps: []Snapshot{snap("a1", "2024-06-01 12:00:00"), snap("a2", "2024-06-02 12:00:00"),
				{ID: "b1", Time: at("2024-05-01 12:00:00"), StoredTime: at("2024-05-01 12:00:00"), Host: "other"},
				{ID: "b2", Time: at("2024-04-01 12:00:00"), StoredTime: at("2024-04-01 12:00:00"), Host: "other"}},
			keep: []string{"a2", "b1"}},
		{name: "a small clock error is trusted",
			snaps:  []Snapshot{{ID: "fast", Time: at("2024-06-05 12:00:00"), StoredTime: at("2024-06-05 10:00:00"), Host: "shop"}, snap("prev", "2024-06-05 08:00:00")},
			policy: Policy{Daily: 1}, keep: []string{"fast"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keep, remove := ApplyPolicy(tc.snaps, tc.policy, now)
			if got := ids(keep); !reflect.DeepEqual(got, tc.keep) {
				t.Errorf("keep %v, want %v", got, tc.keep)
			}
			if len(keep)+len(remove) != len(tc.snaps) {
				t.Errorf("%d kept + %d removed != %d snapshots", len(keep), len(remove), len(tc.snaps))
			}
			for _, d := range remove {
				if len(d.Reasons) != 0 {
					t.Errorf("removed %s has reasons %q", d.ID, d.Reasons)
				}
			}
			for id, want := range tc.reasons {
				if got := reasonsOf(keep, id); !reflect.DeepEqual(got, want) {
					t.Errorf("%s reasons %q, want %q", id, got, want)
				}
			}
		})
	}
}

// TestForgedSnapshotsCannotDisplaceRealOnes plants snapshots the way a
// compromised host would (restic's "security considerations in append-only
// mode"): future-dated ones and one back-dated into a real day. With
// keep-daily 3 restic would keep only the forged ones; here the three real
// nightlies stay and the forged ones are kept and reported.
func TestForgedSnapshotsCannotDisplaceRealOnes(t *testing.T) {
	now := at("2024-06-11 09:00:00")
	var snaps []Snapshot
	for d := 1; d <= 10; d++ {
		snaps = append(snaps, snap(fmt.Sprintf("real%02d", d), fmt.Sprintf("2024-06-%02d 03:00:00", d)))
	}
	snaps = append(snaps,
		Snapshot{ID: "future1", Time: now.AddDate(0, 0, 30), StoredTime: now, Host: "shop"},
		Snapshot{ID: "future2", Time: now.AddDate(0, 0, 31), StoredTime: now, Host: "shop"},
		Snapshot{ID: "future-nostat", Time: now.AddDate(0, 1, 0), Host: "shop"},
		// Claims the evening of the 9th but was stored a day after now: it
		// would win the day bucket of the 9th from real09.
		Snapshot{ID: "backdated", Time: at("2024-06-09 23:00:00"), StoredTime: now.Add(24 * time.Hour), Host: "shop"},
	)
	keep, remove := ApplyPolicy(snaps, Policy{Daily: 3}, now)
	kept := ids(keep)
	sort.Strings(kept)
	want := []string{"backdated", "future-nostat", "future1", "future2", "real08", "real09", "real10"}
	if !reflect.DeepEqual(kept, want) {
		t.Errorf("kept %v, want %v", kept, want)
	}
	if len(remove) != 7 {
		t.Errorf("removed %v, want real01..real07", ids(remove))
	}
	for _, id := range []string{"future1", "future2", "backdated"} {
		r := reasonsOf(keep, id)
		if len(r) != 1 || !strings.Contains(r[0], "claimed time differs from storage time") {
			t.Errorf("%s reasons %q", id, r)
		}
	}
	if r := reasonsOf(keep, "future-nostat"); len(r) != 1 || !strings.Contains(r[0], "in the future") {
		t.Errorf("future-nostat reasons %q", r)
	}
	// keep-within counts from the newest trusted snapshot, not a forged one.
	keep, _ = ApplyPolicy(snaps, Policy{Within: 36 * time.Hour}, now)
	if !contains(ids(keep), "real09") || contains(ids(keep), "real08") {
		t.Errorf("within 36h kept %v; want real10 and real09 among the real ones", ids(keep))
	}
}

func TestMinVerified(t *testing.T) {
	var snaps []Snapshot
	for d := 1; d <= 5; d++ {
		s := snap(fmt.Sprintf("s%d", d), fmt.Sprintf("2024-06-%02d 03:00:00", d))
		s.Verified = d == 1 || d == 2 || d == 4
		snaps = append(snaps, s)
	}
	keep, _ := ApplyPolicy(snaps, Policy{Last: 1, MinVerified: 2}, at("2024-06-06 00:00:00"))
	if got, want := ids(keep), []string{"s5", "s4", "s2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("keep %v, want %v", got, want)
	}
	if r := reasonsOf(keep, "s2"); len(r) != 1 || !strings.Contains(r[0], "verified") {
		t.Errorf("s2 reasons %q", r)
	}
	// MinVerified alone is not a policy: everything is kept.
	keep, remove := ApplyPolicy(snaps, Policy{MinVerified: 1}, at("2024-06-06 00:00:00"))
	if len(keep) != 5 || len(remove) != 0 {
		t.Errorf("MinVerified alone: kept %v removed %v", ids(keep), ids(remove))
	}
}

func TestPolicyString(t *testing.T) {
	got := Policy{Daily: 7, Weekly: 4, Within: 48 * time.Hour, MinVerified: 1}.String()
	for _, want := range []string{"7 daily", "4 weekly", "within 48h0m0s", "1 newest verified"} {
		if !strings.Contains(got, want) {
			t.Errorf("String() = %q, lacks %q", got, want)
		}
	}
}
