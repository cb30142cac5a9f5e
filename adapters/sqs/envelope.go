package sqs

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/queue"
)

// envelopeVersion is the version of the message format below.
const envelopeVersion = 1

// Limits that keep a job's error history inside one SQS message: at most
// queue.MaxErrorHistory entries (the first and the newest; the count of
// those dropped between them is kept), each at most maxErrorLen bytes.
const maxErrorLen = 2048

// envelope is the body of every message the adapter writes: a job, the
// attempts it used and the last claim token it had before this copy of it
// was sent, and its error history.
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
	// TokenBase is the claim token of the job's last claim before this copy
	// was sent (0 for a new job); the copy's ApproximateReceiveCount adds
	// the claims since, so tokens keep growing across copies. (Messages of
	// adapters from before claim tokens lack it and start from 0.)
	TokenBase int64 `json:"token_base,omitempty"`
	// NotBefore is set on a copy whose delay was longer than SQS allows: it
	// is never run, only hidden again or replaced once the time is near.
	NotBefore *time.Time       `json:"not_before,omitempty"`
	Errors    []queue.JobError `json:"errors,omitempty"`
	// ErrorsDropped counts the history entries dropped to keep it within
	// queue.MaxErrorHistory (or within the message size).
	ErrorsDropped int `json:"errors_dropped,omitempty"`

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

// job returns the envelope as a claimed job at the given attempt, with the
// given claim token.
func (e *envelope) job(attempt int, token int64) *queue.Job {
	return &queue.Job{
		ID: e.ID, Token: token, Kind: e.Kind, Queue: e.Queue, Payload: e.Payload, Priority: e.Priority, Attempt: attempt,
		MaxRetries: e.MaxRetries, RetryDelay: time.Duration(e.RetryDelayMS) * time.Millisecond,
		Timeout: time.Duration(e.TimeoutMS) * time.Millisecond, DispatchedAt: e.DispatchedAt,
	}
}

// addError appends an entry to the error history, keeping it within the
// limits of one message: the text is cleaned (queue.CleanErrorText), the
// characters SQS refuses in a message become U+FFFD, and it is cut to
// maxErrorLen bytes.
func (e *envelope) addError(attempt int, at time.Time, msg string) {
	msg = sqsText(queue.CleanErrorText(msg))
	if len(msg) > maxErrorLen {
		cut := maxErrorLen
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "... (truncated)"
	}
	e.Errors = append(e.Errors, queue.JobError{Attempt: attempt, At: at.UTC(), Error: msg})
	if n := len(e.Errors); n > queue.MaxErrorHistory {
		// Keep the first entry and the newest MaxErrorHistory-1.
		drop := n - queue.MaxErrorHistory
		e.Errors = append(e.Errors[:1:1], e.Errors[1+drop:]...)
		e.ErrorsDropped += drop
	}
}

// noteLostAttempts adds an error entry for each attempt between the ones
// the envelope counts and attempt: receives of this copy that were claims
// whose visibility timeout (the lease) ran out before an outcome came.
func (e *envelope) noteLostAttempts(attempt int, now time.Time) {
	for lost := e.Attempts + 1; lost < attempt; lost++ {
		// SQS does not say who received the message.
		e.addError(lost, now, queue.LeaseExpiredText(""))
	}
}

// shrink makes the envelope smaller for a message that came out too large:
// it keeps only the newest error entry, then cuts that entry's text. It
// reports whether it changed anything.
func (e *envelope) shrink() bool {
	if n := len(e.Errors); n > 1 {
		e.ErrorsDropped += n - 1
		e.Errors = append([]queue.JobError(nil), e.Errors[n-1])
		return true
	}
	if len(e.Errors) == 1 && len(e.Errors[0].Error) > 256 {
		msg := e.Errors[0].Error
		cut := 256
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		e.Errors[0].Error = msg[:cut] + "... (cut to fit the SQS message)"
		return true
	}
	return false
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

// sqsText replaces the characters that SQS refuses in a message body and
// that JSON encoding leaves as they are (U+FFFE and U+FFFF; control
// characters are escaped, invalid UTF-8 becomes U+FFFD) with U+FFFD, so
// that error text never makes a message unsendable.
func sqsText(s string) string {
	if !strings.ContainsAny(s, "\uFFFE\uFFFF") {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r == 0xFFFE || r == 0xFFFF {
			return utf8.RuneError
		}
		return r
	}, s)
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
