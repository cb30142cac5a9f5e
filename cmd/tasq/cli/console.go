package cli

import (
	"fmt"
	"io"
	"sync"
)

// console serialises the demo's output: task output and logs from many
// goroutines, and a live status line on stderr. On a terminal the status
// line is rewritten in place with \r, and every other write first clears it
// and then draws it again below the new text; elsewhere each status is a
// plain line.
type console struct {
	mu     sync.Mutex
	out    io.Writer
	err    io.Writer
	tty    bool
	status string // the status line on screen (terminal only)
}

func newConsole(out, errw io.Writer) *console {
	return &console{out: out, err: errw, tty: isTerminal(errw)}
}

// Out returns a writer to standard output, safe for concurrent use.
func (c *console) Out() io.Writer { return consoleWriter{c, c.out} }

// Err returns a writer to standard error, safe for concurrent use.
func (c *console) Err() io.Writer { return consoleWriter{c, c.err} }

type consoleWriter struct {
	c *console
	w io.Writer
}

func (cw consoleWriter) Write(p []byte) (int, error) {
	c := cw.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.status != "" {
		_, _ = io.WriteString(c.err, "\r\x1b[K")
	}
	n, err := cw.w.Write(p)
	if c.status != "" {
		_, _ = io.WriteString(c.err, c.status)
	}
	return n, err
}

// SetStatus shows s as the status line.
func (c *console) SetStatus(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.tty {
		fmt.Fprintln(c.err, s)
		return
	}
	_, _ = io.WriteString(c.err, "\r\x1b[K"+s)
	c.status = s
}

// EndStatus leaves the last status line on screen and stops redrawing it.
func (c *console) EndStatus() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.status != "" {
		_, _ = io.WriteString(c.err, "\n")
		c.status = ""
	}
}

// TTY reports whether the status line is drawn in place.
func (c *console) TTY() bool { return c.tty }

// ClearStatus removes the status line from the screen and stops redrawing it.
func (c *console) ClearStatus() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.status != "" {
		_, _ = io.WriteString(c.err, "\r\x1b[K")
		c.status = ""
	}
}
