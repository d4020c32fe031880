package ops

import (
	"context"
	"reflect"
	"strings"
	"testing"
)

// definitions lists one of each op definition a frontend builds.
var definitions = []any{&Exec{}, &Copy{}, &Mkdir{}, &WriteFiles{}, &Download{}, &Image{}, Scratch{}}

func TestDefinitionsHoldNoWorker(t *testing.T) {
	worker := reflect.TypeOf(&Worker{})
	for _, def := range definitions {
		typ := reflect.TypeOf(def)
		if typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		for i := 0; i < typ.NumField(); i++ {
			if f := typ.Field(i); f.Type == worker || f.Type == worker.Elem() {
				t.Errorf("%s.%s is a Worker: a definition gets its worker from Bind", typ.Name(), f.Name)
			}
		}
	}
}

func TestBindKeysLikeTheDefinition(t *testing.T) {
	w := &Worker{}
	for _, def := range definitions {
		op, err := w.Bind(def)
		if err != nil {
			t.Fatalf("Bind(%T): %v", def, err)
		}
		d, ok := def.(definition)
		if !ok {
			continue // a download's key is its fetched content
		}
		want, err := d.CacheKey(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		got, err := op.CacheKey(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("bound %T keys %v, its definition %v", def, got, want)
		}
	}
	if _, err := w.Bind("RUN make"); err == nil || !strings.Contains(err.Error(), "not an op definition") {
		t.Errorf("Bind of a string: err = %v, want not an op definition", err)
	}
}
