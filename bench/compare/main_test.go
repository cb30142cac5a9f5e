package main

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseInts(t *testing.T) {
	got, err := parseInts("--rates", " 500, 5000,500,", 1, 100000)
	if err != nil || !reflect.DeepEqual(got, []int{500, 5000}) {
		t.Errorf("parseInts = %v, %v", got, err)
	}
	if got, err := parseInts("--processes", "", 1, 64); err != nil || got != nil {
		t.Errorf("empty: %v, %v", got, err)
	}
	for _, bad := range []string{"0", "65", "x", "1,-2"} {
		if _, err := parseInts("--processes", bad, 1, 64); err == nil {
			t.Errorf("parseInts(%q): no error", bad)
		}
	}
}

func TestParseModes(t *testing.T) {
	got, err := parseModes("yardstick, latency,burn-down")
	if err != nil || !reflect.DeepEqual(got, []string{"burn-down", "latency", "yardstick"}) {
		t.Errorf("parseModes = %v, %v", got, err)
	}
	if got, _ := parseModes("all"); !reflect.DeepEqual(got, allModes) {
		t.Errorf("all = %v", got)
	}
	for _, bad := range []string{"", "soak", "burn-down,x"} {
		if _, err := parseModes(bad); err == nil {
			t.Errorf("parseModes(%q): no error", bad)
		}
	}
}

func TestSteps(t *testing.T) {
	o := options{n: 100, dur: time.Second, latFor: 2 * time.Second, rates: []int{500, 5000}, dispatchers: 8,
		processes: []int{1, 2}, runs: 1, modes: allModes}
	var titles []string
	for _, s := range steps(o) {
		titles = append(titles, s.title)
	}
	want := []string{"burn-down", "continuous", "after-burn-down", "latency at 500/s", "latency at 5000/s",
		"scale-out, 1 process(es)", "scale-out, 2 process(es)", "yardstick"}
	if !reflect.DeepEqual(titles, want) {
		t.Fatalf("steps = %v, want %v", titles, want)
	}
	st := steps(o)
	if got := strings.Join(st[4].tasq, " "); got != "--mode latency --latency-duration 2s --rate 5000 --latency-dispatchers 8" {
		t.Errorf("tasq latency args = %q", got)
	}
	if got := strings.Join(st[4].peer, " "); got != "--mode latency --duration 2s --rate 5000 --dispatchers 8" {
		t.Errorf("River latency args = %q", got)
	}
	if st[7].peer != nil {
		t.Error("yardstick runs the River peer")
	}
	// scale-out picks its own count's line out of several.
	got, err := st[6].pick([]result{{Mode: "scale-out", Processes: 1, JobsPerSec: 1}, {Mode: "scale-out", Processes: 2, JobsPerSec: 2}})
	if err != nil || got[scaleKey(2)].JobsPerSec != 2 {
		t.Errorf("scale-out pick = %v, %v", got, err)
	}
	if _, err := st[2].pick([]result{{Mode: "burn-down"}}); err == nil {
		t.Error("after-burn-down pick took a burn-down line")
	}
	ys, err := st[7].pick([]result{{Mode: "yardstick"}, {Mode: "yardstick-adapter-sql"}, {Mode: "yardstick-burn-down", Ratio: 0.8}})
	if err != nil || len(ys) != 3 || ys["yardstick-burn-down"].Ratio != 0.8 {
		t.Errorf("yardstick pick = %v, %v", ys, err)
	}
}

func TestPrintTable(t *testing.T) {
	o := options{n: 100, rates: []int{500, 5000}, dispatchers: 4, processes: []int{1, 2}, runs: 2}
	all := results{
		"tasq": {
			"burn-down":           {{JobsPerSec: 100, InsertPerSec: 1000}, {JobsPerSec: 300, InsertPerSec: 3000}},
			latencyKey(500):       {{P50: 1, P95: 2, P99: 3, DispatchedPerSec: 499}, {P50: 3, P95: 4, P99: 5, DispatchedPerSec: 500}},
			latencyKey(5000):      {{P50: 1, DispatchedPerSec: 3000}, {P50: 1, DispatchedPerSec: 4000}},
			scaleKey(1):           {{JobsPerSec: 100}, {JobsPerSec: 100}},
			scaleKey(2):           {{JobsPerSec: 150}, {JobsPerSec: 250}},
			"yardstick":           {{JobsPerSec: 1000}, {JobsPerSec: 1000}},
			"yardstick-burn-down": {{JobsPerSec: 800, Ratio: 0.8}, {JobsPerSec: 900, Ratio: 0.9}},
		},
		"river": {
			"burn-down":      {{JobsPerSec: 50, InsertPerSec: 500}, {JobsPerSec: 50, InsertPerSec: 500}},
			latencyKey(500):  {{P50: 4, P95: 8, P99: 10, DispatchedPerSec: 480}, {P50: 4, P95: 8, P99: 10, DispatchedPerSec: 490}},
			latencyKey(5000): {{P50: 2, DispatchedPerSec: 4900}, {P50: 2, DispatchedPerSec: 4700}},
			scaleKey(1):      {{JobsPerSec: 50}},
			scaleKey(2):      {{JobsPerSec: 50}},
		},
	}
	var b strings.Builder
	printTable(&b, all, o)
	out := b.String()
	for _, want := range []string{
		"| burn-down, jobs/s | 200 (100–300) | 50 | 4.00× |",
		"| batch insert (burn-down), jobs/s | 2000 (1000–3000) | 500 | 4.00× |",
		"| latency at 500/s offered (4 dispatchers), achieved jobs/s | 500 (499–500) | 485 (480–490) | reached: TasQ yes, River yes |",
		"| pick-up latency at 500/s, p50 ms | 2.00 (1.00–3.00) | 4.00 | 2.00× (River / TasQ) |",
		"| pick-up latency at 500/s, p99 ms | 4.00 (3.00–5.00) | 10.00 | 2.50× (River / TasQ) |",
		"reached: TasQ NO, River not in every run |",
		"| scale-out, 2 process(es), jobs/s | 200 (150–250) | 50 | 4.00× |",
		"scale-out against 1 process(es), medians: TasQ 2: 2.00×; River 2: 1.00×",
		"bare claim + complete SQL 1000 jobs/s; TasQ burn-down 850 (800–900) jobs/s = 0.85 (0.80–0.90) of it",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "continuous") {
		t.Errorf("a workload that did not run has a row:\n%s", out)
	}
}
