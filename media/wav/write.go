package wav

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

const (
	headerSize = 44
	// maxWriteData is the most data bytes a RIFF file can hold, its sizes
	// being 32-bit.
	maxWriteData = 1<<32 - 1 - (headerSize - 8)
)

// header returns the 44-byte header of a mono 16-bit 48 kHz PCM file with
// dataSize bytes of samples.
func header(dataSize uint32) []byte {
	h := make([]byte, 0, headerSize)
	le := binary.LittleEndian
	h = append(h, "RIFF"...)
	h = le.AppendUint32(h, headerSize-8+dataSize)
	h = append(h, "WAVEfmt "...)
	h = le.AppendUint32(h, 16)
	h = le.AppendUint16(h, formatPCM)
	h = le.AppendUint16(h, 1) // channels
	h = le.AppendUint32(h, SampleRate)
	h = le.AppendUint32(h, SampleRate*2) // byte rate
	h = le.AppendUint16(h, 2)            // block align
	h = le.AppendUint16(h, 16)           // bits per sample
	h = append(h, "data"...)
	h = le.AppendUint32(h, dataSize)
	return h
}

// Write writes pcm, mono 16-bit samples at 48 kHz, to w as a whole WAVE file.
func Write(w io.Writer, pcm []int16) error {
	if int64(len(pcm))*2 > maxWriteData {
		return fmt.Errorf("%w: %d samples", ErrTooLarge, len(pcm))
	}
	buf := header(uint32(len(pcm) * 2))
	buf = appendSamples(buf, pcm)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("wav: writing: %w", err)
	}
	return nil
}

func appendSamples(b []byte, pcm []int16) []byte {
	for _, s := range pcm {
		b = binary.LittleEndian.AppendUint16(b, uint16(s))
	}
	return b
}

// Writer streams mono 16-bit 48 kHz samples into a WAVE file. The sizes in
// the file's header are brought up to date by Flush and Close: a process that
// dies in between leaves a file whose header describes the audio as of the
// last Flush or Close (the samples written after it follow the RIFF chunk and
// are ignored by readers). A Writer is not safe for concurrent use.
type Writer struct {
	w        io.WriteSeeker
	file     *os.File // set when the Writer created the file, and so closes it
	dataSize int64
	buf      []byte
	err      error // sticky: after a failed write the file is in an unknown state
}

// Create creates (or truncates) the file at path and returns a Writer on it.
// Close closes the file.
func Create(path string) (*Writer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("wav: %w", err)
	}
	w, err := NewWriter(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	w.file = f
	return w, nil
}

// NewWriter writes a header to w, which must be positioned where the file is
// to start (normally at offset 0), and returns a Writer. Close does not close
// w.
func NewWriter(w io.WriteSeeker) (*Writer, error) {
	if _, err := w.Write(header(0)); err != nil {
		return nil, fmt.Errorf("wav: writing the header: %w", err)
	}
	return &Writer{w: w}, nil
}

// Write appends pcm to the file.
func (w *Writer) Write(pcm []int16) error {
	if w.err != nil {
		return w.err
	}
	if w.w == nil {
		return ErrClosed
	}
	if w.dataSize+int64(len(pcm))*2 > maxWriteData {
		return fmt.Errorf("%w: a RIFF file holds at most %d bytes of samples", ErrTooLarge, int64(maxWriteData))
	}
	w.buf = appendSamples(w.buf[:0], pcm)
	if _, err := w.w.Write(w.buf); err != nil {
		w.err = fmt.Errorf("wav: writing samples: %w", err)
		return w.err
	}
	w.dataSize += int64(len(pcm)) * 2
	return nil
}

// Flush writes the current sizes into the header, so that the file is
// complete as it stands, and returns to the end of the file.
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	if w.w == nil {
		return ErrClosed
	}
	h := header(uint32(w.dataSize))
	for _, p := range []struct {
		off int64
		b   []byte
	}{{4, h[4:8]}, {40, h[40:44]}} {
		if _, err := w.w.Seek(p.off, io.SeekStart); err != nil {
			w.err = fmt.Errorf("wav: updating the header: %w", err)
			return w.err
		}
		if _, err := w.w.Write(p.b); err != nil {
			w.err = fmt.Errorf("wav: updating the header: %w", err)
			return w.err
		}
	}
	if _, err := w.w.Seek(headerSize+w.dataSize, io.SeekStart); err != nil {
		w.err = fmt.Errorf("wav: updating the header: %w", err)
		return w.err
	}
	return nil
}

// Close flushes the header and, when the Writer was made by Create, closes
// the file. Later calls return ErrClosed.
func (w *Writer) Close() error {
	if w.w == nil {
		return ErrClosed
	}
	err := w.Flush()
	if w.file != nil {
		if cerr := w.file.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("wav: %w", cerr)
		}
	}
	w.w = nil
	return err
}
