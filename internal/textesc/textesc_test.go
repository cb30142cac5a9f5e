package textesc

import (
	"encoding/json"
	"testing"
)

func TestOneLineAndMultiLine(t *testing.T) {
	for _, c := range []struct{ in, one, multi string }{
		{"plain text", "plain text", "plain text"},
		{"a\nb\tc\r", `a\nb\tc\r`, "a\nb\\tc\\r"},
		{"\x1b]0;pwned\x07", `\x1b]0;pwned\x07`, `\x1b]0;pwned\x07`},
		{"del\x7f c1\u009b bidi\u202e sep\u2028", `del\x7f c1\u009b bidi\u202e sep\u2028`, `del\x7f c1\u009b bidi\u202e sep\u2028`},
		{"bad \xff utf8", `bad \xff utf8`, `bad \xff utf8`},
		{"ünïcode ok", "ünïcode ok", "ünïcode ok"},
	} {
		if got := OneLine(c.in); got != c.one {
			t.Errorf("OneLine(%q) = %q, want %q", c.in, got, c.one)
		}
		if got := MultiLine(c.in); got != c.multi {
			t.Errorf("MultiLine(%q) = %q, want %q", c.in, got, c.multi)
		}
	}
}

func TestJSONSafeKeepsTheValue(t *testing.T) {
	in := []byte("{\"e\": \"x\u009by\u202ez\x7f\", \"b\": \"\xff\"}")
	out := JSONSafe(in)
	for _, b := range out {
		if b >= 0x80 || b == 0x7f {
			t.Fatalf("JSONSafe(%q) = %q still holds byte %#x", in, out, b)
		}
	}
	var got, want map[string]string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("JSONSafe output is not JSON: %v (%q)", err, out)
	}
	_ = json.Unmarshal(in, &want)
	if got["e"] != want["e"] || got["b"] != want["b"] {
		t.Fatalf("JSONSafe changed the value: %q, want %q", got, want)
	}
	if clean := []byte(`{"a": "b"}`); string(JSONSafe(clean)) != string(clean) {
		t.Fatalf("JSONSafe changed clean JSON")
	}
}
