package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Scale-out: a burn-down of -n jobs worked by each count of River clients in
// --processes, one client per process (this binary, restarted with --child),
// each configured as newClient does (MaxWorkers 2000), as users run N
// identical processes. The database URL reaches the children through their
// environment. Protocol, one line at a time:
//
//	child -> parent  READY           the client is built
//	parent -> child  GO              start the client
//	child -> parent  DONE <n>        jobs finished so far (every 20 ms)
//	parent closes stdin              stop gracefully, then exit
//
// A child whose parent dies sees its stdin close and stops too.

const childURLEnv = "RIVER_BENCH_CHILD_URL"

// runChild is a scale-out child: one River client, started by GO, stopped by
// the end of stdin.
func runChild(ctx context.Context) error {
	pool, err := openPool(ctx, os.Getenv(childURLEnv))
	if err != nil {
		return err
	}
	defer pool.Close()
	b := &bench{pool: pool, worker: &noopWorker{}}
	b.driver = newDriver(pool)
	s, err := b.newSession(0)
	if err != nil {
		return err
	}
	fmt.Println("READY")
	in := bufio.NewScanner(os.Stdin)
	if !in.Scan() || in.Text() != "GO" {
		return nil
	}
	if err := s.client.Start(ctx); err != nil {
		return fmt.Errorf("starting River client: %w", err)
	}
	stopTick, ticked := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ticked)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		last := int64(-1)
		for {
			select {
			case <-stopTick:
				return
			case <-t.C:
			}
			if n := s.done.Load(); n != last {
				last = n
				fmt.Printf("DONE %d\n", n)
			}
		}
	}()
	for in.Scan() {
	}
	close(stopTick)
	<-ticked
	err = s.stop()
	fmt.Printf("DONE %d\n", s.done.Load())
	return err
}

// child is the parent's handle on one child process.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	ready chan struct{}
	done  atomic.Int64
	exit  chan error
}

func startChild(ctx context.Context, url string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "--child")
	cmd.Env = append(os.Environ(), childURLEnv+"="+url)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting a River process: %w", err)
	}
	c := &child{cmd: cmd, stdin: stdin, ready: make(chan struct{}), exit: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stdout)
		ready := false
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "READY" && !ready:
				ready = true
				close(c.ready)
			case strings.HasPrefix(line, "DONE "):
				if n, err := strconv.ParseInt(line[5:], 10, 64); err == nil {
					c.done.Store(n)
				}
			}
		}
		c.exit <- cmd.Wait()
		if !ready {
			close(c.ready)
		}
	}()
	select {
	case <-c.ready:
	case <-ctx.Done():
	}
	if ctx.Err() != nil || cmd.ProcessState != nil {
		_ = stdin.Close()
		return nil, errors.Join(ctx.Err(), errors.New("a River process exited before it was ready"))
	}
	return c, nil
}

// scaleOut runs one burn-down of n jobs per process count.
func (b *bench) scaleOut(ctx context.Context, url string, n int, counts []int) (result, error) {
	var last result
	for i, p := range counts {
		if i > 0 {
			if err := resetTables(ctx, b.pool); err != nil {
				return result{}, err
			}
		}
		res, err := b.scaleOnce(ctx, url, n, p)
		if err != nil {
			return result{}, fmt.Errorf("%d processes: %w", p, err)
		}
		last = res
		if i < len(counts)-1 {
			res.System, res.Mode = "river", "scale-out"
			printResult(res)
		}
	}
	return last, nil
}

func (b *bench) scaleOnce(ctx context.Context, url string, n, p int) (result, error) {
	ins, err := b.newSession(0)
	if err != nil {
		return result{}, err
	}
	t0 := time.Now()
	if err := insertJobs(ctx, ins.client, n); err != nil {
		return result{}, err
	}
	ins.unsubscribe()
	insertRate := float64(n) / time.Since(t0).Seconds()
	children := make([]*child, 0, p)
	defer func() {
		for _, c := range children {
			_ = c.stdin.Close()
		}
	}()
	for range p {
		c, err := startChild(ctx, url)
		if err != nil {
			return result{}, err
		}
		children = append(children, c)
	}
	fmt.Fprintf(os.Stderr, "[river] scale-out %d: inserted %d jobs at %.0f jobs/s; %d process(es), one client each\n", p, n, insertRate, p)
	cpu0 := make([]float64, p)
	for i, c := range children {
		cpu0[i] = procCPU(c.cmd.Process.Pid)
	}
	pg0 := postgresCPU()
	busy0, total0 := machineCPU()
	start := time.Now()
	for _, c := range children {
		if _, err := io.WriteString(c.stdin, "GO\n"); err != nil {
			return result{}, err
		}
	}
	sum := func() int64 {
		var s int64
		for _, c := range children {
			s += c.done.Load()
		}
		return s
	}
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	lastLine := start
	for sum() < int64(n) {
		<-tick.C
		if ctx.Err() != nil {
			return result{}, ctx.Err()
		}
		for _, c := range children {
			if c.cmd.ProcessState != nil {
				return result{}, errors.New("a River process exited during the burn-down")
			}
		}
		if time.Since(lastLine) >= progressEvery {
			lastLine = time.Now()
			fmt.Fprintf(os.Stderr, "[river] scale-out %d: %d/%d done\n", p, sum(), n)
		}
	}
	el := time.Since(start)
	pg1 := postgresCPU()
	busy1, total1 := machineCPU()
	var workCPU float64
	for i, c := range children {
		workCPU += procCPU(c.cmd.Process.Pid) - cpu0[i]
	}
	var errs []error
	for _, c := range children {
		_ = c.stdin.Close()
		errs = append(errs, <-c.exit)
	}
	children = nil
	if err := errors.Join(errs...); err != nil {
		return result{}, err
	}
	rate := float64(n) / el.Seconds()
	fmt.Printf("[river] scale-out: %d process(es): %d jobs worked in %.2fs: %.0f jobs/s\n", p, n, el.Seconds(), rate)
	fmt.Printf("  cpu: workers %.2fs, postgres %.2fs, machine busy %.2fs of %.2fs (%.0f%%)\n",
		workCPU, pg1-pg0, busy1-busy0, total1-total0, 100*(busy1-busy0)/max(total1-total0, 1e-9))
	return result{Jobs: int64(n), Seconds: round(el.Seconds(), 3), JobsPerSec: round(rate, 1),
		InsertJobsPerSec: ptr(round(insertRate, 1)), Processes: p,
		WorkerCPU: ptr(round(workCPU, 2)), PostgresCPU: ptr(round(pg1-pg0, 2))}, nil
}

// parseCounts parses "1,2,4".
func parseCounts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v <= 0 || v > 64 {
			return nil, fmt.Errorf("--processes %q: use counts from 1 to 64, e.g. 1,2,4", s)
		}
		out = append(out, v)
	}
	return out, nil
}

const clockTicks = 100 // USER_HZ, the unit of /proc's CPU times

// procCPU returns the CPU seconds of process pid so far (0 off Linux).
func procCPU(pid int) float64 {
	return statCPU("/proc/"+strconv.Itoa(pid)+"/stat", false)
}

// statCPU reads utime+stime (and, with children, cutime+cstime) from a
// /proc/<pid>/stat file.
func statCPU(path string, withChildren bool) float64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	s := string(data)
	closing := strings.LastIndexByte(s, ')')
	if closing < 0 {
		return 0
	}
	fields := strings.Fields(s[closing+1:])
	if len(fields) < 15 {
		return 0
	}
	last := 13
	if withChildren {
		last = 15
	}
	var t int64
	for _, f := range fields[11:last] {
		v, _ := strconv.ParseInt(f, 10, 64)
		t += v
	}
	return float64(t) / clockTicks
}

// postgresCPU sums the CPU seconds of the machine's postgres processes.
func postgresCPU() float64 {
	ents, _ := os.ReadDir("/proc")
	var total float64
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		comm, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err != nil || strings.TrimSpace(string(comm)) != "postgres" {
			continue
		}
		total += statCPU("/proc/"+e.Name()+"/stat", true)
	}
	return total
}

// machineCPU returns the machine's busy and total CPU seconds (/proc/stat).
func machineCPU() (busy, total float64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	fields := strings.Fields(line)
	if len(fields) < 5 {
		return 0, 0
	}
	var t, idle int64
	for i, f := range fields[1:] {
		v, _ := strconv.ParseInt(f, 10, 64)
		t += v
		if i == 3 || i == 4 {
			idle += v
		}
	}
	return float64(t-idle) / clockTicks, float64(t) / clockTicks
}
