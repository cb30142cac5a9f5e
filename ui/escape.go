package ui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Every value the pages show came from tasks or the people who dispatch
// them: kinds, queue names, payloads, results, error texts, worker IDs.
// html/template escapes HTML in all of them; on top of that, the pages make
// control characters visible, as the CLI does (cmd/tasq/cli/escape.go): a
// terminal escape or a bidi override in an error text is shown as \x1b or
// \u202e, not obeyed by whatever the operator copies it into.

// oneLine returns s with every C0 control (tab and newline included), DEL,
// C1 control, bidi formatting or line-separator character and every byte
// that is not UTF-8 written as a visible escape.
func oneLine(s string) string { return escapeText(s, false) }

// multiLine is oneLine that keeps newlines, for text shown over several lines.
func multiLine(s string) string { return escapeText(s, true) }

func escapeText(s string, keepNewlines bool) string {
	if !needsEscape(s, keepNewlines) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n' && keepNewlines:
			b.WriteByte('\n')
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case unsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func needsEscape(s string, keepNewlines bool) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if (c < 0x20 && !(keepNewlines && c == '\n')) || c == 0x7f {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || unsafeRune(r) {
			return true
		}
		i += size
	}
	return false
}

// unsafeRune reports whether r is a C1 control or a character that reorders
// or breaks displayed text (bidi formatting, line and paragraph separators).
func unsafeRune(r rune) bool {
	switch {
	case r >= 0x80 && r <= 0x9f:
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f, r == 0x2028, r == 0x2029:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}

// prettyJSON returns raw indented for display, with the characters
// unsafeRune names written as \u escapes (the same JSON value). Text that is
// not valid JSON is shown escaped as it is.
func prettyJSON(raw []byte) string {
	if len(raw) == 0 {
		return ""
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return multiLine(string(raw))
	}
	out := buf.Bytes()
	var b strings.Builder
	for i := 0; i < len(out); {
		r, size := utf8.DecodeRune(out[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteString(`\ufffd`)
		case r == 0x7f || (r >= utf8.RuneSelf && unsafeRune(r)):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.Write(out[i : i+size])
		}
		i += size
	}
	return b.String()
}
