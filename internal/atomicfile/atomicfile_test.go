package atomicfile

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWrite(t *testing.T) {
	tests := []struct {
		name string
		perm os.FileMode
		old  []byte
	}{
		{"new secret file", 0o600, nil},
		{"replaces existing", 0o644, []byte("old content")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "f")
			if tt.old != nil {
				require.NoError(t, os.WriteFile(p, tt.old, 0o666))
			}
			require.NoError(t, Write(p, []byte("new"), tt.perm))
			got, err := os.ReadFile(p)
			require.NoError(t, err)
			require.Equal(t, "new", string(got))
			st, err := os.Stat(p)
			require.NoError(t, err)
			require.Equal(t, tt.perm, st.Mode().Perm())
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			require.Len(t, entries, 1, "no temporary file left behind")
		})
	}
}

func TestWriteFailsCleanly(t *testing.T) {
	dir := t.TempDir()
	err := Write(filepath.Join(dir, "missing", "f"), []byte("x"), 0o600)
	require.ErrorContains(t, err, "missing/f")
}
