package sqs

import (
	"net/url"
	"strings"
)

// redactedMark replaces secrets in URLs shown in errors and logs; it is
// what url.URL.Redacted writes for a password.
const redactedMark = "xxxxx"

// secretParamWords are parts of query-parameter names whose values are
// secrets (compared in lower case): password, secret_key, session_token,
// X-Amz-Signature, X-Amz-Credential, access_key, auth, ...
var secretParamWords = []string{"pass", "pwd", "secret", "token", "sig", "credential", "key", "auth"}

// secretParam reports whether the query parameter name carries a secret.
func secretParam(name string) bool {
	n := strings.ToLower(name)
	for _, w := range secretParamWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// redactURL returns raw fit for an error or log message: the password of
// its user info (or a user name given alone, which may be a token; an AWS
// access key ID with its secret stays, as AWS's own messages show it), and the values of query parameters that look secret (see
// secretParam) are replaced by "xxxxx". It works on text url.Parse refuses
// too, so that a URL that cannot be parsed is not shown whole either.
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		if u.Opaque != "" {
			// "key:secret@host" parses as scheme "key", opaque "secret@host".
			if at := strings.LastIndexByte(u.Opaque, '@'); at >= 0 {
				u.Opaque = redactedMark + u.Opaque[at:]
			}
		}
		if u.User != nil {
			if _, ok := u.User.Password(); !ok && u.User.Username() != "" {
				// A lone user name may be a token ("https://TOKEN@host").
				u.User = url.User(redactedMark)
			}
		}
		u.RawQuery = redactQuery(u.RawQuery)
		u.Fragment, u.RawFragment = redactFragment(u.Fragment), ""
		return u.Redacted()
	}
	// Unparsable: scrub by hand. User info is whatever precedes the last
	// '@' of the authority.
	s := raw
	rest, frag, hasFrag := strings.Cut(s, "#")
	s = rest
	head, query, hasQuery := strings.Cut(s, "?")
	start := 0
	if i := strings.Index(head, "://"); i >= 0 {
		start = i + 3
	}
	end := len(head)
	if i := strings.IndexByte(head[start:], '/'); i >= 0 {
		end = start + i
	}
	if at := strings.LastIndexByte(head[start:end], '@'); at >= 0 {
		head = head[:start] + redactedMark + head[start+at:]
	}
	out := head
	if hasQuery {
		out += "?" + redactQuery(query)
	}
	if hasFrag {
		out += "#" + redactFragment(frag)
	}
	return out
}

// redactQuery replaces the values of secret parameters in a raw query,
// keeping the parameters' order and spelling.
func redactQuery(q string) string {
	if q == "" {
		return q
	}
	parts := strings.Split(q, "&")
	for i, p := range parts {
		k, _, hasValue := strings.Cut(p, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			name = k
		}
		if hasValue && secretParam(name) {
			parts[i] = k + "=" + redactedMark
		}
	}
	return strings.Join(parts, "&")
}

// redactFragment hides a fragment that holds an '=' or '@' (it may carry
// parameters or credentials); a plain anchor is kept.
func redactFragment(f string) string {
	if strings.ContainsAny(f, "=@") {
		return redactedMark
	}
	return f
}
