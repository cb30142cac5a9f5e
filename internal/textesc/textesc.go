// Package textesc makes text that tasks and dispatchers stored safe to show
// to people: in a terminal (the CLI) and in a web page (the dashboard). Kinds,
// queue names, payloads, results, error texts and worker IDs may hold
// terminal control sequences or characters that reorder displayed text (an
// error text quoting a remote server's reply, a payload built from user
// input). Every such character is written as a visible escape instead:
// \x1b, \n, \u009b, \u202e, \xff.
package textesc

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"
)

// OneLine returns s made safe for a one-line field or table cell: every C0
// control character (tab and newline included), DEL, every C1 control, the
// Unicode characters that reorder or break displayed text (bidi formatting,
// line and paragraph separators), and every byte that is not UTF-8 are
// written as escapes. Backslashes are left alone, so the result is for
// people to read, not to parse back.
func OneLine(s string) string { return escape(s, false) }

// MultiLine is OneLine for text displayed over several lines: it keeps
// newlines and escapes the rest alike, carriage returns included.
func MultiLine(s string) string { return escape(s, true) }

func escape(s string, keepNewlines bool) string {
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

// needsEscape reports whether escape would change s.
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

// unsafeRune reports whether r, a rune at or above 0x80, is a C1 control
// (terminals treat U+009B as CSI, U+009D as OSC, ...) or a character that
// reorders or breaks the displayed text: the bidi formatting characters
// (the "Trojan Source" ones) and the line and paragraph separators.
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

// JSONSafe escapes, in JSON text that encoding/json wrote, what JSON allows
// raw inside strings but a terminal may obey: DEL, the C1 controls and the
// bidi and separator characters become \u escapes, which decode to the same
// characters, and bytes that are not UTF-8 become \ufffd (a JSON decoder
// reads them as U+FFFD anyway). C0 controls need nothing: encoding/json
// escapes them inside strings, and outside strings there is only the
// indentation's whitespace. Such characters can only be inside strings, so
// the result is valid JSON with the same meaning.
func JSONSafe(b []byte) []byte {
	clean := true
	for i := 0; i < len(b); {
		if b[i] < utf8.RuneSelf {
			if b[i] == 0x7f {
				clean = false
				break
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if (r == utf8.RuneError && size == 1) || unsafeRune(r) {
			clean = false
			break
		}
		i += size
	}
	if clean {
		return b
	}
	var out bytes.Buffer
	out.Grow(len(b) + 16)
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			out.WriteString(`\ufffd`)
		case r == 0x7f || (r >= utf8.RuneSelf && unsafeRune(r)):
			fmt.Fprintf(&out, `\u%04x`, r)
		default:
			out.Write(b[i : i+size])
		}
		i += size
	}
	return out.Bytes()
}
