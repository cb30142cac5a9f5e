package queue

import (
	"errors"
	"testing"

	"github.com/google/uuid"
)

func TestAfterOptions(t *testing.T) {
	a, b := uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewV7())
	var o dispatchOpts
	if err := After(a)(&o); err != nil {
		t.Fatal(err)
	}
	if err := After(b)(&o); err != nil {
		t.Fatal(err)
	}
	if err := After(a)(&o); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("an ID twice: %v", err)
	}
	if err := After(uuid.Nil)(&o); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("the nil ID: %v", err)
	}
	if err := AfterPolicy(DepPolicy(9))(&o); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("an unknown policy: %v", err)
	}
	many := make([]uuid.UUID, MaxDependencies+1)
	for i := range many {
		many[i] = uuid.New()
	}
	if err := After(many...)(&dispatchOpts{}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("too many: %v", err)
	}
	if err := AfterPolicy(DepRun)(&o); err != nil {
		t.Fatal(err)
	}
	var j NewJob
	o.ext.deps.setDeps(&j)
	if len(j.DependsOn) != 2 || j.DepPolicy != DepRun {
		t.Fatalf("NewJob deps %v policy %v", j.DependsOn, j.DepPolicy)
	}
}

func TestCheckBatchDeps(t *testing.T) {
	mk := func() NewJob {
		return NewJob{ID: uuid.Must(uuid.NewV7()), Kind: "k", Queue: "q", Payload: []byte(`{}`)}
	}
	x, y := mk(), mk()
	y.DependsOn = []uuid.UUID{x.ID}
	if err := CheckNewJobs([]NewJob{x, y}); err != nil {
		t.Fatalf("a job after an earlier one of its batch: %v", err)
	}
	if err := CheckNewJobs([]NewJob{y, x}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("a job after a later one of its batch: %v", err)
	}
	self := mk()
	self.DependsOn = []uuid.UUID{self.ID}
	if err := CheckNewJobs([]NewJob{self}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("a job after itself: %v", err)
	}
	u := mk()
	u.DependsOn = []uuid.UUID{x.ID}
	u.UniqueKey, u.UniqueStates = []byte("k"), DefaultUniqueStates
	if err := CheckNewJobs([]NewJob{u}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("a unique job with dependencies: %v", err)
	}
	if err := CheckPlainJobs("mysql", []NewJob{y}); !errors.Is(err, ErrDepsUnsupported) || !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("CheckPlainJobs: %v; want ErrDepsUnsupported", err)
	}
}

// Adding pending to States leaves the stored unique state bits as they were.
func TestPendingStateAndUniqueBits(t *testing.T) {
	if States[0] != StatePending {
		t.Fatalf("States = %v; want pending first", States)
	}
	if s, err := ParseJobState("pending"); err != nil || s != StatePending {
		t.Fatalf("ParseJobState(pending) = %v, %v", s, err)
	}
	if got := UniqueStateBits(DefaultUniqueStates); got != 1|2|4|16 {
		t.Fatalf("UniqueStateBits(default) = %d; want 23", got)
	}
	if got := UniqueStateBits(States); got != 127 {
		t.Fatalf("UniqueStateBits(States) = %d; want 127", got)
	}
	if DepCancel.String() != "cancel" || DepRun.String() != "run" {
		t.Fatal("DepPolicy names")
	}
}
