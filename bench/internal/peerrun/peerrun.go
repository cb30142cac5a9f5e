// Package peerrun is what the comparison commands (bench/compare,
// bench/compareredis) share: running `tasq bench` and a peer benchmark as
// commands, reading the RESULT lines each prints, and summarizing the runs
// (median and range).
package peerrun

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// Result is a RESULT line of `tasq bench --json` and of the peers. Fields a
// mode does not print are zero.
type Result struct {
	System       string  `json:"system"`
	Mode         string  `json:"mode"`
	Jobs         int64   `json:"jobs"`
	Seconds      float64 `json:"seconds"`
	JobsPerSec   float64 `json:"jobs_per_sec"`
	InsertPerSec float64 `json:"insert_jobs_per_sec"`
	P50          float64 `json:"p50_ms"`
	P95          float64 `json:"p95_ms"`
	P99          float64 `json:"p99_ms"`
	Phase        string  `json:"phase"`
	// latency: the offered rate, the dispatching goroutines, and the rate
	// the dispatches achieved (below Rate when they could not keep up)
	Rate             int     `json:"rate"`
	Dispatchers      int     `json:"dispatchers"`
	DispatchedPerSec float64 `json:"dispatched_per_sec"`
	// scale-out: the worker processes, and the CPU seconds they and
	// PostgreSQL used during the work
	Processes   int     `json:"processes"`
	WorkerCPU   float64 `json:"worker_cpu_s"`
	PostgresCPU float64 `json:"postgres_cpu_s"`
	// yardstick: the run's rate as a fraction of the bare-SQL yardstick's
	Ratio float64 `json:"ratio_to_yardstick"`
}

// Command returns name with args, run in dir with env added to this
// process's environment, its output going to stderr.
func Command(ctx context.Context, dir string, env []string, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	return cmd
}

// RunOne runs bin with args in dir, echoes its output, and returns its last
// RESULT line.
func RunOne(ctx context.Context, dir string, env []string, bin string, args []string) (Result, error) {
	rs, err := RunAll(ctx, dir, env, bin, args)
	if err != nil {
		return Result{}, err
	}
	return rs[len(rs)-1], nil
}

// RunAll runs bin with args in dir, echoes its output to stdout, and returns
// all its RESULT lines, in order (at least one).
func RunAll(ctx context.Context, dir string, env []string, bin string, args []string) ([]Result, error) {
	var out bytes.Buffer
	cmd := Command(ctx, dir, env, bin, args...)
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return nil, err
	}
	return ParseResults(&out, os.Stdout)
}

// ParseResults reads the RESULT lines of a benchmark's output, echoing every
// line to echo (when not nil). It fails when a RESULT line does not parse or
// when there is none.
func ParseResults(r io.Reader, echo io.Writer) ([]Result, error) {
	var rs []Result
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 4<<20) // RESULT lines with waits and table stats are long
	for sc.Scan() {
		line := sc.Text()
		if echo != nil {
			fmt.Fprintln(echo, line)
		}
		if js, ok := strings.CutPrefix(line, "RESULT "); ok {
			var res Result
			if err := json.Unmarshal([]byte(js), &res); err != nil {
				return rs, fmt.Errorf("parse %q: %w", js, err)
			}
			rs = append(rs, res)
		}
	}
	if err := sc.Err(); err != nil {
		return rs, err
	}
	if len(rs) == 0 {
		return nil, errors.New("no RESULT line")
	}
	return rs, nil
}

// Stat is the median and the range of one measurement over the runs; N is
// the number of runs (0: not measured).
type Stat struct {
	Med, Lo, Hi float64
	N           int
}

// Summarize returns the median and range of f over rs.
func Summarize(rs []Result, f func(Result) float64) Stat {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	return SummarizeValues(v)
}

// SummarizeValues returns the median (the mean of the middle two for an even
// count) and the range of v.
func SummarizeValues(v []float64) Stat {
	if len(v) == 0 {
		return Stat{}
	}
	v = slices.Clone(v)
	slices.Sort(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return Stat{Med: med, Lo: v[0], Hi: v[len(v)-1], N: len(v)}
}

// Format prints the median with prec decimals and, over more than one run,
// the range in brackets: "1234 (1100–1300)"; "-" when not measured.
func (s Stat) Format(prec int) string {
	if s.N == 0 {
		return "-"
	}
	if s.N == 1 || s.Lo == s.Hi {
		return fmt.Sprintf("%.*f", prec, s.Med)
	}
	return fmt.Sprintf("%.*f (%.*f–%.*f)", prec, s.Med, prec, s.Lo, prec, s.Hi)
}

// RepoRoot finds, from the working directory up, the TasQ repository that
// holds the peer module bench/peers/<peer>.
func RepoRoot(peer string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "bench", "peers", peer, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("run from inside the TasQ repository (bench/peers/%s not found)", peer)
		}
		dir = parent
	}
}
