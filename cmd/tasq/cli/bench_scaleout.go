package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

// Scale-out: a burn-down worked by 1, 2, 4, ... worker processes on one
// PostgreSQL, as users run them: N identical processes, each with the same
// configuration (--concurrency is per process). The bench binary starts its
// children itself: `bench --scaleout-child`, with the database URL in the
// environment (never on the command line, which every local user can read).
//
// The protocol on the child's stdin and stdout is line based:
//
//	child -> parent  READY                   the worker is built, connected
//	parent -> child  GO                      start working
//	child -> parent  DONE <n>                outcomes written so far (every 20 ms)
//	parent closes stdin                      stop gracefully
//	child -> parent  STATS {json}            the child's Observer figures
//
// A child whose parent dies sees its stdin close and stops too.

const (
	// scaleChildEnv marks a scale-out child (the test binary's hook uses it).
	scaleChildEnv = "TASQ_BENCH_CHILD"
	// scaleChildURLEnv carries the database URL to a child.
	scaleChildURLEnv = "TASQ_BENCH_CHILD_URL"
)

// scaleFlags are the flags of the scale-out and yardstick workloads.
type scaleFlags struct {
	processes      []int
	child          bool
	yardstickBatch int
}

func (s *scaleFlags) register(fl *pflag.FlagSet) {
	fl.IntSliceVar(&s.processes, "processes", []int{1, 2, 4}, "scale-out: worker process counts, one burn-down of -n jobs each (--concurrency is per process)")
	fl.IntVar(&s.yardstickBatch, "yardstick-batch", 1000, "yardstick: jobs per bare-SQL claim and complete statement")
	fl.BoolVar(&s.child, "scaleout-child", false, "internal: run as a scale-out worker child")
	_ = fl.MarkHidden("scaleout-child")
}

func (s *scaleFlags) validate() error {
	if len(s.processes) == 0 {
		return errors.New("--processes: give at least one count, e.g. 1,2,4")
	}
	for _, p := range s.processes {
		if p <= 0 || p > 64 {
			return fmt.Errorf("--processes %d: use 1 to 64 processes", p)
		}
	}
	if s.yardstickBatch <= 0 || s.yardstickBatch > 100000 {
		return fmt.Errorf("--yardstick-batch %d: use 1 to 100000", s.yardstickBatch)
	}
	return nil
}

// claimObserver aggregates a worker's claims and outcome writes.
type claimObserver struct {
	mu        sync.Mutex
	claims    int64
	empty     int64
	claimed   int64
	claimDur  []time.Duration
	finishes  int64
	finished  int64
	finishDur time.Duration
	written   atomic.Int64 // outcomes written, for the progress lines
}

func (o *claimObserver) ClaimDone(_ string, n int, d time.Duration, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil {
		return
	}
	o.claims++
	o.claimed += int64(n)
	if n == 0 {
		o.empty++
	}
	o.claimDur = append(o.claimDur, d)
}

func (o *claimObserver) FinishDone(n int, d time.Duration, err error) {
	if err != nil {
		return
	}
	o.written.Add(int64(n))
	o.mu.Lock()
	defer o.mu.Unlock()
	o.finishes++
	o.finished += int64(n)
	o.finishDur += d
}

// claimStats is what a claimObserver saw, summed over processes.
type claimStats struct {
	Claims       int64   `json:"claims"`
	EmptyClaims  int64   `json:"empty_claims"`
	Claimed      int64   `json:"claimed"`
	ClaimMeanMS  float64 `json:"claim_mean_ms"`
	ClaimP50MS   float64 `json:"claim_p50_ms"`
	ClaimP99MS   float64 `json:"claim_p99_ms"`
	ClaimSumMS   float64 `json:"claim_sum_ms"`
	Finishes     int64   `json:"finishes"`
	Finished     int64   `json:"finished"`
	FinishMeanMS float64 `json:"finish_mean_ms"`
	FinishSumMS  float64 `json:"finish_sum_ms"`
	// per process, from the parent: CPU seconds (user+system)
	CPUSeconds float64 `json:"cpu_seconds,omitempty"`
	durs       []time.Duration
}

func (o *claimObserver) stats() claimStats {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := claimStats{Claims: o.claims, EmptyClaims: o.empty, Claimed: o.claimed, Finishes: o.finishes, Finished: o.finished,
		FinishSumMS: ms(o.finishDur), durs: slices.Clone(o.claimDur)}
	s.fill()
	return s
}

// fill computes the claim and finish figures from durs and the sums.
func (s *claimStats) fill() {
	var sum time.Duration
	for _, d := range s.durs {
		sum += d
	}
	s.ClaimSumMS = ms(sum)
	if len(s.durs) > 0 {
		s.ClaimMeanMS = ms(sum / time.Duration(len(s.durs)))
		s.ClaimP50MS, s.ClaimP99MS = ms(percentile(s.durs, 0.5)), ms(percentile(s.durs, 0.99))
	}
	if s.Finishes > 0 {
		s.FinishMeanMS = s.FinishSumMS / float64(s.Finishes)
	}
}

func (s *claimStats) add(o claimStats, durs []time.Duration) {
	s.Claims += o.Claims
	s.EmptyClaims += o.EmptyClaims
	s.Claimed += o.Claimed
	s.Finishes += o.Finishes
	s.Finished += o.Finished
	s.FinishSumMS += o.FinishSumMS
	s.CPUSeconds += o.CPUSeconds
	s.durs = append(s.durs, durs...)
}

// childStats is a child's STATS line: its figures and its claim durations.
type childStats struct {
	claimStats
	ClaimDursUS []int64 `json:"claim_durs_us"`
}

// runScaleChild is a scale-out child: one worker on the bench queue with
// --concurrency slots, started by GO and stopped by the end of stdin.
func (a *app) runScaleChild(cmd *cobra.Command, f *benchFlags) error {
	ctx := cmd.Context()
	url := os.Getenv(scaleChildURLEnv)
	if url == "" {
		return errors.New("--scaleout-child: no database URL in " + scaleChildURLEnv)
	}
	ad, err := openPostgresURL(ctx, url)
	if err != nil {
		return err
	}
	defer ad.Close()
	reg := queue.NewRegistry()
	if err := queue.Register(reg, benchNoop{}); err != nil {
		return err
	}
	obs := &claimObserver{}
	w, err := worker.New(ad, reg, worker.Config{
		Queues: []string{benchQueue}, Concurrency: f.concurrency, Observer: obs,
		Logger: slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	var outMu sync.Mutex
	say := func(format string, args ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprintf(out, format+"\n", args...)
	}
	in := bufio.NewScanner(cmd.InOrStdin())
	say("READY")
	if !in.Scan() || in.Text() != "GO" {
		return nil // the parent went away before the start
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- w.Run(wctx) }()
	stopTick := make(chan struct{})
	ticked := make(chan struct{})
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
			if n := obs.written.Load(); n != last {
				last = n
				say("DONE %d", n)
			}
		}
	}()
	for in.Scan() { // until the parent closes stdin (or dies)
	}
	cancel()
	err = <-runErr
	close(stopTick)
	<-ticked
	st := obs.stats()
	cs := childStats{claimStats: st}
	for _, d := range st.durs {
		cs.ClaimDursUS = append(cs.ClaimDursUS, d.Microseconds())
	}
	js, jerr := json.Marshal(cs)
	say("DONE %d", obs.written.Load())
	say("STATS %s", js)
	return errors.Join(err, jerr)
}

// scaleChild is the parent's handle on one child.
type scaleChild struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	ready chan struct{}
	done  atomic.Int64
	stats chan childStats
	exit  chan error
}

// startScaleChild starts a child and returns once it is ready to work.
func (b *bench) startScaleChild(ctx context.Context, url string) (*scaleChild, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the bench binary to start a worker process: %w", err)
	}
	cmd := exec.Command(exe, "bench", "--scaleout-child", "--concurrency", strconv.Itoa(b.f.concurrency))
	cmd.Env = append(os.Environ(), scaleChildEnv+"=1", scaleChildURLEnv+"="+url)
	cmd.Stderr = b.errw
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start a worker process (%s): %w", filepath.Base(exe), err)
	}
	c := &scaleChild{cmd: cmd, stdin: stdin, ready: make(chan struct{}), stats: make(chan childStats, 1), exit: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
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
			case strings.HasPrefix(line, "STATS "):
				var cs childStats
				if err := json.Unmarshal([]byte(line[6:]), &cs); err == nil {
					c.stats <- cs
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
	if ctx.Err() != nil || c.cmd.ProcessState != nil {
		_ = stdin.Close()
		return nil, errors.Join(ctx.Err(), errors.New("a worker process exited before it was ready"))
	}
	return c, nil
}

// stop closes the child's stdin and waits for its figures and its exit.
func (c *scaleChild) stop() (childStats, error) {
	_ = c.stdin.Close()
	var cs childStats
	select {
	case cs = <-c.stats:
	case err := <-c.exit:
		return cs, fmt.Errorf("a worker process exited without its figures: %v", err)
	case <-time.After(60 * time.Second):
		_ = c.cmd.Process.Kill()
		return cs, errors.New("a worker process did not stop within 60s; killed")
	}
	err := <-c.exit
	if c.cmd.ProcessState != nil {
		cs.CPUSeconds = (c.cmd.ProcessState.UserTime() + c.cmd.ProcessState.SystemTime()).Seconds()
	}
	return cs, err
}

// scaleResult is one scale-out burn-down's RESULT line.
type scaleResult struct {
	benchResult
	Processes int `json:"processes"`
	claimStats
	// CPU seconds used during the work: the workers (all processes),
	// PostgreSQL's processes, and what the machine had (cores x seconds).
	WorkerCPU    float64 `json:"worker_cpu_s"`
	PostgresCPU  float64 `json:"postgres_cpu_s,omitempty"`
	MachineBusy  float64 `json:"machine_busy_s,omitempty"`
	MachineTotal float64 `json:"machine_total_s,omitempty"`
}

// scaleOut runs one burn-down per process count.
func (b *bench) scaleOut(ctx context.Context, url string) error {
	for i, p := range b.f.scale.processes {
		if i > 0 && !b.f.keepTable {
			if err := b.reset(ctx); err != nil {
				return err
			}
		}
		res, err := b.scaleOnce(ctx, url, p)
		if err != nil {
			return fmt.Errorf("%d processes: %w", p, err)
		}
		fmt.Fprintf(b.out, "tasq scale-out:  %d process(es) x concurrency %d: %d jobs in %.2fs = %.0f jobs/s\n",
			p, b.f.concurrency, res.Jobs, res.Seconds, res.JobsPerSec)
		fmt.Fprintf(b.out, "  claims %d (%d empty), %.1f jobs/claim, claim mean %.2f ms p50 %.2f ms p99 %.2f ms; "+
			"finishes %d, %.1f jobs/finish, finish mean %.2f ms\n",
			res.Claims, res.EmptyClaims, float64(res.Claimed)/float64(max(res.Claims, 1)), res.ClaimMeanMS, res.ClaimP50MS, res.ClaimP99MS,
			res.Finishes, float64(res.Finished)/float64(max(res.Finishes, 1)), res.FinishMeanMS)
		cpu := fmt.Sprintf("  cpu: workers %.2fs", res.WorkerCPU)
		if res.MachineTotal > 0 {
			cpu += fmt.Sprintf(", postgres %.2fs, machine busy %.2fs of %.2fs (%.0f%%)", res.PostgresCPU, res.MachineBusy, res.MachineTotal,
				100*res.MachineBusy/res.MachineTotal)
		}
		fmt.Fprintln(b.out, cpu)
		if len(res.Waits) > 0 {
			fmt.Fprintf(b.out, "  backends (avg of pg_stat_activity samples): %s\n", formatWaits(res.Waits, 8))
		}
		if b.f.json {
			js, _ := json.Marshal(res)
			fmt.Fprintf(b.out, "RESULT %s\n", js)
		}
	}
	return nil
}

func (b *bench) scaleOnce(ctx context.Context, url string, p int) (scaleResult, error) {
	n := b.f.n
	label := fmt.Sprintf("scale-out %d", p)
	var since time.Time
	if err := b.ad.Pool().QueryRow(ctx, `SELECT now()`).Scan(&since); err != nil {
		return scaleResult{}, err
	}
	fmt.Fprintf(b.errw, "[tasq] %s: inserting %d jobs in batches of %d\n", label, n, b.f.batch)
	insertRate, err := b.insert(ctx, n)
	if err != nil {
		return scaleResult{}, err
	}
	children := make([]*scaleChild, 0, p)
	defer func() {
		for _, c := range children {
			_ = c.stdin.Close() // on an early return: they stop on their own
		}
	}()
	for range p {
		c, err := b.startScaleChild(ctx, url)
		if err != nil {
			return scaleResult{}, err
		}
		children = append(children, c)
	}
	fmt.Fprintf(b.errw, "[tasq] %s: inserted at %.0f jobs/s; %d worker process(es), concurrency %d each\n", label, insertRate, p, b.f.concurrency)
	cpu0 := make([]float64, len(children))
	for i, c := range children {
		cpu0[i], _ = procCPU(c.cmd.Process.Pid)
	}
	pg0, pgOK := postgresCPU()
	busy0, total0, machOK := machineCPU()
	waits := b.startWaitSampler(ctx, burnDownWaitsSQL)
	start := time.Now()
	for _, c := range children {
		if _, err := io.WriteString(c.stdin, "GO\n"); err != nil {
			waits.stop()
			return scaleResult{}, fmt.Errorf("start a worker process: %w", err)
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
	lastLine := start
	var el time.Duration
	for {
		<-tick.C
		if sum() >= int64(n) {
			el = time.Since(start)
			break
		}
		if ctx.Err() != nil {
			tick.Stop()
			waits.stop()
			return scaleResult{}, ctx.Err()
		}
		for _, c := range children {
			if c.cmd.ProcessState != nil {
				tick.Stop()
				waits.stop()
				return scaleResult{}, errors.New("a worker process exited during the burn-down")
			}
		}
		if time.Since(lastLine) >= 2*time.Second {
			lastLine = time.Now()
			fmt.Fprintf(b.errw, "[tasq] %s: %d/%d done, %.0fs elapsed\n", label, sum(), n, time.Since(start).Seconds())
		}
	}
	tick.Stop()
	pg1, _ := postgresCPU()
	workCPU, workOK := 0.0, true
	for i, c := range children {
		v, ok := procCPU(c.cmd.Process.Pid)
		workCPU += v - cpu0[i]
		workOK = workOK && ok
	}
	busy1, total1, _ := machineCPU()
	res := scaleResult{Processes: p}
	res.Waits = waits.stop()
	var all claimStats
	var errs []error
	for _, c := range children {
		cs, err := c.stop()
		errs = append(errs, err)
		durs := make([]time.Duration, len(cs.ClaimDursUS))
		for i, us := range cs.ClaimDursUS {
			durs[i] = time.Duration(us) * time.Microsecond
		}
		all.add(cs.claimStats, durs)
	}
	children = nil
	if err := errors.Join(errs...); err != nil {
		return scaleResult{}, err
	}
	all.fill()
	var completed int64
	if err := b.ad.Pool().QueryRow(ctx, `SELECT count(*) FROM tasq_jobs WHERE queue = $1 AND state = 'completed' AND finished_at >= $2`,
		benchQueue, since).Scan(&completed); err != nil {
		return scaleResult{}, err
	}
	if completed != int64(n) {
		return scaleResult{}, fmt.Errorf("%d of %d jobs completed", completed, n)
	}
	res.benchResult = benchResult{System: "tasq", Mode: "scale-out", Jobs: completed, Seconds: el.Seconds(),
		JobsPerSec: float64(completed) / el.Seconds(), InsertPerSec: insertRate, Concurrency: b.f.concurrency, Waits: res.Waits}
	res.claimStats = all
	res.WorkerCPU = all.CPUSeconds // whole lifetimes: start-up and shutdown too
	if workOK {
		res.WorkerCPU = workCPU // the burn-down only
	}
	if pgOK {
		res.PostgresCPU = pg1 - pg0
	}
	if machOK {
		res.MachineBusy, res.MachineTotal = busy1-busy0, total1-total0
	}
	return res, nil
}

// clockTicks is USER_HZ, the unit of /proc's CPU times (100 on Linux).
const clockTicks = 100

// procCPU returns the CPU seconds (user+system) of process pid so far
// (Linux /proc; ok false elsewhere).
func procCPU(pid int) (float64, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	s := string(data)
	closing := strings.LastIndexByte(s, ')')
	if closing < 0 {
		return 0, false
	}
	fields := strings.Fields(s[closing+1:])
	if len(fields) < 13 {
		return 0, false
	}
	u, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return float64(u+st) / clockTicks, true
}

// postgresCPU sums the CPU seconds of the machine's postgres processes,
// their reaped children included (Linux /proc; ok false elsewhere).
func postgresCPU() (float64, bool) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, false
	}
	var ticks int64
	found := false
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(data)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open || s[open+1:closing] != "postgres" {
			continue
		}
		fields := strings.Fields(s[closing+1:])
		// after the comm: state(0) ... utime(11) stime(12) cutime(13) cstime(14)
		if len(fields) < 15 {
			continue
		}
		for _, f := range fields[11:15] {
			v, _ := strconv.ParseInt(f, 10, 64)
			ticks += v
		}
		found = true
	}
	return float64(ticks) / clockTicks, found
}

// machineCPU returns the machine's busy and total CPU seconds so far
// (/proc/stat; ok false elsewhere).
func machineCPU() (busy, total float64, ok bool) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	line, _, _ := strings.Cut(string(data), "\n")
	fields := strings.Fields(line)
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0, 0, false
	}
	var t, idle int64
	for i, f := range fields[1:] {
		v, _ := strconv.ParseInt(f, 10, 64)
		t += v
		if i == 3 || i == 4 { // idle, iowait
			idle += v
		}
	}
	return float64(t-idle) / clockTicks, float64(t) / clockTicks, true
}
