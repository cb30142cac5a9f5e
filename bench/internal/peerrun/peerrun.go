// Package peerrun is what the comparison commands (bench/compare,
// bench/compareredis) share: running `tasq bench` and a peer benchmark as
// commands and reading the RESULT line each prints.
package peerrun

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Result is the RESULT line of `tasq bench --json` and of the peers.
type Result struct {
	System       string  `json:"system"`
	Mode         string  `json:"mode"`
	Jobs         int64   `json:"jobs"`
	JobsPerSec   float64 `json:"jobs_per_sec"`
	InsertPerSec float64 `json:"insert_jobs_per_sec"`
	P50          float64 `json:"p50_ms"`
	P95          float64 `json:"p95_ms"`
	P99          float64 `json:"p99_ms"`
	Phase        string  `json:"phase"`
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

// RunOne runs bin with args in dir, echoes its output, and returns its
// RESULT line.
func RunOne(ctx context.Context, dir string, env []string, bin string, args []string) (Result, error) {
	var out bytes.Buffer
	cmd := Command(ctx, dir, env, bin, args...)
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return Result{}, err
	}
	var r Result
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		line := sc.Text()
		fmt.Println(line)
		if js, ok := strings.CutPrefix(line, "RESULT "); ok {
			if err := json.Unmarshal([]byte(js), &r); err != nil {
				return r, fmt.Errorf("parse %q: %w", js, err)
			}
		}
	}
	if r.Mode == "" {
		return r, errors.New("no RESULT line")
	}
	return r, nil
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
