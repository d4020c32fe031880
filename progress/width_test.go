package progress

import "testing"

// cellWidth counts cells without the cells package: everything from the
// CJK radicals up as two, which is right for the names below.
func cellWidth(s string) int {
	n := 0
	for _, r := range s {
		if r >= 0x2E80 {
			n += 2
		} else {
			n++
		}
	}
	return n
}

// A wide (CJK) step name or output line must not make a row wider than
// the terminal: it would wrap, and the next redraw's cursor-up by the
// number of rows would no longer reach the top of the view.
func TestTTYLinesFitTheTerminalInCells(t *testing.T) {
	for _, width := range []int{1, 2, 5, 12, 40, 80} {
		p, _, _, _ := ttyAt(width, 0)
		vs := begin(p, "[1/2] FROM busybox", "[2/2] RUN echo 日本語のテキスト日本語のテキスト日本語のテキスト")
		p.Logger(vs[1]).Write([]byte("テキスト日本語のテキスト日本語のテキスト日本語\n"))
		for _, l := range p.r.(*ttyRenderer).frame(p, false) {
			if n := cellWidth(l); n > width-1 && n > 0 {
				t.Errorf("%d cells on a %d-column terminal: %q", n, width, l)
			}
		}
	}
}
