package sqs

import (
	"testing"
	"time"
)

func TestNameEncoding(t *testing.T) {
	for _, q := range []string{"default", "a", "x_failed", "x__failed", "_", "__", "_failed", "mail/high.prio", "ünïcode", "a-b_c", "_FA", "\xff", "A_41"} {
		enc := encodeName(q)
		for _, failed := range []bool{false, true} {
			s := enc
			if failed {
				s += FailedSuffix
			}
			got, gotFailed, ok := decodeName(s)
			if !ok || got != q || gotFailed != failed {
				t.Errorf("decodeName(%q) = %q, %v, %v; want %q, %v (encoded from %q)", s, got, gotFailed, ok, q, failed, q)
			}
		}
		for _, r := range enc {
			if !nameChar(r) && r != '_' {
				t.Errorf("encodeName(%q) = %q: %q is not allowed in SQS queue names", q, enc, r)
			}
		}
	}
	for _, s := range []string{"", "a.fifo", "x_", "x_4", "x_41", "x_zz", "x_ff", "_failed", "a_failed_failed"} {
		if got, failed, ok := decodeName(s); ok {
			t.Errorf("decodeName(%q) = %q, %v; want it refused (no queue name encodes to it)", s, got, failed)
		}
	}
}

func TestSchedule(t *testing.T) {
	a := &Adapter{maxDelay: 15 * time.Minute}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, c := range []struct {
		delay time.Duration
		secs  int32
		long  bool
	}{
		{0, 0, false}, {time.Millisecond, 1, false}, {1500 * time.Millisecond, 2, false},
		{15 * time.Minute, 900, false}, {15*time.Minute + time.Millisecond, 900, true}, {48 * time.Hour, 900, true},
	} {
		e := &envelope{}
		if got := a.schedule(e, c.delay, now); got != c.secs || (e.NotBefore != nil) != c.long {
			t.Errorf("schedule(%v) = %d, not before %v; want %d, long %v", c.delay, got, e.NotBefore, c.secs, c.long)
		}
		if c.long && !e.NotBefore.Equal(now.Add(c.delay)) {
			t.Errorf("schedule(%v): not before %v, want %v", c.delay, e.NotBefore, now.Add(c.delay))
		}
	}
}
