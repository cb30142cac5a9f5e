package postgres

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/queue"
)

// copyRows yields the same bytes whatever the size of the reads: whole rows
// packed into each read, a row that does not fit kept for the next, a row
// longer than a read split across reads.
func TestCopyRowsReadsWholeRowsInAnyBufferSize(t *testing.T) {
	jobs := make([]queue.NewJob, 50)
	var want []byte
	for i := range jobs {
		jobs[i] = queue.NewJob{ID: uuid.Must(uuid.NewV7()), Kind: "k\t" + strings.Repeat("é", i), Queue: "q",
			Payload: []byte(`{"s": "` + strings.Repeat(`a\\n`, i*i) + `"}`), MaxRetries: i, RetryDelay: time.Duration(i) * time.Microsecond}
		want = appendCopyRow(want, &jobs[i])
	}
	if n := bytes.Count(want, []byte("\n")); n != len(jobs) {
		t.Fatalf("%d rows encoded for %d jobs", n, len(jobs))
	}
	for _, size := range []int{1, 7, 100, 4096, 1 << 16} {
		r := &copyRows{jobs: jobs}
		var got []byte
		p := make([]byte, size)
		for reads := 0; ; reads++ {
			if reads > len(want)+1 {
				t.Fatalf("size %d: no end after %d reads", size, reads)
			}
			n, err := r.Read(p)
			if n == 0 && err == nil {
				t.Fatalf("size %d: a read returned nothing and no error", size)
			}
			got = append(got, p[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(got, want) {
			t.Errorf("size %d: read %d bytes that differ from the %d encoded", size, len(got), len(want))
		}
	}
}

// A job's fields are escaped as COPY's text format needs and nothing else.
func TestAppendCopyRowEscapes(t *testing.T) {
	id := uuid.MustParse("01234567-89ab-7cde-8f01-23456789abcd")
	j := queue.NewJob{ID: id, Kind: "a\\b\tc\nd\re", Queue: "q", Priority: -3, Payload: []byte("{\"x\":\n\"\\\\.\"}"),
		MaxRetries: 5, RetryDelay: 1500 * time.Microsecond, Timeout: 0}
	got := string(appendCopyRow(nil, &j))
	want := "01234567-89ab-7cde-8f01-23456789abcd\ta\\\\b\\tc\\nd\\re\tq\t-3\t{\"x\":\\n\"\\\\\\\\.\"}\t5\t2\t0\n"
	if got != want {
		t.Errorf("row\n got %q\nwant %q", got, want)
	}
	j.Payload = nil
	if got := string(appendCopyRow(nil, &j)); !strings.Contains(got, "\t\\N\t") {
		t.Errorf("no payload: row %q; want NULL (\\N)", got)
	}
}
