package packaging_test

import (
	"bufio"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// gstTable reads gst-elements.txt: element -> need.
func gstTable(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("gst-elements.txt")
	require.NoError(t, err)
	defer f.Close()
	table := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		require.GreaterOrEqual(t, len(fields), 3, "gst-elements.txt: %q needs element, plugin and need", sc.Text())
		table[fields[0]] = fields[2]
	}
	require.NoError(t, sc.Err())
	return table
}

// literalElements returns the words in element position of the string literals in the
// non-test Go files of media/ and its subpackages (the pipeline descriptions are built from
// them): at the start of a literal or after "!", followed by the end, "!" or a property
// ("x264enc speed-preset=…"), so that "level=" in caps or "pipeline stalled" in a message
// do not count.
func literalElements(t *testing.T) map[string]bool {
	t.Helper()
	words := map[string]bool{}
	factoryProp := regexp.MustCompile(`-factory=([a-z][a-z0-9_]*)`)
	element := regexp.MustCompile(`(?:^|!)\s*([a-z][a-z0-9_]*)(?:\s*$|\s*!|\s+[a-z][a-z0-9-]*=)`)
	err := filepath.WalkDir("../media", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				v, err := strconv.Unquote(lit.Value)
				if err != nil {
					return true
				}
				// Elements named by a property (splitmuxsink's sink-factory=filesink).
				for _, m := range factoryProp.FindAllStringSubmatch(v, -1) {
					words[m[1]] = true
				}
				// Overlapping matches ("a ! b ! c"): split on "!" and match each part.
				for _, part := range strings.Split(v, "!") {
					if m := element.FindStringSubmatch(part); m != nil {
						words[m[1]] = true
					}
				}
			}
			return true
		})
		return nil
	})
	require.NoError(t, err)
	return words
}

// hostElements lists the element factories of the host's GStreamer.
func hostElements(t *testing.T) map[string]bool {
	t.Helper()
	out, err := exec.Command("gst-inspect-1.0").Output()
	require.NoError(t, err, "gst-inspect-1.0 (gstreamer1.0-tools, scripts/install-deps.sh)")
	elems := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if parts := strings.SplitN(line, ":", 3); len(parts) == 3 {
			elems[strings.TrimSpace(parts[1])] = true
		}
	}
	require.NotEmpty(t, elems)
	return elems
}

// TestGstElementsListed keeps gst-elements.txt, from which the .deb's GStreamer Depends are
// computed, true to the pipelines: every element media/ names is listed, and every listed
// element is still named somewhere in media/.
func TestGstElementsListed(t *testing.T) {
	if _, err := exec.LookPath("gst-inspect-1.0"); err != nil {
		t.Skip("gst-inspect-1.0 is not installed (scripts/install-deps.sh)")
	}
	table := gstTable(t)
	words := literalElements(t)
	host := hostElements(t)

	var unlisted, unused []string
	// Element names that media/ uses as plain words (a default pipeline name, a log key);
	// GstPipeline is built into libgstreamer, a Depends of its own.
	plain := map[string]bool{"pipeline": true}
	for w := range words {
		if host[w] && table[w] == "" && !plain[w] {
			unlisted = append(unlisted, w)
		}
	}
	for e := range table {
		if !words[e] {
			unused = append(unused, e)
		}
	}
	sort.Strings(unlisted)
	sort.Strings(unused)
	require.Empty(t, unlisted, "media/ uses these GStreamer elements: add them to packaging/gst-elements.txt with their plugin and need")
	require.Empty(t, unused, "packaging/gst-elements.txt lists elements that media/ no longer uses: remove them")
}

// TestGstDeps checks the package names gst-deps.sh computes on this host.
func TestGstDeps(t *testing.T) {
	if _, err := exec.LookPath("gst-inspect-1.0"); err != nil {
		t.Skip("gst-inspect-1.0 is not installed (scripts/install-deps.sh)")
	}
	out, err := exec.Command("./gst-deps.sh").CombinedOutput()
	require.NoError(t, err, "%s", out)
	got := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		require.True(t, ok, "line %q", line)
		got[k] = strings.Split(v, ", ")
	}
	tests := []struct {
		field string
		want  []string
	}{
		{"depends", []string{"libgstreamer1.0-0", "gstreamer1.0-plugins-base", "gstreamer1.0-plugins-good", "gstreamer1.0-plugins-bad", "gstreamer1.0-plugins-ugly"}},
		{"recommends", []string{"gstreamer1.0-libav"}},
		{"suggests", []string{"gstreamer1.0-libcamera"}},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			require.ElementsMatch(t, tt.want, got[tt.field])
		})
	}
}
