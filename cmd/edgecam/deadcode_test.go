package main

import (
	"debug/elf"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// The device build keeps the linker's method pruning: an exported method that nothing calls
// is left out of the binary. Go's linker gives that up for the whole program (every exported
// method of every reachable type stays, "reflectSeen" in cmd/link's deadcode.go) as soon as
// one reachable function can call a method chosen at run time: reflect.Value.Method,
// MethodByName with a non-constant name, or Go 1.26's reflect.Type.Methods and
// reflect.Value.Methods iterators. The iterators are reached by name too: a constant
// MethodByName("Methods") anywhere keeps every method named Methods, these included
// (google.golang.org/protobuf before v1.36.12 had one, in internal/descfmt, linked through
// prometheus/client_golang). Without the pruning the binary's text and read-only data grow
// by about 6.5 MB, and this kernel maps it whole into every agent's RSS (issue 14).
func TestDeviceBuildPrunesUnusedMethods(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "edgecam")
	build, err := exec.Command("go", "build", "-tags", "nolocalcloud", "-trimpath", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", build)
	f, err := elf.Open(bin)
	require.NoError(t, err)
	defer f.Close()
	syms, err := f.Symbols()
	require.NoError(t, err)
	have := make(map[string]bool, len(syms))
	for _, s := range syms {
		have[s.Name] = true
	}

	const how = "the linker kept every exported method: find the function that reaches reflect's " +
		"Method, MethodByName or Methods with `go build -tags nolocalcloud -ldflags=-dumpdep ./cmd/edgecam 2>&1 | grep ReflectMethod` " +
		"(a constant MethodByName(\"Methods\") also does it, by name) and avoid it or update the module that has it"
	// Used by the device build: must be there, or the check below proves nothing.
	require.True(t, have["github.com/aws/aws-sdk-go-v2/service/kinesisvideo.(*Client).DescribeStream"],
		"the device build no longer calls kinesisvideo DescribeStream: pick another method it calls")
	for _, unused := range []string{
		"github.com/aws/aws-sdk-go-v2/service/kinesisvideo.(*Client).DescribeMappedResourceConfiguration",
		"github.com/aws/aws-sdk-go-v2/service/kinesisvideo.(*Client).UpdateNotificationConfiguration",
		"reflect.(*rtype).Methods.func1",
		"reflect.Value.Methods.func1",
	} {
		require.False(t, have[unused], "%s is in the device binary: %s", unused, how)
	}
}
