package exchange

import (
	"time"

	"mahfooz/exchange/store"
	"mahfooz/wire"
)

func (s *Server) handleCreateBlob(c *conn, requestID uint32, m *wire.CreateBlob) {
	recipients, unknown := s.recipients(m.Recipients)
	switch {
	case unknown:
		c.reply(requestID, wire.CodeInvalidRequest, "a recipient is not an enrolled device")
		return
	case len(recipients) == 0:
		c.reply(requestID, wire.CodeInvalidRequest, "every recipient is revoked")
		return
	}
	now := time.UnixMilli(s.cfg.Now().UnixMilli()).UTC()
	err := s.cfg.Store.CreateBlob(background, store.Blob{
		ID: m.BlobID, Owner: c.device, Recipients: recipients, Expires: now.Add(s.ttl(m.TTLSeconds)),
	})
	if err != nil {
		code, hint := s.storeCode(c, "create blob", err)
		c.reply(requestID, code, hint)
		return
	}
	s.log.Debug("exchange: blob created", "device", c.device.String(), "blob", m.BlobID.String(), "recipients", len(recipients))
	c.sendMessage(requestID, &wire.OK{})
}

func (s *Server) handleUploadChunk(c *conn, requestID uint32, m *wire.UploadChunk) {
	if err := s.cfg.Store.AppendChunk(background, c.device, m.BlobID, m.Index, m.Last, m.Data); err != nil {
		code, hint := s.storeCode(c, "upload chunk", err)
		c.reply(requestID, code, hint)
		return
	}
	c.sendMessage(requestID, &wire.OK{})
}

func (s *Server) handleDownloadChunk(c *conn, requestID uint32, m *wire.DownloadChunk) {
	ch, err := s.cfg.Store.ReadChunk(background, c.device, m.BlobID, m.Index)
	if err != nil {
		code, hint := s.storeCode(c, "download chunk", err)
		c.reply(requestID, code, hint)
		return
	}
	c.sendMessage(requestID, &wire.BlobChunk{BlobID: m.BlobID, Index: m.Index, Last: ch.Last, Data: ch.Data})
	if ch.Last {
		// The last chunk is on its way: this recipient is done with the blob.
		if err := s.cfg.Store.BlobFetched(background, c.device, m.BlobID); err != nil {
			s.storeCode(c, "blob fetched", err)
		}
	}
}
