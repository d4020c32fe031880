package cells

import "testing"

func TestWidthCountsWideCharactersTwiceAndMarksNot(t *testing.T) {
	for _, c := range []struct {
		s    string
		want int
	}{
		{"", 0},
		{"RUN make", 8},
		{"é", 1},            // precomposed
		{"e\u0301", 1},      // e and a combining acute accent
		{"日本語", 6},          // CJK
		{"한국어", 6},          // Hangul syllables
		{"\u1100\u1161", 2}, // a syllable of conjoining Jamo
		{"ＡＢ", 4},           // fullwidth forms
		{"カタカナ", 8},         // Katakana
		{"🚀", 2},            // emoji
		{"👍\U0001F3FD", 4},  // emoji and a skin tone: as wide as terminals without grapheme support draw it
		{"⌚", 2},            // an emoji in the BMP
		{"a\u200bb", 2},     // a zero-width space
		{"✓", 1},            // a narrow symbol
		{"…", 1},
	} {
		if got := Width(c.s); got != c.want {
			t.Errorf("Width(%q) = %d, want %d", c.s, got, c.want)
		}
	}
}

func TestCutNeverSplitsAWideCharacterOrDropsItsMarks(t *testing.T) {
	for _, c := range []struct {
		s    string
		n    int
		want string
	}{
		{"hello", 10, "hello"},
		{"hello", 3, "hel"},
		{"hello", 0, ""},
		{"hello", -1, ""},
		{"日本語", 4, "日本"},
		{"日本語", 5, "日本"}, // 語 would straddle the edge
		{"ae\u0301b", 2, "ae\u0301"},
		{"a日", 2, "a"},
	} {
		if got := Cut(c.s, c.n); got != c.want {
			t.Errorf("Cut(%q, %d) = %q, want %q", c.s, c.n, got, c.want)
		}
		if w := Width(Cut(c.s, c.n)); w > c.n && c.n >= 0 {
			t.Errorf("Cut(%q, %d) is %d cells wide", c.s, c.n, w)
		}
	}
}

func TestEllipsisEndsACutStringWithAnEllipsis(t *testing.T) {
	for _, c := range []struct {
		s    string
		n    int
		want string
	}{
		{"hello", 5, "hello"},
		{"hello!", 5, "hell…"},
		{"日本語のテキスト", 7, "日本語…"},
		{"日本語", 6, "日本語"},
		{"hello", 1, "…"},
		{"hello", 0, ""},
	} {
		if got := Ellipsis(c.s, c.n); got != c.want {
			t.Errorf("Ellipsis(%q, %d) = %q, want %q", c.s, c.n, got, c.want)
		}
	}
}
