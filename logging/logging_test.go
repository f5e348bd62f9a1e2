package logging

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

func TestNew(t *testing.T) {
	tests := []struct {
		name, level, format string
		wantJSON            bool
		wantErr             string
	}{
		{"auto on a file is JSON", "info", "auto", true, ""},
		{"explicit json", "debug", "json", true, ""},
		{"explicit console", "info", "console", false, ""},
		{"bad level", "loud", "auto", false, "log level \"loud\""},
		{"bad format", "info", "xml", false, "log format \"xml\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := os.Create(filepath.Join(t.TempDir(), "log"))
			require.NoError(t, err)
			defer f.Close()
			log, err := New(Options{Level: tt.level, Format: tt.format, Output: f})
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			log.Info("hello", zap.String("k", "v"))
			require.NoError(t, log.Sync())
			data, err := os.ReadFile(f.Name())
			require.NoError(t, err)
			var rec map[string]any
			isJSON := json.Unmarshal(data, &rec) == nil
			require.Equal(t, tt.wantJSON, isJSON, "%s", data)
			require.Contains(t, string(data), "hello")
			if isJSON {
				require.Equal(t, "v", rec["k"])
				require.Equal(t, "info", rec["level"])
			}
		})
	}
}
