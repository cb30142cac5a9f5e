package queue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"
)

// Tags and metadata: labels and a JSON object a dispatch attaches to its
// job. Neither is part of the payload the task decodes: they say where the
// job came from (a tenant, a request, a deploy) for the people and programs
// that look at jobs, which find them in `tasq jobs list --tag`, `tasq jobs
// show` and in SQL (tasq_jobs.tags, tasq_jobs.meta).

// Limits on tags and metadata, checked at dispatch.
const (
	// MaxTags is the most tags one job may have.
	MaxTags = 16
	// MaxTagLength is the longest tag, in bytes.
	MaxTagLength = 64
	// MaxMetaBytes is the largest metadata object, encoded as JSON.
	MaxMetaBytes = 8 << 10
)

// ErrTagsUnsupported means a job with tags or metadata went to a backend
// that cannot store them; nothing was stored. It wraps errors.ErrUnsupported.
var ErrTagsUnsupported = fmt.Errorf("tasq: tags and metadata are not supported by this backend: %w", errors.ErrUnsupported)

// dispatchExt holds the dispatch options of unique.go and tags.go.
type dispatchExt struct {
	unique *UniqueOpts
	tags   []string
	meta   json.RawMessage
	deps   depOpts // deps.go
}

// WithTags adds tags to the job: short labels to find it by (`tasq jobs
// list --tag`, or WHERE tags @> '{tenant:42}' in SQL). A tag is 1 to
// MaxTagLength bytes of ASCII letters, digits and _ - . : / = + @ (so
// "tenant:42" or "env=prod"); a job has at most MaxTags of them. Given
// twice, a tag is kept once; tags keep the order they were given in.
// Options given more than once add up.
func WithTags(tags ...string) DispatchOption {
	return func(o *dispatchOpts) error {
		for _, t := range tags {
			if err := CheckTag(t); err != nil {
				return fmt.Errorf("WithTags: %w", err)
			}
			if !slices.Contains(o.ext.tags, t) {
				o.ext.tags = append(o.ext.tags, t)
			}
		}
		if len(o.ext.tags) > MaxTags {
			return fmt.Errorf("%w: WithTags: %d tags; a job has at most %d", ErrInvalidConfig, len(o.ext.tags), MaxTags)
		}
		return nil
	}
}

// Tags adds tags to the job. See the function WithTags.
func (p *Pending) Tags(tags ...string) *Pending { p.opts = append(p.opts, WithTags(tags...)); return p }

// WithMeta attaches metadata to the job: a JSON object of what the caller
// wants to find with it (a request ID, who dispatched it), stored in the
// meta column, shown by `tasq jobs show`. meta is a json.RawMessage or
// []byte holding a JSON object, or a value that encodes as one (a map, a
// struct); nil means none. The encoded object may take MaxMetaBytes. A
// second WithMeta replaces the first.
func WithMeta(meta any) DispatchOption {
	return func(o *dispatchOpts) error {
		raw, err := encodeMeta(meta)
		if err != nil {
			return fmt.Errorf("WithMeta: %w", err)
		}
		o.ext.meta = raw
		return nil
	}
}

// Meta attaches metadata to the job. See the function WithMeta.
func (p *Pending) Meta(meta any) *Pending { p.opts = append(p.opts, WithMeta(meta)); return p }

// encodeMeta turns WithMeta's argument into a checked JSON object, or nil.
func encodeMeta(meta any) (json.RawMessage, error) {
	var raw []byte
	switch m := meta.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		raw = m
	case []byte:
		raw = m
	default:
		if err := checkStrings(meta); err != nil {
			return nil, fmt.Errorf("metadata: %w", err)
		}
		b, err := json.Marshal(meta)
		if err != nil {
			return nil, fmt.Errorf("%w: cannot encode the metadata as JSON: %w", ErrInvalidConfig, err)
		}
		raw = b
	}
	if raw == nil || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, nil
	}
	if err := CheckMeta(raw); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return nil, fmt.Errorf("%w: metadata is not valid JSON: %w", ErrInvalidConfig, err)
	}
	if b.String() == "{}" {
		return nil, nil
	}
	return b.Bytes(), nil
}

// CheckTag reports whether t can be a tag (see WithTags).
func CheckTag(t string) error {
	if t == "" {
		return fmt.Errorf("%w: a tag is empty", ErrInvalidConfig)
	}
	if len(t) > MaxTagLength {
		return fmt.Errorf("%w: tag %.20q... is %d bytes; the limit is %d", ErrInvalidConfig, t, len(t), MaxTagLength)
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		switch c {
		case '_', '-', '.', ':', '/', '=', '+', '@':
			continue
		}
		return fmt.Errorf("%w: tag %q holds %q at byte %d; a tag is ASCII letters, digits and _ - . : / = + @", ErrInvalidConfig, t, c, i)
	}
	return nil
}

// CheckMeta reports whether raw can be a job's metadata: a JSON object of
// at most MaxMetaBytes, without a NUL character (which PostgreSQL's jsonb
// refuses).
func CheckMeta(raw []byte) error {
	if len(raw) > MaxMetaBytes {
		return fmt.Errorf("%w: metadata is %d bytes of JSON; the limit is %d (put large values in the payload)", ErrInvalidConfig, len(raw), MaxMetaBytes)
	}
	if !json.Valid(raw) {
		return fmt.Errorf("%w: metadata is not valid JSON", ErrInvalidConfig)
	}
	if !utf8.Valid(raw) {
		return fmt.Errorf("%w: metadata holds invalid UTF-8", ErrInvalidConfig)
	}
	if b := bytes.TrimSpace(raw); !bytes.HasPrefix(b, []byte("{")) {
		return fmt.Errorf("%w: metadata must be a JSON object ({\"key\": value, ...}), not %.20s", ErrInvalidConfig, b)
	}
	if i := nulEscape(raw); i >= 0 {
		return fmt.Errorf("%w: metadata holds a NUL character (\\u0000 at byte %d), which PostgreSQL cannot store", ErrInvalidConfig, i)
	}
	return nil
}

// checkTagsJob checks the tags and metadata of one NewJob.
func checkTagsJob(i int, j *NewJob) error {
	if len(j.Tags) > MaxTags {
		return fmt.Errorf("%w: job %d (%s) has %d tags; the limit is %d", ErrInvalidConfig, i, j.Kind, len(j.Tags), MaxTags)
	}
	for k, t := range j.Tags {
		if err := CheckTag(t); err != nil {
			return fmt.Errorf("job %d (%s): %w", i, j.Kind, err)
		}
		if slices.Contains(j.Tags[:k], t) {
			return fmt.Errorf("%w: job %d (%s) has tag %q twice", ErrInvalidConfig, i, j.Kind, t)
		}
	}
	if len(j.Meta) > 0 {
		if err := CheckMeta(j.Meta); err != nil {
			return fmt.Errorf("job %d (%s): %w", i, j.Kind, err)
		}
	}
	return nil
}

// checkJobExtras checks what a NewJob carries beyond the core columns:
// unique key, tags and metadata. CheckNewJobs calls it.
func checkJobExtras(i int, j *NewJob) error {
	if err := checkUniqueJob(i, j); err != nil {
		return err
	}
	return checkTagsJob(i, j)
}

// CheckPlainJobs is for adapters that store neither unique keys, tags and
// metadata nor dependencies: it refuses a batch in which a job has any of
// them, naming driver, with an error wrapping ErrUniqueUnsupported,
// ErrTagsUnsupported or ErrDepsUnsupported (and so errors.ErrUnsupported). Such an adapter calls
// it with CheckNewJobs, so that nothing is silently dropped.
func CheckPlainJobs(driver string, jobs []NewJob) error {
	for i := range jobs {
		j := &jobs[i]
		if j.UniqueKey != nil {
			return fmt.Errorf("%w: driver %s cannot enforce the unique key of job %d (%s); dispatch it to postgres, or without WithUnique (and without a Unique method)", ErrUniqueUnsupported, driver, i, j.Kind)
		}
		if len(j.Tags) > 0 || len(j.Meta) > 0 {
			return fmt.Errorf("%w: driver %s cannot store the tags or metadata of job %d (%s); dispatch it without WithTags and WithMeta, or to postgres", ErrTagsUnsupported, driver, i, j.Kind)
		}
	}
	return checkPlainDeps(driver, jobs)
}

// setTags gives job the tags and metadata of the dispatch options.
func (x *dispatchExt) setTags(job *NewJob) {
	job.Tags = x.tags
	job.Meta = x.meta
}
