package queue

import (
	"fmt"
	"reflect"
	"strings"
	"unicode/utf8"
)

// MaxRetriesLimit is the largest MaxRetries a task may have: a bound every
// backend stores exactly (the PostgreSQL schema checks it too).
const MaxRetriesLimit = 1_000_000

// checkStrings walks the exported fields of a task value and reports the
// first string that cannot travel in a payload unchanged: invalid UTF-8
// (encoding/json would silently replace it with U+FFFD) or a NUL character
// (PostgreSQL's jsonb refuses \u0000). The error names the field.
func checkStrings(v any) error {
	return walkStrings(reflect.ValueOf(v), "", 0)
}

// maxWalkDepth bounds the walk, so a cyclic value cannot loop for ever.
const maxWalkDepth = 32

func walkStrings(v reflect.Value, path string, depth int) error {
	if depth > maxWalkDepth || !v.IsValid() {
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		return checkString(v.String(), path)
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return walkStrings(v.Elem(), path, depth+1)
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() || f.Tag.Get("json") == "-" {
				continue
			}
			if err := walkStrings(v.Field(i), join(path, f.Name), depth+1); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return nil // []byte travels as base64
		}
		for i := range v.Len() {
			if err := walkStrings(v.Index(i), fmt.Sprintf("%s[%d]", path, i), depth+1); err != nil {
				return err
			}
		}
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			k := fmt.Sprint(it.Key().Interface())
			if it.Key().Kind() == reflect.String {
				if err := checkString(it.Key().String(), path+" (a map key)"); err != nil {
					return err
				}
			}
			if err := walkStrings(it.Value(), fmt.Sprintf("%s[%q]", path, k), depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func checkString(s, path string) error {
	if path == "" {
		path = "the task"
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: field %s holds invalid UTF-8, which a JSON payload cannot carry unchanged; send bytes as a []byte field (base64) or fix the text", ErrInvalidPayload, path)
	}
	if i := strings.IndexByte(s, 0); i >= 0 {
		return fmt.Errorf("%w: field %s holds a NUL character at byte %d, which PostgreSQL cannot store in a JSON payload; remove it, or send the data as a []byte field (base64)", ErrInvalidPayload, path, i)
	}
	return nil
}
