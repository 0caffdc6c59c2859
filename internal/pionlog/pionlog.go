// Package pionlog routes the log lines of the pion WebRTC libraries to a
// slog.Logger, at one level lower than pion's own: pion's errors are
// warnings to us, its warnings information. Its trace and debug lines are
// dropped: they describe individual packets and STUN exchanges, which are
// neither useful to an operator nor cheap, and the per-packet path must not log.
package pionlog

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// Factory is a logging.LoggerFactory whose lines go to a slog.Logger, each
// prefixed by the package using pion ("rtc: ", "relay: ").
type Factory struct {
	Log    *slog.Logger
	Prefix string
}

// NewLogger implements logging.LoggerFactory.
func (f Factory) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{log: f.Log.With("pion", scope), prefix: f.Prefix}
}

type pionLogger struct {
	log    *slog.Logger
	prefix string
}

func (pionLogger) Trace(string)          {}
func (pionLogger) Tracef(string, ...any) {}
func (pionLogger) Debug(string)          {}
func (pionLogger) Debugf(string, ...any) {}

func (l pionLogger) Info(msg string) { l.log.Debug(l.prefix + msg) }
func (l pionLogger) Infof(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(l.prefix + fmt.Sprintf(format, args...))
	}
}
func (l pionLogger) Warn(msg string) { l.log.Info(l.prefix + msg) }
func (l pionLogger) Warnf(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelInfo) {
		l.log.Info(l.prefix + fmt.Sprintf(format, args...))
	}
}
func (l pionLogger) Error(msg string) { l.log.Warn(l.prefix + msg) }
func (l pionLogger) Errorf(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelWarn) {
		l.log.Warn(l.prefix + fmt.Sprintf(format, args...))
	}
}
