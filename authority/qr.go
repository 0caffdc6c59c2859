package authority

import "mahfooz/internal/qrtext"

// TicketQRTerminal renders text (a ticket's Text) as a QR code for a terminal.
func TicketQRTerminal(text string) (string, error) { return qrtext.Terminal(text) }

// TicketQRPNG renders text as a PNG QR code, size pixels square.
func TicketQRPNG(text string, size int) ([]byte, error) { return qrtext.PNG(text, size) }
