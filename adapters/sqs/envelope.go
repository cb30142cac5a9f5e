package sqs

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/queue"
)

// envelopeVersion is the version of the message format below.
const envelopeVersion = 1

// Limits that keep a job's error history inside one SQS message.
const (
	maxErrors   = 20   // newest entries kept
	maxErrorLen = 2048 // bytes per entry
)

// envelope is the body of every message the adapter writes: a job, the
// attempts it used before this copy of it was sent, and its error history.
// In a failed-job queue it is the job's final record (State "failed").
type envelope struct {
	V            int             `json:"v"`
	ID           uuid.UUID       `json:"id"`
	Kind         string          `json:"kind"`
	Queue        string          `json:"queue"`
	Payload      json.RawMessage `json:"payload"`
	Priority     int16           `json:"priority,omitempty"`
	MaxRetries   int             `json:"max_retries"`
	RetryDelayMS int64           `json:"retry_delay_ms"`
	TimeoutMS    int64           `json:"timeout_ms"`
	DispatchedAt time.Time       `json:"dispatched_at"`
	// Attempts counts the claims of the job before this copy was sent; the
	// copy's ApproximateReceiveCount adds the claims since.
	Attempts int `json:"attempts"`
	// NotBefore is set on a copy whose delay was longer than SQS allows: it
	// is never run, only hidden again or replaced once the time is near.
	NotBefore *time.Time       `json:"not_before,omitempty"`
	Errors    []queue.JobError `json:"errors,omitempty"`

	// Final records only.
	State      queue.JobState `json:"state,omitempty"`
	FinishedAt *time.Time     `json:"finished_at,omitempty"`
	// Raw is the body of a message that was not a TasQ job, as moved to the
	// failed-job queue.
	Raw string `json:"raw,omitempty"`
}

func newEnvelope(j *queue.NewJob, now time.Time) *envelope {
	return &envelope{
		V: envelopeVersion, ID: j.ID, Kind: j.Kind, Queue: j.Queue, Payload: j.Payload, Priority: j.Priority,
		MaxRetries: j.MaxRetries, RetryDelayMS: j.RetryDelay.Milliseconds(), TimeoutMS: j.Timeout.Milliseconds(),
		DispatchedAt: now.UTC(),
	}
}

// job returns the envelope as a claimed job at the given attempt.
func (e *envelope) job(attempt int) *queue.Job {
	return &queue.Job{
		ID: e.ID, Kind: e.Kind, Queue: e.Queue, Payload: e.Payload, Priority: e.Priority, Attempt: attempt,
		MaxRetries: e.MaxRetries, RetryDelay: time.Duration(e.RetryDelayMS) * time.Millisecond,
		Timeout: time.Duration(e.TimeoutMS) * time.Millisecond, DispatchedAt: e.DispatchedAt,
	}
}

// addError appends an entry to the error history, keeping it within the
// limits of one message.
func (e *envelope) addError(attempt int, at time.Time, msg string) {
	if len(msg) > maxErrorLen {
		cut := maxErrorLen
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "... (truncated)"
	}
	e.Errors = append(e.Errors, queue.JobError{Attempt: attempt, At: at.UTC(), Error: msg})
	if n := len(e.Errors); n > maxErrors {
		e.Errors = append([]queue.JobError(nil), e.Errors[n-maxErrors:]...)
	}
}

// clone returns a copy that can be changed without touching e.
func (e *envelope) clone() *envelope {
	c := *e
	c.Errors = append([]queue.JobError(nil), e.Errors...)
	if e.NotBefore != nil {
		t := *e.NotBefore
		c.NotBefore = &t
	}
	return &c
}

// encode returns the message body, checking what SQS would refuse.
func (e *envelope) encode(maxSize int) (string, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return "", fmt.Errorf("%w: job %s: encode message: %v", queue.ErrInvalidConfig, e.ID, err)
	}
	if len(b) > maxSize {
		return "", fmt.Errorf("%w: job %s: its SQS message would be %d bytes, over the limit of %d; keep large data elsewhere and pass a reference",
			queue.ErrInvalidConfig, e.ID, len(b), maxSize)
	}
	if i := invalidSQSChar(b); i >= 0 {
		return "", fmt.Errorf("%w: job %s: the payload holds a character SQS does not accept in messages (at byte %d); escape it in JSON (\\uXXXX)",
			queue.ErrInvalidConfig, e.ID, i)
	}
	return string(b), nil
}

// invalidSQSChar returns the offset of the first character SQS refuses in a
// message body (#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD |
// #x10000-#x10FFFF), or -1.
func invalidSQSChar(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		ok := r == 0x9 || r == 0xA || r == 0xD || r >= 0x20 && r <= 0xD7FF ||
			r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF
		if !ok || r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return -1
}

// errNotJob marks a message body that is not a TasQ job envelope.
var errNotJob = errors.New("not a TasQ job message")

// errNewerFormat marks a job written by a newer version of the adapter,
// which an older worker must leave alone (during a rolling upgrade).
var errNewerFormat = errors.New("job written by a newer TasQ")

func decodeEnvelope(body string) (*envelope, error) {
	// The version first: a newer format may not decode into this one.
	var head struct {
		V int `json:"v"`
	}
	if err := json.Unmarshal([]byte(body), &head); err == nil && head.V > envelopeVersion {
		return nil, fmt.Errorf("%w: message format version %d is newer than this adapter's %d", errNewerFormat, head.V, envelopeVersion)
	}
	var e envelope
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		return nil, fmt.Errorf("%w: %v", errNotJob, err)
	}
	switch {
	case e.V != envelopeVersion:
		return nil, fmt.Errorf("%w: message format version %d, this adapter reads %d", errNotJob, e.V, envelopeVersion)
	case e.ID == uuid.Nil || e.Kind == "" || e.Queue == "":
		return nil, fmt.Errorf("%w: no job id, kind or queue", errNotJob)
	}
	return &e, nil
}
