package tasqtest

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/queue"
)

// The helpers below read jobs through a queue.JobReader: a Recorder, or a
// real backend's adapter (adapters/postgres and others). They read what is
// stored now and wait for nothing: against a backend with workers running,
// wait for the jobs you assert on first.

// Job is a dispatched job: its task, decoded from the payload, and the job
// as stored.
type Job[T any] struct {
	Task T
	Info *queue.JobInfo
}

// Jobs returns the jobs of T's kind that r holds, oldest first, with their
// payloads decoded into fresh values of T (T is the type you dispatch, such
// as *SendEmail). It stops the test when r cannot be read or a payload does
// not decode into T.
//
// Decoding is plain encoding/json: fields only a worker fills (TaskBase
// metadata, dependencies from a factory, models loaded by a Resolver) are
// zero.
func Jobs[T any](tb testing.TB, r queue.JobReader) []Job[T] {
	tb.Helper()
	kind := kindFor[T](tb)
	infos := readAll(tb, r, kind)
	out := make([]Job[T], 0, len(infos))
	for _, info := range infos {
		task, err := decode[T](info.Payload)
		if err != nil {
			tb.Fatalf("tasqtest: job %s (kind %q) does not decode into %s: %v\npayload: %s", info.ID, kind, typeName[T](), err, info.Payload)
		}
		out = append(out, Job[T]{Task: task, Info: info})
	}
	return out
}

// Dispatched returns the tasks of T's kind that r holds, oldest first,
// decoded from their payloads as Jobs does.
func Dispatched[T any](tb testing.TB, r queue.JobReader) []T {
	tb.Helper()
	jobs := Jobs[T](tb, r)
	out := make([]T, len(jobs))
	for i, j := range jobs {
		out[i] = j.Task
	}
	return out
}

// DispatchedFunc returns the arguments of the calls of the function task f
// that r holds, oldest first.
func DispatchedFunc[A, R any](tb testing.TB, r queue.JobReader, f *queue.Func[A, R]) []A {
	tb.Helper()
	infos := readAll(tb, r, f.Name())
	out := make([]A, 0, len(infos))
	for _, info := range infos {
		var a A
		if err := json.Unmarshal(info.Payload, &a); err != nil {
			tb.Fatalf("tasqtest: job %s (function task %q) does not decode into %s: %v\npayload: %s", info.ID, f.Name(), typeName[A](), err, info.Payload)
		}
		out = append(out, a)
	}
	return out
}

// AssertDispatched reports whether a task of type T for which match returns
// true was dispatched to r (any task of the type, when match is nil). If
// none was, it marks the test failed and says what was dispatched instead.
func AssertDispatched[T any](tb testing.TB, r queue.JobReader, match func(T) bool) bool {
	tb.Helper()
	all := Jobs[T](tb, r)
	if len(matching(all, match)) > 0 {
		return true
	}
	tb.Errorf("tasqtest: no %s%s was dispatched.\n%s", describe[T](tb), matchNote(match), instead(tb, r, all))
	return false
}

// AssertNotDispatched reports whether no task of type T for which match
// returns true (no task of the type, when match is nil) was dispatched to r.
// If one was, it marks the test failed and lists them.
func AssertNotDispatched[T any](tb testing.TB, r queue.JobReader, match func(T) bool) bool {
	tb.Helper()
	found := matching(Jobs[T](tb, r), match)
	if len(found) == 0 {
		return true
	}
	tb.Errorf("tasqtest: %d %s%s %s dispatched, want none:\n%s", len(found), describe[T](tb), matchNote(match), wasWere(len(found)), list(found))
	return false
}

// AssertDispatchedCount reports whether exactly want tasks of type T for
// which match returns true (all of the type, when match is nil) were
// dispatched to r. If not, it marks the test failed and lists them.
func AssertDispatchedCount[T any](tb testing.TB, r queue.JobReader, want int, match func(T) bool) bool {
	tb.Helper()
	all := Jobs[T](tb, r)
	found := matching(all, match)
	if len(found) == want {
		return true
	}
	msg := fmt.Sprintf("tasqtest: %d %s%s %s dispatched, want %d", len(found), describe[T](tb), matchNote(match), wasWere(len(found)), want)
	if len(found) > 0 {
		msg += ":\n" + list(found)
	} else {
		msg += ".\n" + instead(tb, r, all)
	}
	tb.Errorf("%s", msg)
	return false
}

// Result returns the result of job id, decoded into R. It stops the test,
// saying the job's state and errors, unless the job completed. With Inline,
// a dispatched job has run by the time Dispatch returns.
func Result[R any](tb testing.TB, r queue.JobReader, id uuid.UUID) R {
	tb.Helper()
	var res R
	info, err := r.GetJob(context.Background(), id)
	if err != nil {
		tb.Fatalf("tasqtest: job %s: %v", id, err)
		return res
	}
	if info.State != queue.StateCompleted {
		tb.Fatalf("tasqtest: job %s (%s) is %s, not completed (attempts: %d of %d)%s", id, info.Kind, info.State, info.Attempt, info.MaxRetries+1, errorList(info))
		return res
	}
	if err := json.Unmarshal(info.Result, &res); err != nil {
		tb.Fatalf("tasqtest: the result of job %s (%s) does not decode into %s: %v\nresult: %s", id, info.Kind, typeName[R](), err, info.Result)
	}
	return res
}

// kindFor is the kind T is dispatched as.
func kindFor[T any](tb testing.TB) string {
	tb.Helper()
	t := reflect.TypeFor[T]()
	var v any
	switch t.Kind() {
	case reflect.Interface:
		tb.Fatalf("tasqtest: %s is an interface; name the task type you dispatch, such as *SendEmail", t)
	case reflect.Pointer:
		v = reflect.New(t.Elem()).Interface()
	default:
		v = reflect.Zero(t).Interface()
	}
	kind, err := queue.KindOf(v)
	if err != nil {
		tb.Fatalf("tasqtest: %v", err)
	}
	return kind
}

// decode decodes a payload into a fresh T, allocating T's pointee when T is
// a pointer type.
func decode[T any](payload []byte) (T, error) {
	var v T
	if t := reflect.TypeFor[T](); t.Kind() == reflect.Pointer {
		p := reflect.New(t.Elem())
		err := json.Unmarshal(payload, p.Interface())
		return p.Interface().(T), err
	}
	err := json.Unmarshal(payload, &v)
	return v, err
}

// maxRead bounds the rows one helper reads from a JobReader.
const maxRead = 100_000

// readAll reads the jobs of kind ("" for every kind) from r, oldest first.
func readAll(tb testing.TB, r queue.JobReader, kind string) []*queue.JobInfo {
	tb.Helper()
	var out []*queue.JobInfo
	f := queue.ListFilter{Kind: kind, Limit: 1000}
	for len(out) < maxRead {
		page, err := r.ListJobs(context.Background(), f)
		if err != nil {
			tb.Fatalf("tasqtest: listing jobs of kind %q: %v", kind, err)
			return nil
		}
		out = append(out, page...)
		if len(page) < f.Limit {
			break
		}
		f.After = page[len(page)-1].ID
	}
	slices.Reverse(out)
	return out
}

func matching[T any](jobs []Job[T], match func(T) bool) []Job[T] {
	var out []Job[T]
	for _, j := range jobs {
		if match == nil || match(j.Task) {
			out = append(out, j)
		}
	}
	return out
}

func typeName[T any]() string { return reflect.TypeFor[T]().String() }

func describe[T any](tb testing.TB) string {
	tb.Helper()
	return fmt.Sprintf("%s (kind %q)", typeName[T](), kindFor[T](tb))
}

func matchNote[T any](match func(T) bool) string {
	if match == nil {
		return ""
	}
	return " matching the condition"
}

func wasWere(n int) string {
	if n == 1 {
		return "was"
	}
	return "were"
}

// maxListed bounds the jobs a failure message lists one by one.
const maxListed = 20

// list renders jobs one a line: payload, queue and state.
func list[T any](jobs []Job[T]) string {
	var b strings.Builder
	for i, j := range jobs {
		if i == maxListed {
			fmt.Fprintf(&b, "  ... and %d more\n", len(jobs)-maxListed)
			break
		}
		fmt.Fprintf(&b, "  %s  [queue %s, %s]\n", short(j.Info.Payload), j.Info.Queue, j.Info.State)
	}
	return b.String()
}

// instead says what was dispatched: the jobs of the kind asked for (none of
// which matched), then a count of the jobs of every other kind.
func instead[T any](tb testing.TB, r queue.JobReader, ofKind []Job[T]) string {
	tb.Helper()
	var b strings.Builder
	if len(ofKind) > 0 {
		fmt.Fprintf(&b, "Dispatched of that kind (%d):\n%s", len(ofKind), list(ofKind))
	} else {
		b.WriteString("None of that kind was dispatched.\n")
	}
	kind := kindFor[T](tb)
	counts := map[string]int{}
	for _, info := range readAll(tb, r, "") {
		if info.Kind != kind {
			counts[info.Kind]++
		}
	}
	switch {
	case len(counts) == 0 && len(ofKind) == 0:
		b.WriteString("Nothing was dispatched.")
	case len(counts) == 0:
		b.WriteString("Nothing else was dispatched.")
	default:
		b.WriteString("Other kinds dispatched:")
		for _, k := range slices.Sorted(maps.Keys(counts)) {
			fmt.Fprintf(&b, " %s ×%d,", k, counts[k])
		}
		s := strings.TrimSuffix(b.String(), ",")
		b.Reset()
		b.WriteString(s)
	}
	return b.String()
}

// short renders a payload on one line, cut to a readable length.
func short(payload []byte) string {
	const limit = 200
	s := strings.Join(strings.Fields(string(payload)), " ")
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

func errorList(info *queue.JobInfo) string {
	if len(info.Errors) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("; errors:")
	for _, e := range info.Errors {
		fmt.Fprintf(&b, "\n  attempt %d: %s", e.Attempt, e.Error)
	}
	return b.String()
}
