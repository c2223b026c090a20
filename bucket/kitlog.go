package bucket

import (
	"context"
	"fmt"
	"log/slog"
)

// kitLogger adapts slog to the go-kit logger objstore's client takes:
// "msg" becomes the message, "level" the level, other pairs attributes.
type kitLogger struct{ l *slog.Logger }

func (k kitLogger) Log(keyvals ...any) error {
	level := slog.LevelInfo
	msg := ""
	attrs := make([]slog.Attr, 0, len(keyvals)/2)
	for i := 0; i < len(keyvals); i += 2 {
		key := fmt.Sprint(keyvals[i])
		var val any = "(MISSING)"
		if i+1 < len(keyvals) {
			val = keyvals[i+1]
		}
		switch key {
		case "msg":
			msg = fmt.Sprint(val)
		case "level":
			switch fmt.Sprint(val) {
			case "debug":
				level = slog.LevelDebug
			case "warn":
				level = slog.LevelWarn
			case "error":
				level = slog.LevelError
			}
		default:
			attrs = append(attrs, slog.Any(key, val))
		}
	}
	k.l.LogAttrs(context.Background(), level, msg, append(attrs, slog.String("component", "objstore"))...)
	return nil
}
