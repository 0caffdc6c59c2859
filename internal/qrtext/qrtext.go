// Package qrtext renders short texts (enrolment tickets, safety numbers) as QR
// codes for a terminal and as PNG images, the two forms an official scans from.
package qrtext

import (
	"fmt"
	"strings"

	qrcode "github.com/skip2/go-qrcode"
)

// Terminal renders text as a QR code for a terminal, two modules per character
// cell with UTF-8 half blocks, light modules drawn, with the quiet zone, so that it
// scans from a dark-background terminal too.
func Terminal(text string) (string, error) {
	q, err := qrcode.New(text, qrcode.Medium)
	if err != nil {
		return "", fmt.Errorf("qrtext: %w", err)
	}
	bm := q.Bitmap() // true = dark; includes the quiet zone
	var sb strings.Builder
	for y := 0; y < len(bm); y += 2 {
		for x := range bm[y] {
			top := bm[y][x]
			bottom := y+1 < len(bm) && bm[y+1][x]
			// Cells are painted light (the terminal's foreground, via the block
			// characters) where the code is light.
			switch {
			case !top && !bottom:
				sb.WriteString("█")
			case !top && bottom:
				sb.WriteString("▀")
			case top && !bottom:
				sb.WriteString("▄")
			default:
				sb.WriteString(" ")
			}
		}
		sb.WriteString("\n")
	}
	return sb.String(), nil
}

// PNG renders text as a PNG QR code, size pixels square.
func PNG(text string, size int) ([]byte, error) {
	png, err := qrcode.Encode(text, qrcode.Medium, size)
	if err != nil {
		return nil, fmt.Errorf("qrtext: %w", err)
	}
	return png, nil
}
