package chaos

import (
	"os"
	"testing"
	"time"

	"github.com/tasqhq/tasq/internal/testpg"
)

// The environment variables of the suite. The worker children are this test
// binary run again with envChild set: TestMain sends them to childMain.
const (
	// envMode selects the plan: "long" for `make chaos`, anything else short.
	envMode = "TASQ_CHAOS"
	// envLog, set to 1, makes worker children log warnings to stderr.
	envLog = "TASQ_CHAOS_LOG"
	// envChild holds a child's worker ID; set only in children.
	envChild = "TASQ_CHAOS_CHILD_WORKER"
	// envChildDSN is the database a child works on.
	envChildDSN = "TASQ_CHAOS_CHILD_DSN"
)

func TestMain(m *testing.M) {
	if id := os.Getenv(envChild); id != "" {
		os.Exit(childMain(id))
	}
	os.Exit(testpg.Main(m))
}

// plan is the size of a chaos run. The children read the same plan from
// the environment they inherit, so both sides agree on the worker settings.
type plan struct {
	long bool
	// Jobs is how many jobs each scenario dispatches.
	Jobs int
	// Workers is how many worker processes run at once.
	Workers int
	// Worker settings (worker.Config).
	Concurrency         int
	LeaseDuration       time.Duration
	PollInterval        time.Duration
	MaintenanceInterval time.Duration
	// MaxRetries and RetryDelay of the chaos task: a budget no fault
	// should exhaust.
	MaxRetries int
	RetryDelay time.Duration
	// Chaos is how long faults are injected at most; it ends sooner when no
	// job is left to disturb.
	Chaos time.Duration
	// Drain bounds the wait for the queue to empty once the chaos stops.
	Drain time.Duration
	// StopFor is how long a SIGSTOPped worker stays frozen: longer than a lease.
	StopFor time.Duration
}

// currentPlan returns the plan the environment selects.
func currentPlan() plan {
	p := plan{
		Jobs: 2000, Workers: 3, Concurrency: 8,
		LeaseDuration: time.Second, PollInterval: 100 * time.Millisecond, MaintenanceInterval: 200 * time.Millisecond,
		MaxRetries: 25, RetryDelay: 50 * time.Millisecond,
		Chaos: 4 * time.Second, Drain: 45 * time.Second, StopFor: 2500 * time.Millisecond,
	}
	if os.Getenv(envMode) == "long" {
		p.long = true
		p.Jobs = 20000
		p.Chaos = 30 * time.Second
		p.Drain = 3 * time.Minute
	}
	return p
}
