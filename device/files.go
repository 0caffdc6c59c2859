package device

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"os"
	"path/filepath"
	"strings"

	"mahfooz/device/attach"
	"mahfooz/device/vault"
	"mahfooz/wire"
)

// MaxFileSize bounds an attachment: SendFile holds its ciphertext in memory.
const MaxFileSize = 64 << 20

// SendFile sends the file at path: it is encrypted under a fresh key, uploaded to
// the exchange for the conversation's other devices only, and the reference (blob
// ID, key, size, digest, name, media type) goes in an MLS message. The result is
// as for SendText. It is safe for concurrent use.
func (dv *Device) SendFile(ctx context.Context, conv ConversationRef, path string) (Message, error) {
	f, err := os.Open(path)
	if err != nil {
		return Message{}, fmt.Errorf("device: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Message{}, fmt.Errorf("device: %w", err)
	}
	if !st.Mode().IsRegular() || st.Size() > MaxFileSize {
		return Message{}, fmt.Errorf("device: %s is not a regular file of at most %d bytes", filepath.Base(path), MaxFileSize)
	}
	name := filepath.Base(path)
	media := mime.TypeByExtension(filepath.Ext(name))
	if !validMediaType(media) {
		media = ""
	}
	if !validFileName(name) {
		return Message{}, errors.New("device: the file's name cannot be sent (control characters, or over 255 bytes)")
	}
	key, err := attach.NewKey(dv.cfg.Rand)
	if err != nil {
		return Message{}, err
	}
	chunks, digest, size, err := attach.Encrypt(key, io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return Message{}, fmt.Errorf("device: %w", err)
	}
	if size > MaxFileSize {
		return Message{}, fmt.Errorf("device: %s grew past %d bytes", name, MaxFileSize)
	}
	ref := &fileRef{Key: key, Size: size, SHA256: digest, Name: name, MediaType: media}
	if _, err := io.ReadFull(dv.cfg.Rand, ref.BlobID[:]); err != nil {
		return Message{}, err
	}

	var m Message
	err = dv.onConversation(ctx, conv, func(s *session, gid []byte) error {
		if err := dv.uploadLocked(ctx, s, gid, ref.BlobID, chunks); err != nil {
			return err
		}
		var serr error
		m, serr = dv.sendShownLocked(ctx, s, gid, &content{Type: contentFile, File: ref})
		return serr
	})
	return m, err
}

// uploadLocked stores an attachment's ciphertext at the exchange for the group's
// other devices, for as long as the group's messages live there.
func (dv *Device) uploadLocked(ctx context.Context, s *session, gid []byte, id [16]byte, chunks [][]byte) error {
	var rec *groupRec
	if err := dv.v.View(func(tx *vault.Tx) (err error) { rec, err = loadGroupRec(tx, gid); return err }); err != nil {
		return err
	}
	recipients := dv.recipients(rec.Members)
	if len(recipients) == 0 {
		return errors.New("device: nobody else is in the conversation to send a file to")
	}
	if limit := s.c.Welcome().Limits.MaxChunkSize; limit < attach.MaxChunkCiphertext {
		return fmt.Errorf("device: the exchange takes chunks of at most %d bytes", limit)
	}
	blob := wire.BlobID(id)
	ttl := ttlFor(rec.Timer, s)
	if err := s.c.CreateBlob(ctx, blob, secondsDuration(ttl), recipients); err != nil {
		return fmt.Errorf("device: announcing the attachment: %w", err)
	}
	for i, c := range chunks {
		if err := s.c.UploadChunk(ctx, blob, uint32(i), i == len(chunks)-1, c); err != nil {
			return fmt.Errorf("device: uploading the attachment: %w", err)
		}
	}
	return nil
}

// SaveFile downloads the attachment of a received file message, checks it
// chunk by chunk and against its size and SHA-256, and writes it to dst, which
// must not exist. Nothing is left at dst unless the whole file checked out. If
// the message disappears later, the device deletes this copy with it. It is
// safe for concurrent use.
func (dv *Device) SaveFile(ctx context.Context, msg Message, dst string) error {
	if err := dv.usable(); err != nil {
		return err
	}
	var (
		mr  msgRec
		gid []byte
	)
	err := dv.v.View(func(tx *vault.Tx) error {
		recs, err := dv.resolve(tx, ConversationRef{ID: msg.ConversationID})
		if err != nil {
			return err
		}
		for _, r := range recs {
			list, err := loadMessages(tx, r.ID)
			if err != nil {
				return err
			}
			for _, m := range list {
				if m.ID == msg.ID && m.File != nil {
					mr, gid = *m, r.ID
					return nil
				}
			}
		}
		return ErrNoMessage
	})
	if err != nil {
		return err
	}
	if mr.Outgoing {
		return fmt.Errorf("%w: the attachment was sent from this device", ErrNoMessage)
	}
	if !mr.ExpiresAt.IsZero() && !mr.ExpiresAt.After(dv.now()) {
		return ErrNoMessage
	}
	s, err := dv.acquire(ctx)
	if err != nil {
		return err
	}
	defer dv.release(s)

	dir := filepath.Dir(dst)
	tmp, err := os.CreateTemp(dir, "."+strings.TrimPrefix(filepath.Base(dst), ".")+".part-*")
	if err != nil {
		return fmt.Errorf("device: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	f := mr.File
	dec := attach.NewDecrypter(attach.Key(f.Key), tmp)
	for i := uint32(0); ; i++ {
		data, last, err := s.c.DownloadChunk(ctx, wire.BlobID(f.BlobID), i)
		if err != nil {
			return fmt.Errorf("device: downloading the attachment: %w", err)
		}
		if err := dec.Write(i, last, data); err != nil {
			return fmt.Errorf("device: %w", err)
		}
		if last {
			break
		}
	}
	if err := dec.Finish(f.Size, f.SHA256); err != nil {
		return fmt.Errorf("device: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("device: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("device: %w", err)
	}
	if err := placeNew(tmp.Name(), dst); err != nil {
		return err
	}
	keep = true
	if mr.ExpiresAt.IsZero() {
		return nil
	}
	abs, err := filepath.Abs(dst)
	if err != nil {
		abs = dst
	}
	dv.mu.Lock()
	defer dv.mu.Unlock()
	if err := dv.usable(); err != nil {
		return err
	}
	return dv.v.Update(func(tx *vault.Tx) error {
		var cur msgRec
		if err := getJSON(tx, msgBucket(gid), u64(mr.Key), &cur); err != nil {
			if errors.Is(err, vault.ErrNotFound) {
				// It expired meanwhile.
				return os.Remove(abs)
			}
			return err
		}
		cur.Saved = append(cur.Saved, abs)
		return putJSON(tx, msgBucket(gid), u64(mr.Key), &cur)
	})
}

// placeNew moves a finished file to dst without replacing an existing file: by a
// hard link where the file system has them, else by a rename after a check.
func placeNew(tmp, dst string) error {
	err := os.Link(tmp, dst)
	if err == nil {
		os.Remove(tmp)
		return nil
	}
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("device: %w", err)
	}
	if _, serr := os.Lstat(dst); serr == nil {
		return fmt.Errorf("device: %s already exists", dst)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("device: %w", err)
	}
	return nil
}
