package sqs

import (
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"sqs://us-east-1?prefix=app-&region=eu-west-1", "sqs://us-east-1?prefix=app-&region=eu-west-1"},
		{"http://127.0.0.1:9324", "http://127.0.0.1:9324"},
		{"http://AKID:s3cr3t@127.0.0.1:9324/p?prefix=a-&session_token=t0k3n&X-Amz-Signature=s1gn#top",
			"http://AKID:xxxxx@127.0.0.1:9324/p?prefix=a-&session_token=xxxxx&X-Amz-Signature=xxxxx#top"},
		{"sqs://AKID:s3cr3t@eu-west-1", "sqs://AKID:xxxxx@eu-west-1"},
		{"https://t0k3n@sqs.example.internal", "https://xxxxx@sqs.example.internal"},
		{"AKID:s3cr3t@eu-west-1", "akid:xxxxx@eu-west-1"}, // parsed as scheme "akid"
		{"http://h?password=s3cr3t&aws_secret_access_key=s3cr3t&apikey=t0k3n&region=x", "http://h?password=xxxxx&aws_secret_access_key=xxxxx&apikey=xxxxx&region=x"},
		{"http://h#access_token=t0k3n", "http://h#xxxxx"},
		// url.Parse refuses these; they are scrubbed by hand.
		{"http://AKID:s3cr3t@[::1", "http://xxxxx@[::1"},
		{"http://AKID:s3cr3t@h/%zz?secret=t0k3n&prefix=p", "http://xxxxx@h/%zz?secret=xxxxx&prefix=p"},
		{"http://u:s3cr3t@h:port:bad/x#a=t0k3n", "http://xxxxx@h:port:bad/x#xxxxx"},
	} {
		got := redactURL(c.in)
		if got != c.want {
			t.Errorf("redactURL(%q) = %q, want %q", c.in, got, c.want)
		}
		for _, secret := range []string{"s3cr3t", "t0k3n", "s1gn"} {
			if strings.Contains(got, secret) {
				t.Errorf("redactURL(%q) = %q still shows %q", c.in, got, secret)
			}
		}
	}
}
