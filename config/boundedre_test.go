package config

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The bounded patterns accept exactly what the {1,max} patterns they replace accepted.
func TestBoundedPatternsMatchTheirRepetitions(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  boundedRE
		was  string
	}{
		{name: "kvs name", got: kvsNameRE, was: `^[a-zA-Z0-9_.-]{1,256}$`},
		{name: "serial", got: serialRE, was: `^[a-zA-Z0-9:_-]{1,128}$`},
		{name: "template", got: templateRE, was: `^[0-9A-Za-z_-]{1,36}$`},
		{name: "role alias", got: aliasRE, was: `^[\w=,@-]{1,128}$`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			was := regexp.MustCompile(tc.was)
			var inputs []string
			for _, c := range []string{"a", "Z", "0", "_", "-", ".", ":", "=", ",", "@", " ", "/", "é", "\n", "ß"} {
				for _, n := range []int{1, 2, 35, 36, 37, 127, 128, 129, 255, 256, 257} {
					inputs = append(inputs, strings.Repeat(c, n), "a"+strings.Repeat(c, n-1), strings.Repeat("b", n-1)+c)
				}
			}
			inputs = append(inputs, "", "cam-01", "front door", "edgecam_prod.1", "role-alias@x=y,z", "a\nb")
			for _, in := range inputs {
				require.Equal(t, was.MatchString(in), tc.got.MatchString(in), "%q (%d bytes)", in, len(in))
			}
		})
	}
}
