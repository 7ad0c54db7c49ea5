package membership

import (
	"bytes"
	"context"
	"log"
	"log/slog"
)

// logWriter adapts memberlist's *log.Logger to slog. memberlist writes one
// line per call, "[LEVEL] memberlist: text"; each becomes one debug record
// with memberlist's own level kept as the attribute "ml_level". Everything
// goes to debug because memberlist calls routine events errors (a push/pull
// with a peer that just shut down is "[ERR]"); what matters to scatter
// surfaces through this package's API instead.
type logWriter struct {
	log *slog.Logger
}

func newMemberlistLogger(l *slog.Logger) *log.Logger {
	return log.New(logWriter{log: l.With("component", "memberlist")}, "", 0)
}

// Write implements io.Writer. log.Logger serializes calls to it.
func (w logWriter) Write(p []byte) (int, error) {
	ctx := context.Background()
	if !w.log.Enabled(ctx, slog.LevelDebug) {
		return len(p), nil
	}
	line := bytes.TrimRight(p, "\r\n")
	level := ""
	if len(line) > 0 && line[0] == '[' {
		if end := bytes.IndexByte(line, ']'); end > 0 {
			level = string(line[1:end])
			line = bytes.TrimLeft(line[end+1:], " ")
		}
	}
	line = bytes.TrimPrefix(line, []byte("memberlist: "))
	if level != "" {
		w.log.LogAttrs(ctx, slog.LevelDebug, string(line), slog.String("ml_level", level))
	} else {
		w.log.LogAttrs(ctx, slog.LevelDebug, string(line))
	}
	return len(p), nil
}
