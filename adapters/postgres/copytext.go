package postgres

import (
	"encoding/hex"
	"io"
	"strconv"

	"github.com/tasqhq/tasq/queue"
)

// copyRows streams a batch of jobs as the rows of COPY's text format, in the
// column order of copyJobsSQL, encoding them as COPY reads, into the
// buffer COPY sends from, so a batch of any size is never held twice in
// memory.
//
// Why text and not pgx's binary COPY: on PostgreSQL 15, COPY keeps up to
// 1,000 rows before it writes them, and it pins the table's row descriptor
// once per row it keeps in a resource list that searches linearly among
// equal entries, so a 1,000-row COPY spends time that grows with the square
// of the rows kept (about 15% of the backend's time in a perf profile of
// 1,000-row COPYs into tasq_jobs). In binary format it always keeps 1,000;
// in text format it also writes whenever 64 KB of input is waiting, so a
// batch of small jobs is written every 600-700 rows and the square is about
// half. Measured from Go, 150 interleaved rounds of 1,000 jobs each way:
// 4.4 ms a batch in text against 4.9 ms in binary.
type copyRows struct {
	jobs  []queue.NewJob
	next  int    // the first job not yet encoded
	spill []byte // the rest of a row that did not fit the last Read
}

// Read encodes whole rows straight into p; a row longer than what is left
// of p waits for the next Read, and one longer than p is split across
// Reads.
func (r *copyRows) Read(p []byte) (int, error) {
	if len(r.spill) > 0 {
		n := copy(p, r.spill)
		r.spill = r.spill[n:]
		return n, nil
	}
	n := 0
	for r.next < len(r.jobs) && n < len(p) {
		row := appendCopyRow(p[n:n:len(p)], &r.jobs[r.next])
		if &row[0] != &p[n] {
			// It did not fit: append moved it elsewhere.
			if n == 0 {
				n = copy(p, row)
				r.spill = row[n:]
				r.next++
			}
			return n, nil
		}
		n += len(row)
		r.next++
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// appendCopyRow appends one job as a line of COPY's text format: id, kind,
// queue, priority, payload, max_retries, retry_delay_ms, timeout_ms.
func appendCopyRow(b []byte, j *queue.NewJob) []byte {
	b = appendUUIDText(b, j.ID)
	b = append(b, '\t')
	b = appendCopyText(b, j.Kind)
	b = append(b, '\t')
	b = appendCopyText(b, j.Queue)
	b = append(b, '\t')
	b = strconv.AppendInt(b, int64(j.Priority), 10)
	b = append(b, '\t')
	if len(j.Payload) == 0 {
		// No payload is NULL, refused by the column's NOT NULL, as pgx's
		// binary COPY sent it.
		b = append(b, `\N`...)
	} else {
		b = appendCopyText(b, j.Payload)
	}
	b = append(b, '\t')
	b = strconv.AppendInt(b, int64(int32(j.MaxRetries)), 10)
	b = append(b, '\t')
	b = strconv.AppendInt(b, ceilMS(j.RetryDelay), 10)
	b = append(b, '\t')
	b = strconv.AppendInt(b, ceilMS(j.Timeout), 10)
	return append(b, '\n')
}

// appendUUIDText appends id in its 36-character text form.
func appendUUIDText(b []byte, id [16]byte) []byte {
	var s [36]byte
	hex.Encode(s[0:8], id[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], id[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], id[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], id[8:10])
	s[23] = '-'
	hex.Encode(s[24:], id[10:])
	return append(b, s[:]...)
}

// appendCopyText appends s as a field of COPY's text format: a backslash,
// and the tab, newline and carriage return that would end a field or a
// row, are escaped; every other byte goes as it is (a NUL byte, which no
// text column can hold, is refused by the server as it was in binary).
func appendCopyText[S ~string | ~[]byte](b []byte, s S) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		var esc byte
		switch s[i] {
		case '\\':
			esc = '\\'
		case '\t':
			esc = 't'
		case '\n':
			esc = 'n'
		case '\r':
			esc = 'r'
		default:
			continue
		}
		b = append(b, s[start:i]...)
		b = append(b, '\\', esc)
		start = i + 1
	}
	return append(b, s[start:]...)
}
