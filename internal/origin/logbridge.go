package origin

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/sirupsen/logrus"
)

// The distribution registry logs through the process-wide logrus standard
// logger, and the only per-registry handle it offers is the "instance.id"
// value it copies from its context into every log entry. Each Registry puts
// its own log ID there; a hook hands the entries that carry a known log ID to
// that registry's slog.Logger, and a formatter keeps them off logrus' own
// output. Entries from anyone else (containerd also logs through logrus) are
// formatted and written as before.

// logIDKey is the context key the registry reads its instance ID from. It has
// to be this plain string: distribution looks it up as ctx.Value("instance.id").
const logIDKey = "instance.id"

// logIDPrefix marks the instance IDs that belong to registries of this package.
const logIDPrefix = "eagle-origin-"

var (
	bridgeOnce sync.Once
	logIDSeq   atomic.Uint64
	loggers    sync.Map // log ID (string) -> *slog.Logger, nil for silence
)

// withLogID returns ctx carrying the registry log ID id.
func withLogID(ctx context.Context, id string) context.Context {
	//lint:ignore SA1029 distribution reads the instance ID with this exact string key.
	return context.WithValue(ctx, logIDKey, id)
}

// registerLogger installs the logrus bridge on first use and returns a new log
// ID whose entries go to logger; a nil logger silences them.
func registerLogger(logger *slog.Logger) string {
	bridgeOnce.Do(func() {
		std := logrus.StandardLogger()
		std.AddHook(bridgeHook{})
		std.SetFormatter(&bridgeFormatter{next: std.Formatter})
	})
	id := logIDPrefix + strconv.FormatUint(logIDSeq.Add(1), 10)
	loggers.Store(id, logger)
	return id
}

// unregisterLogger forgets log ID id. Later entries with that ID (from a
// request that outlived Close, say) are dropped.
func unregisterLogger(id string) {
	loggers.Delete(id)
}

// ownLogID reports the log ID of a registry of this package that e carries.
func ownLogID(e *logrus.Entry) (string, bool) {
	id, ok := e.Data[logIDKey].(string)
	if !ok || len(id) <= len(logIDPrefix) || id[:len(logIDPrefix)] != logIDPrefix {
		return "", false
	}
	return id, true
}

// bridgeHook forwards the entries of registries of this package to their
// slog loggers.
type bridgeHook struct{}

// Levels implements logrus.Hook.
func (bridgeHook) Levels() []logrus.Level { return logrus.AllLevels }

// Fire implements logrus.Hook.
func (bridgeHook) Fire(e *logrus.Entry) error {
	id, ok := ownLogID(e)
	if !ok {
		return nil
	}
	v, _ := loggers.Load(id)
	logger, _ := v.(*slog.Logger)
	if logger == nil {
		return nil
	}
	level := slogLevel(e.Level)
	ctx := context.Background()
	if !logger.Enabled(ctx, level) {
		return nil
	}
	attrs := make([]slog.Attr, 0, len(e.Data))
	for _, k := range slices.Sorted(maps.Keys(e.Data)) {
		if k == logIDKey || k == "go.version" {
			continue
		}
		v := e.Data[k]
		if err, ok := v.(error); ok {
			v = err.Error()
		}
		attrs = append(attrs, slog.Any(k, v))
	}
	logger.LogAttrs(ctx, level, e.Message, attrs...)
	return nil
}

// slogLevel maps a logrus level to slog. The registry logs every request at
// Info, which is debugging detail for Eagle.
func slogLevel(l logrus.Level) slog.Level {
	switch {
	case l <= logrus.ErrorLevel:
		return slog.LevelError
	case l == logrus.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelDebug
	}
}

// bridgeFormatter writes nothing for the entries of registries of this
// package and formats all others as the formatter it replaced would.
type bridgeFormatter struct {
	next logrus.Formatter
}

// Format implements logrus.Formatter.
func (f *bridgeFormatter) Format(e *logrus.Entry) ([]byte, error) {
	if _, ok := ownLogID(e); ok {
		return nil, nil
	}
	b, err := f.next.Format(e)
	if err != nil {
		return nil, fmt.Errorf("origin: log bridge: %w", err)
	}
	return b, nil
}

// discardHandler returns logger's handler, or one that drops everything if
// logger is nil.
func discardHandler(logger *slog.Logger) slog.Handler {
	if logger == nil {
		return slog.DiscardHandler
	}
	return logger.Handler()
}
