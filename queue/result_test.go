package queue

import (
	"context"
	"testing"
)

type noResultTask struct{}

func (noResultTask) Kind() string                             { return "no_result" }
func (noResultTask) Handle(context.Context) (struct{}, error) { return struct{}{}, nil }

type emptyResult struct{}

type emptyNamedTask struct{}

func (emptyNamedTask) Kind() string                                { return "empty_named" }
func (emptyNamedTask) Handle(context.Context) (emptyResult, error) { return emptyResult{}, nil }

type intTask struct{}

func (intTask) Kind() string                        { return "int_result" }
func (intTask) Handle(context.Context) (int, error) { return 0, nil }

// A task whose result type is struct{} has no result: none is stored. Any
// other type's value is, its zero value and a named empty struct included.
func TestHandleStoresNoResultForStructNothing(t *testing.T) {
	reg := NewRegistry()
	for _, err := range []error{Register(reg, noResultTask{}), Register(reg, emptyNamedTask{}), Register(reg, intTask{})} {
		if err != nil {
			t.Fatal(err)
		}
	}
	for kind, want := range map[string]string{"no_result": "", "empty_named": "{}", "int_result": "0"} {
		x, err := reg.Prepare(kind, []byte(`{}`), Metadata{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := x.Handle(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want || (want == "" && got != nil) {
			t.Errorf("%s: result %q, want %q", kind, got, want)
		}
	}
}
