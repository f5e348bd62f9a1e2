package packaging_test

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// The ARM .debs take minutes to build cold (go-gst through the cross compilers, sysroots
// from the Debian mirror): the tests that need them build them only with
// EDGECAM_CROSS_TESTS=1, and otherwise check the ones already in dist/ (make deb ARCH=…) or
// skip.
const crossEnv = "EDGECAM_CROSS_TESTS"

var built = struct {
	mu   sync.Mutex
	arch map[string]bool
}{arch: map[string]bool{}}

// debFor returns the newest edgecam_*_<arch>.deb in EDGECAM_DEB_DIR (default dist/),
// building it into dist/ when EDGECAM_CROSS_TESTS=1 and no EDGECAM_DEB_DIR is given (once per
// test run).
func debFor(t *testing.T, arch string) string {
	t.Helper()
	dist := os.Getenv("EDGECAM_DEB_DIR")
	if dist == "" {
		dist = filepath.Join("..", "dist")
	}
	find := func() string {
		m, _ := filepath.Glob(filepath.Join(dist, "edgecam_*_"+arch+".deb"))
		sort.Slice(m, func(i, j int) bool {
			a, _ := os.Stat(m[i])
			b, _ := os.Stat(m[j])
			return a.ModTime().Before(b.ModTime())
		})
		if len(m) == 0 {
			return ""
		}
		return m[len(m)-1]
	}
	if os.Getenv(crossEnv) == "1" && os.Getenv("EDGECAM_DEB_DIR") == "" {
		built.mu.Lock()
		defer built.mu.Unlock()
		if !built.arch[arch] {
			abs, err := filepath.Abs(dist)
			require.NoError(t, err)
			cmd := exec.Command("./build-deb.sh", abs)
			cmd.Env = append(os.Environ(), "ARCH="+arch)
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "build-deb.sh for %s:\n%s", arch, out)
			built.arch[arch] = true
		}
	}
	deb := find()
	if deb == "" {
		t.Skipf("no %s .deb in %s: run make deb ARCH=%s, or set %s=1 to build it here", arch, dist, arch, crossEnv)
	}
	return deb
}

// debControl reads the control fields of a .deb with dpkg-deb --info.
func debControl(t *testing.T, deb string) map[string]string {
	t.Helper()
	out, err := exec.Command("dpkg-deb", "--field", deb).CombinedOutput()
	require.NoError(t, err, "%s", out)
	fields := map[string]string{}
	var last string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, " ") && last != "" {
			fields[last] += "\n" + line
			continue
		}
		if k, v, ok := strings.Cut(line, ": "); ok {
			fields[k], last = v, k
		}
	}
	return fields
}

// TestDebPackages checks the ARM .debs with dpkg-deb --info and --contents: architecture,
// computed Depends (libraries with the sysroot's minimum versions, GStreamer plugins, adduser),
// maintainer scripts, the binary's ELF machine, the unit and the configuration.
func TestDebPackages(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb is not installed")
	}
	tests := []struct {
		arch    string
		machine elf.Machine
		class   elf.Class
	}{
		{"arm64", elf.EM_AARCH64, elf.ELFCLASS64},
		{"armhf", elf.EM_ARM, elf.ELFCLASS32},
	}
	for _, tt := range tests {
		t.Run(tt.arch, func(t *testing.T) {
			deb := debFor(t, tt.arch)
			c := debControl(t, deb)
			require.Equal(t, "edgecam", c["Package"])
			require.Equal(t, tt.arch, c["Architecture"])
			require.Regexp(t, `^[0-9]`, c["Version"])

			depends := strings.Split(c["Depends"], ", ")
			for _, re := range []string{
				`^libc6 \(>= 2\.[0-9]+\)$`,
				`^libglib2\.0-0 \(>= 2\.[0-9.]+\)$`,
				`^libgstreamer1\.0-0 \(>= 1\.22\.0\)$`,
				`^libgstreamer-plugins-base1\.0-0 \(>= 1\.22\.0\)$`,
				`^gstreamer1\.0-plugins-base$`, `^gstreamer1\.0-plugins-good$`,
				`^gstreamer1\.0-plugins-bad$`, `^gstreamer1\.0-plugins-ugly$`, `^adduser$`,
			} {
				found := false
				for _, d := range depends {
					found = found || regexp.MustCompile(re).MatchString(d)
				}
				require.True(t, found, "Depends %q has no entry matching %s", c["Depends"], re)
			}
			require.Equal(t, "gstreamer1.0-libav", c["Recommends"])
			require.Equal(t, "gstreamer1.0-libcamera", c["Suggests"])

			info, err := exec.Command("dpkg-deb", "--info", deb).CombinedOutput()
			require.NoError(t, err, "%s", info)
			for _, f := range []string{"control", "conffiles", "postinst", "prerm", "postrm"} {
				require.Regexp(t, `(?m)^ +[0-9]+ bytes, +[0-9]+ lines +\*? *`+f+` `, string(info), "control member %s", f)
			}

			out, err := exec.Command("dpkg-deb", "--contents", deb).CombinedOutput()
			require.NoError(t, err, "%s", out)
			contents := map[string]string{} // path -> "mode owner"
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				f := strings.Fields(line)
				require.GreaterOrEqual(t, len(f), 6, "line %q", line)
				contents[strings.TrimPrefix(f[5], ".")] = f[0] + " " + f[1]
			}
			for path, want := range map[string]string{
				"/usr/bin/edgecam":                    "-rwxr-xr-x root/root",
				"/lib/systemd/system/edgecam.service": "-rw-r--r-- root/root",
				"/etc/edgecam/edgecam.yaml":           "-rw-r----- root/root", // root:edgecam by postinst
				"/usr/share/doc/edgecam/README.md":    "-rw-r--r-- root/root",
			} {
				require.Equal(t, want, contents[path], "%s in %s", path, deb)
			}

			dir := t.TempDir()
			out, err = exec.Command("dpkg-deb", "-x", deb, dir).CombinedOutput()
			require.NoError(t, err, "%s", out)
			f, err := elf.Open(filepath.Join(dir, "usr/bin/edgecam"))
			require.NoError(t, err)
			defer f.Close()
			require.Equal(t, tt.machine, f.Machine)
			require.Equal(t, tt.class, f.Class)
			libs, err := f.ImportedLibraries()
			require.NoError(t, err)
			require.Contains(t, libs, "libgstreamer-1.0.so.0", "a cgo build linked to GStreamer")

			unit, err := os.ReadFile(filepath.Join(dir, "lib/systemd/system/edgecam.service"))
			require.NoError(t, err)
			require.Contains(t, string(unit), "ExecStart=/usr/bin/edgecam run")
			conf, err := os.ReadFile(filepath.Join(dir, "etc/edgecam/edgecam.yaml"))
			require.NoError(t, err)
			require.Contains(t, string(conf), "claim_cert: /etc/edgecam/claim.pem", "the documented default configuration")
		})
	}
}
