package mysql

import (
	"fmt"
	"strings"
	"time"

	"github.com/tasqhq/tasq/queue"
)

// nowSQL is the database clock in UTC, as stored in the DATETIME(6) columns.
const nowSQL = `UTC_TIMESTAMP(6)`

// nowJSONSQL is the database clock as an RFC 3339 string, for the "at" of
// error history entries (a DATETIME inside JSON would not be RFC 3339).
const nowJSONSQL = `DATE_FORMAT(UTC_TIMESTAMP(6), '%Y-%m-%dT%H:%i:%s.%fZ')`

// The error history keeps at most queue.MaxErrorHistory (20) entries: the
// first and the newest. appendErrorSQL is the history with an entry of the
// current attempt appended, whose text is its one placeholder; when the
// history is full the second entry makes room. historyFullSQL tells when
// errors_omitted must count that drop: an UPDATE assigns errors_omitted
// before errors, so that it reads the history as it was.
const (
	historyFullSQL = `JSON_LENGTH(errors) >= 20`
	appendErrorSQL = `JSON_ARRAY_APPEND(IF(` + historyFullSQL + `, JSON_REMOVE(errors, '$[1]'), errors), '$',
        JSON_OBJECT('attempt', attempt, 'at', ` + nowJSONSQL + `, 'error', ?))`
	countOmittedSQL = `LEAST(errors_omitted + 1, 2147483647)`
	// omitErrorSQL is the errors_omitted assignment that goes with an
	// appendErrorSQL on every row of the UPDATE.
	omitErrorSQL = `errors_omitted = IF(` + historyFullSQL + `, ` + countOmittedSQL + `, errors_omitted)`
)

// The 20 above is queue.MaxErrorHistory: these stop compiling if it changes.
const (
	_ = uint(queue.MaxErrorHistory - 20)
	_ = uint(20 - queue.MaxErrorHistory)
)

// dbTimeLayout is how the columns' UTC times are written and read as text.
const dbTimeLayout = "2006-01-02 15:04:05.999999"

// formatTime renders t as a UTC DATETIME(6) literal value.
func formatTime(t time.Time) string { return t.UTC().Format(dbTimeLayout) }

// utcTime scans a DATETIME(6) column holding UTC, whatever the pool's
// parseTime and loc settings: a time.Time from the driver carries the stored
// wall clock in the pool's location, which is read back as UTC.
type utcTime struct {
	Time  time.Time
	Valid bool
}

// Scan implements sql.Scanner.
func (u *utcTime) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*u = utcTime{}
		return nil
	case time.Time:
		*u = utcTime{Time: time.Date(v.Year(), v.Month(), v.Day(), v.Hour(), v.Minute(), v.Second(), v.Nanosecond(), time.UTC), Valid: true}
		return nil
	case []byte:
		return u.parse(string(v))
	case string:
		return u.parse(v)
	}
	return fmt.Errorf("tasq/mysql: cannot read %T as a time", src)
}

func (u *utcTime) parse(s string) error {
	if strings.HasPrefix(s, "0000-00-00") {
		*u = utcTime{}
		return nil
	}
	t, err := time.ParseInLocation(dbTimeLayout, s, time.UTC)
	if err != nil {
		return fmt.Errorf("tasq/mysql: cannot read %q as a time: %w", s, err)
	}
	*u = utcTime{Time: t, Valid: true}
	return nil
}

// ptr returns the time, or nil when NULL.
func (u utcTime) ptr() *time.Time {
	if !u.Valid {
		return nil
	}
	t := u.Time
	return &t
}

// placeholders returns n comma-separated question marks.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}
