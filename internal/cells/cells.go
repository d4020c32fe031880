// Package cells measures text in terminal cells, the unit a terminal view
// and a table column are cut in: a wide character (CJK, Hangul,
// fullwidth forms, most emoji) takes two cells, a combining mark none,
// anything else one. Width, Cut and Ellipsis cut text to fit a terminal
// row or a table column.
//
// The table of wide characters is a compact cover of Unicode's East Asian
// Wide and Fullwidth ranges and of the emoji shown as pictures.
// Ambiguous-width symbols ("…", "✓") take one cell, as terminals outside
// CJK locales draw them. An emoji sequence (a skin tone, a joiner) counts
// each picture in it as two cells, no fewer than a terminal draws: a line
// measured too wide only ends a little early, one measured too narrow
// wraps and breaks a redrawn view.
package cells

import (
	"sort"
	"unicode"
)

// wide are the ranges of two-cell characters, sorted.
var wide = [][2]rune{
	{0x1100, 0x115F}, // Hangul Jamo initial consonants
	{0x231A, 0x231B}, {0x2329, 0x232A}, {0x23E9, 0x23EC}, {0x23F0, 0x23F0}, {0x23F3, 0x23F3},
	{0x25FD, 0x25FE}, {0x2614, 0x2615}, {0x2648, 0x2653}, {0x267F, 0x267F}, {0x2693, 0x2693},
	{0x26A1, 0x26A1}, {0x26AA, 0x26AB}, {0x26BD, 0x26BE}, {0x26C4, 0x26C5}, {0x26CE, 0x26CE},
	{0x26D4, 0x26D4}, {0x26EA, 0x26EA}, {0x26F2, 0x26F3}, {0x26F5, 0x26F5}, {0x26FA, 0x26FA},
	{0x26FD, 0x26FD}, {0x2705, 0x2705}, {0x270A, 0x270B}, {0x2728, 0x2728}, {0x274C, 0x274C},
	{0x274E, 0x274E}, {0x2753, 0x2755}, {0x2757, 0x2757}, {0x2795, 0x2797}, {0x27B0, 0x27B0},
	{0x27BF, 0x27BF}, {0x2B1B, 0x2B1C}, {0x2B50, 0x2B50}, {0x2B55, 0x2B55}, // emoji in the BMP
	{0x2E80, 0x303E},   // CJK radicals, Kangxi, ideographic description, CJK symbols and punctuation
	{0x3041, 0x33FF},   // Hiragana, Katakana, Bopomofo, Hangul compatibility Jamo, CJK strokes, enclosed CJK, CJK compatibility
	{0x3400, 0x4DBF},   // CJK extension A
	{0x4E00, 0x9FFF},   // CJK unified ideographs
	{0xA000, 0xA4CF},   // Yi
	{0xA960, 0xA97F},   // Hangul Jamo extended A
	{0xAC00, 0xD7A3},   // Hangul syllables
	{0xF900, 0xFAFF},   // CJK compatibility ideographs
	{0xFE10, 0xFE19},   // vertical forms
	{0xFE30, 0xFE6F},   // CJK compatibility forms, small form variants
	{0xFF00, 0xFF60},   // fullwidth forms
	{0xFFE0, 0xFFE6},   // fullwidth signs
	{0x16FE0, 0x16FE4}, // ideographic symbols
	{0x17000, 0x18CFF}, // Tangut, Khitan
	{0x1AFF0, 0x1B2FF}, // Kana supplement and extensions, Nushu
	{0x1F004, 0x1F004}, {0x1F0CF, 0x1F0CF}, {0x1F18E, 0x1F18E}, {0x1F191, 0x1F19A},
	{0x1F200, 0x1F2FF}, // enclosed ideographic supplement
	{0x1F300, 0x1F64F}, // pictographs, emoticons
	{0x1F680, 0x1F6FF}, // transport and map symbols
	{0x1F7E0, 0x1F7EB},
	{0x1F900, 0x1F9FF}, // supplemental symbols and pictographs
	{0x1FA70, 0x1FAFF}, // symbols and pictographs extended A
	{0x20000, 0x2FFFD}, // CJK extensions B–F, compatibility supplement
	{0x30000, 0x3FFFD}, // CJK extensions G, H
}

// RuneWidth is the cells r takes: 0 for a combining mark, a format
// character (a zero-width joiner, a variation selector) or a control
// character, 2 for a wide one, else 1.
func RuneWidth(r rune) int {
	switch {
	case r < 0x20 || r == 0x7F:
		return 0
	case r < 0x300:
		return 1 // Latin: the common case, decided without a look-up
	case unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf) || (r >= 0x1160 && r <= 0x11FF):
		return 0 // 1160–11FF: Hangul Jamo vowels and finals, drawn into the syllable before them
	}
	i := sort.Search(len(wide), func(i int) bool { return wide[i][1] >= r })
	if i < len(wide) && wide[i][0] <= r {
		return 2
	}
	return 1
}

// Width is the cells s takes.
func Width(s string) int {
	n := 0
	for _, r := range s {
		n += RuneWidth(r)
	}
	return n
}

// Cut returns the longest start of s no wider than n cells, with the
// zero-width marks that belong to its last character; a wide character
// that would straddle the edge is left out.
func Cut(s string, n int) string {
	w := 0
	for i, r := range s {
		rw := RuneWidth(r)
		if w+rw > n {
			return s[:i]
		}
		w += rw
	}
	return s
}

// Ellipsis cuts s to n cells as Cut does, but when it cuts, the last cell
// is "…" (docker's formatter.Ellipsis).
func Ellipsis(s string, n int) string {
	if Width(s) <= n {
		return s
	}
	if n < 1 {
		return ""
	}
	return Cut(s, n-1) + "…"
}
