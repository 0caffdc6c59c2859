package rtc

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// pionLogs routes pion's log lines to a slog.Logger. Pion's trace and debug lines
// are dropped: they describe individual packets and STUN exchanges, which are
// neither useful to an operator nor cheap, and the per-packet path must not log.
type pionLogs struct{ log *slog.Logger }

// NewLogger implements logging.LoggerFactory.
func (f pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{log: f.log.With("pion", scope)}
}

type pionLogger struct{ log *slog.Logger }

func (pionLogger) Trace(string)          {}
func (pionLogger) Tracef(string, ...any) {}
func (pionLogger) Debug(string)          {}
func (pionLogger) Debugf(string, ...any) {}

func (l pionLogger) Info(msg string) { l.log.Debug("rtc: " + msg) }
func (l pionLogger) Infof(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug("rtc: " + fmt.Sprintf(format, args...))
	}
}
func (l pionLogger) Warn(msg string) { l.log.Info("rtc: " + msg) }
func (l pionLogger) Warnf(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelInfo) {
		l.log.Info("rtc: " + fmt.Sprintf(format, args...))
	}
}
func (l pionLogger) Error(msg string) { l.log.Warn("rtc: " + msg) }
func (l pionLogger) Errorf(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelWarn) {
		l.log.Warn("rtc: " + fmt.Sprintf(format, args...))
	}
}
