package qrtext

import (
	"bytes"
	"image/png"
	"strings"
	"testing"
)

func TestTerminalIsSquareWithQuietZone(t *testing.T) {
	out, err := Terminal("mahfooz-ticket:1:EXAMPLE")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	width := len([]rune(lines[0]))
	// Two modules per line: the code is as tall in modules as it is wide.
	if h := 2 * len(lines); h != width && h != width+1 {
		t.Errorf("%d lines of %d cells: not a square code", len(lines), width)
	}
	// The quiet zone is light: the first line is all full blocks.
	if strings.Trim(lines[0], "█") != "" {
		t.Errorf("first line %q is not quiet zone", lines[0])
	}
}

func TestPNG(t *testing.T) {
	b, err := PNG("123456", 256)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if r := img.Bounds(); r.Dx() != 256 || r.Dy() != 256 {
		t.Errorf("image %v, want 256×256", r)
	}
}
