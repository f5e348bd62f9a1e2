package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad: any configuration file and EDGECAM_* variable go through the real loader and
// validator and give a configuration or an error, never a panic; every problem names a key
// and says what is wrong; an accepted configuration printed with YAML() loads back to the
// same configuration. Seeds: configs/edgecam.yaml and hand-made files in testdata/fuzz.
func FuzzLoad(f *testing.F) {
	f.Add([]byte("state_dir: /tmp/x\nlog: {level: debug}\n"), uint16(0), "")
	f.Add([]byte("media:\n  source:\n    kind: [1, 2]\n"), uint16(3), "10s")
	keys := Keys()
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, file []byte, key uint16, value string) {
		path := filepath.Join(dir, "edgecam.yaml")
		if err := os.WriteFile(path, file, 0o600); err != nil {
			t.Fatal(err)
		}
		// One variable: a real key most of the time, an unknown one otherwise.
		env := "EDGECAM_NOT_A_KEY"
		if int(key) < len(keys)*4 {
			env = EnvName(keys[int(key)%len(keys)])
		}
		if strings.ContainsRune(value, 0) {
			value = strings.ReplaceAll(value, "\x00", "")
		}
		if value != "" {
			if err := os.Setenv(env, value); err != nil {
				t.Fatal(err)
			}
			defer os.Unsetenv(env)
		}

		l, err := Load(LoadOptions{Path: path, Required: true})
		if err != nil {
			var cerr *Error
			if errors.As(err, &cerr) {
				if len(cerr.Problems) == 0 {
					t.Fatalf("an *Error without problems: %v", err)
				}
				for _, p := range cerr.Problems {
					if p.Key == "" || p.Msg == "" {
						t.Fatalf("problem without a key or message: %#v", p)
					}
				}
			} else if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		if ps := l.Validate(); len(ps) != 0 {
			t.Fatalf("accepted configuration does not validate again: %v", ps)
		}
		// Round trip through the printed form (as `edgecam config print` writes it).
		out, err := l.YAML()
		if err != nil {
			t.Fatalf("printing an accepted configuration: %v", err)
		}
		if value != "" {
			os.Unsetenv(env) // the printed file holds the variable's value already
		}
		if err := os.WriteFile(path, out, 0o600); err != nil {
			t.Fatal(err)
		}
		again, err := Load(LoadOptions{Path: path, Required: true})
		if err != nil {
			t.Fatalf("printed configuration does not load:\n%s\n%v", out, err)
		}
		out2, err := again.YAML()
		if err != nil || string(out2) != string(out) {
			t.Fatalf("configuration changed in a round trip:\n%s\n---\n%s (%v)", out, out2, err)
		}
	})
}
