package cli

import (
	"encoding/json"
	"testing"
)

func TestEscapeText(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in, oneLine, multiLine string
	}{
		{"plain text, ünïcödé, 日本, emoji 🙂", "plain text, ünïcödé, 日本, emoji 🙂", "plain text, ünïcödé, 日本, emoji 🙂"},
		{`a\b C:\path`, `a\b C:\path`, `a\b C:\path`},
		{"\x1b]0;pwned\x07\x1b[2J", `\x1b]0;pwned\x07\x1b[2J`, `\x1b]0;pwned\x07\x1b[2J`},
		{"a\nb\r\nc\td", `a\nb\r\nc\td`, "a\nb\\r\nc\\td"},
		{"nul\x00 del\x7f", `nul\x00 del\x7f`, `nul\x00 del\x7f`},
		{"c1 \u0080 \u009b31m \u009d", `c1 \u0080 \u009b31m \u009d`, `c1 \u0080 \u009b31m \u009d`},
		{"bidi \u202e \u2066 \u200f ls\u2028ps\u2029", `bidi \u202e \u2066 \u200f ls\u2028ps\u2029`, `bidi \u202e \u2066 \u200f ls\u2028ps\u2029`},
		{"bad utf8 \xff\x9b \xc3", `bad utf8 \xff\x9b \xc3`, `bad utf8 \xff\x9b \xc3`},
		{"genuine \ufffd stays", "genuine \ufffd stays", "genuine \ufffd stays"},
		{"", "", ""},
	} {
		if got := oneLine(c.in); got != c.oneLine {
			t.Errorf("oneLine(%q) = %q; want %q", c.in, got, c.oneLine)
		}
		if got := multiLine(c.in); got != c.multiLine {
			t.Errorf("multiLine(%q) = %q; want %q", c.in, got, c.multiLine)
		}
	}
}

func TestJSONSafe(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"plain", "\x1b[2J", "del\x7f", "c1 \u009b31m", "rlo \u202e", "日本 🙂", "sep\u2028"} {
		raw, err := json.Marshal(map[string]string{"s": s})
		if err != nil {
			t.Fatal(err)
		}
		safe := jsonSafe(raw)
		if oneLine(string(safe)) != string(safe) {
			t.Errorf("jsonSafe(%s) = %q still holds characters a terminal obeys", raw, safe)
		}
		var back map[string]string
		if err := json.Unmarshal(safe, &back); err != nil || back["s"] != s {
			t.Errorf("jsonSafe(%s) = %s decodes to %q (%v); want %q", raw, safe, back["s"], err, s)
		}
	}
	// Bytes that are not UTF-8, as a json.RawMessage may carry them, become
	// U+FFFD escapes: what a decoder would read anyway.
	if got := string(jsonSafe([]byte("{\"s\": \"a\xffb\"}"))); got != `{"s": "a\ufffdb"}` {
		t.Errorf("jsonSafe of invalid UTF-8 = %q", got)
	}
}
