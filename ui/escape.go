package ui

import (
	"bytes"
	"encoding/json"

	"github.com/tasqhq/tasq/internal/textesc"
)

// Every value the pages show came from tasks or the people who dispatch
// them: kinds, queue names, payloads, results, error texts, worker IDs.
// html/template escapes HTML in all of them; on top of that, the pages make
// control characters visible, as the CLI does (package internal/textesc): a
// terminal escape or a bidi override in an error text is shown as \x1b or
// \u202e, not obeyed by whatever the operator copies it into.

// oneLine is textesc.OneLine: every control, bidi or separator character
// and every byte that is not UTF-8 written as a visible escape.
func oneLine(s string) string { return textesc.OneLine(s) }

// multiLine is oneLine that keeps newlines, for text shown over several lines.
func multiLine(s string) string { return textesc.MultiLine(s) }

// prettyJSON returns raw indented for display, with the characters
// textesc.JSONSafe escapes written as \u escapes (the same JSON value).
// Text that is not valid JSON is shown escaped as it is.
func prettyJSON(raw []byte) string {
	if len(raw) == 0 {
		return ""
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return multiLine(string(raw))
	}
	return string(textesc.JSONSafe(buf.Bytes()))
}
