package readers

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestWithContextStopsWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r := WithContext(ctx, strings.NewReader("abcdef"))
	buf := make([]byte, 3)
	if n, err := r.Read(buf); n != 3 || err != nil {
		t.Fatalf("read before cancel: %d, %v", n, err)
	}
	cancel()
	if n, err := r.Read(buf); n != 0 || !errors.Is(err, context.Canceled) {
		t.Errorf("read after cancel: %d, %v; want 0, context.Canceled", n, err)
	}
}

func TestCountingCountsWhatPassesThrough(t *testing.T) {
	c := &Counting{R: strings.NewReader("hello, world")}
	if _, err := io.Copy(io.Discard, c); err != nil || c.N != 12 {
		t.Errorf("Counting: N=%d, %v; want 12", c.N, err)
	}
}
