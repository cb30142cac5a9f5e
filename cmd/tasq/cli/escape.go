package cli

import "github.com/tasqhq/tasq/internal/textesc"

// The jobs and stats commands print what tasks and the people who dispatch
// them stored: kinds, queue names, payloads, results, error texts, worker
// IDs. Any of it may hold terminal control sequences, which a terminal
// obeys, so every such string is printed through package textesc, which
// makes them visible escapes (\x1b, \n, \u009b, \xff).

// oneLine is textesc.OneLine: for a one-line field or table cell.
func oneLine(s string) string { return textesc.OneLine(s) }

// multiLine is textesc.MultiLine: for text displayed over several lines.
func multiLine(s string) string { return textesc.MultiLine(s) }

// jsonSafe is textesc.JSONSafe: JSON text with the characters a terminal
// may obey written as \u escapes (the same JSON value).
func jsonSafe(b []byte) []byte { return textesc.JSONSafe(b) }
