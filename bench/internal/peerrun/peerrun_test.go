package peerrun

import (
	"strings"
	"testing"
)

func TestParseResults(t *testing.T) {
	out := `[river] scale-out: 1 process(es): 100 jobs worked
RESULT {"system":"river","mode":"scale-out","jobs":100,"jobs_per_sec":50.5,"processes":1,"worker_cpu_s":0.5}
progress line
RESULT {"system":"tasq","mode":"latency","p50_ms":1.5,"p95_ms":2,"p99_ms":3,"rate":500,"dispatchers":4,"dispatched_per_sec":498.2,"waits":{"x":1},"table":{"a":1}}
RESULT {"system":"tasq","mode":"yardstick-burn-down","jobs_per_sec":900,"ratio_to_yardstick":0.9}
`
	var echo strings.Builder
	rs, err := ParseResults(strings.NewReader(out), &echo)
	if err != nil {
		t.Fatal(err)
	}
	if echo.String() != out {
		t.Errorf("echo = %q, want the output", echo.String())
	}
	if len(rs) != 3 {
		t.Fatalf("got %d results, want 3", len(rs))
	}
	if r := rs[0]; r.Mode != "scale-out" || r.Processes != 1 || r.JobsPerSec != 50.5 || r.WorkerCPU != 0.5 {
		t.Errorf("scale-out = %+v", r)
	}
	if r := rs[1]; r.P50 != 1.5 || r.P99 != 3 || r.Rate != 500 || r.Dispatchers != 4 || r.DispatchedPerSec != 498.2 {
		t.Errorf("latency = %+v", r)
	}
	if r := rs[2]; r.Ratio != 0.9 {
		t.Errorf("yardstick = %+v", r)
	}

	if _, err := ParseResults(strings.NewReader("no result\n"), nil); err == nil {
		t.Error("no RESULT line: no error")
	}
	if _, err := ParseResults(strings.NewReader("RESULT {bad\n"), nil); err == nil {
		t.Error("bad RESULT line: no error")
	}
}

func TestSummarize(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want Stat
		prec int
		str  string
	}{
		{nil, Stat{}, 0, "-"},
		{[]float64{7}, Stat{7, 7, 7, 1}, 0, "7"},
		{[]float64{3, 1, 2}, Stat{2, 1, 3, 3}, 0, "2 (1–3)"},
		{[]float64{4, 1, 2, 3}, Stat{2.5, 1, 4, 4}, 1, "2.5 (1.0–4.0)"},
		{[]float64{5, 5}, Stat{5, 5, 5, 2}, 2, "5.00"},
	} {
		got := SummarizeValues(c.in)
		if got != c.want {
			t.Errorf("SummarizeValues(%v) = %+v, want %+v", c.in, got, c.want)
		}
		if s := got.Format(c.prec); s != c.str {
			t.Errorf("Format(%d) of %v = %q, want %q", c.prec, c.in, s, c.str)
		}
	}
	in := []float64{3, 1, 2}
	SummarizeValues(in)
	if in[0] != 3 {
		t.Error("SummarizeValues sorted its argument")
	}
	rs := []Result{{JobsPerSec: 10}, {JobsPerSec: 30}, {JobsPerSec: 20}}
	if got := Summarize(rs, func(r Result) float64 { return r.JobsPerSec }); got != (Stat{20, 10, 30, 3}) {
		t.Errorf("Summarize = %+v", got)
	}
}
