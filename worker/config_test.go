package worker

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tasqhq/tasq/queue"
)

func TestConfigDefaults(t *testing.T) {
	c, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Queues) != 1 || c.Queues[0] != queue.DefaultQueue || c.Concurrency != 20 ||
		c.BlockingConcurrency != min(runtime.GOMAXPROCS(0), 20) || c.PollInterval != time.Second ||
		c.LeaseDuration != 30*time.Second || c.ShutdownGrace != 10*time.Second || c.ID == "" || c.Logger == nil {
		t.Errorf("defaults = %+v", c)
	}
	c, _ = Config{Concurrency: 2, BlockingConcurrency: 8}.withDefaults()
	if c.BlockingConcurrency != 2 {
		t.Errorf("BlockingConcurrency %d exceeds Concurrency 2", c.BlockingConcurrency)
	}
}

func TestConfigErrorsSayWhatIsWrong(t *testing.T) {
	for want, c := range map[string]Config{
		"queue name is empty":     {Queues: []string{"a", ""}},
		`"a" is listed twice`:     {Queues: []string{"a", "a"}},
		"must not be negative":    {MaxTasks: -1},
		"LeaseDuration is -1s":    {LeaseDuration: -time.Second},
		"use at least 100ms":      {LeaseDuration: 10 * time.Millisecond},
		"ShutdownGrace is -1ns":   {ShutdownGrace: -1},
		"whitespace or control":   {Queues: []string{"a b"}},
		"Concurrency, Blocking":   {BlockingConcurrency: -3},
		"FetchCooldown is -1ms":   {FetchCooldown: -time.Millisecond},
		"PollInterval is -2s":     {PollInterval: -2 * time.Second},
		"FailedHookTimeout is -1": {FailedHookTimeout: -time.Second},
	} {
		_, err := c.withDefaults()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("config %+v: err = %v, want it to say %q", c, err, want)
		}
	}
}
