package pgschema

import (
	"strings"
	"testing"
)

// TestChannelsFitTheLongestSchema: every channel of the longest schema name
// Check accepts fits PostgreSQL's 63-byte names (pg_notify refuses a longer
// one, while LISTEN would silently truncate it and hear nothing), and the
// three channels of one schema differ from each other and from every channel
// of another schema.
func TestChannelsFitTheLongestSchema(t *testing.T) {
	longest := strings.Repeat("s", MaxLength)
	if err := Check(longest); err != nil {
		t.Fatalf("Check(%d bytes): %v", MaxLength, err)
	}
	for _, name := range []string{Channel(longest), ControlChannel(longest), DoneChannel(longest), OutboxChannel(longest)} {
		if len(name) > 63 {
			t.Errorf("channel %q is %d bytes, over 63", name, len(name))
		}
	}
	seen := map[string]string{}
	for _, schema := range []string{Default, "billing", "cancel", "ctrl", "done", "jobs", longest} {
		for kind, name := range map[string]string{"wake": Channel(schema), "ctrl": ControlChannel(schema), "done": DoneChannel(schema), "send": OutboxChannel(schema)} {
			who := kind + " of " + schema
			if other, dup := seen[name]; dup {
				t.Errorf("channel %q is both the %s and the %s", name, other, who)
			}
			seen[name] = who
		}
	}
	if ControlChannel(Default) != "tasq_ctrl" || DoneChannel("billing") != "tasq_done.billing" {
		t.Errorf("ControlChannel(public) = %q, DoneChannel(billing) = %q", ControlChannel(Default), DoneChannel("billing"))
	}
}
