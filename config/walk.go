package config

import (
	"reflect"
	"strings"
	"time"
)

// leaf is one configuration key: its dotted path and its field.
type leaf struct {
	key   string
	field reflect.StructField
	value reflect.Value
}

// leaves returns every key of the configuration tree rooted at v (a struct value), in
// declaration order. Map-typed fields are leaves: their own keys are free-form.
func leaves(v reflect.Value) []leaf {
	var out []leaf
	var walk func(v reflect.Value, prefix string)
	walk = func(v reflect.Value, prefix string) {
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			name := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			key := prefix + name
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Time]() {
				walk(v.Field(i), key+".")
				continue
			}
			out = append(out, leaf{key: key, field: f, value: v.Field(i)})
		}
	}
	walk(v, "")
	return out
}

// Keys lists every configuration key, e.g. "media.source.kind".
func Keys() []string {
	c := Default()
	var keys []string
	for _, l := range leaves(reflect.ValueOf(&c).Elem()) {
		keys = append(keys, l.key)
	}
	return keys
}

// EnvName returns the environment variable that sets a key: EDGECAM_MEDIA_SOURCE_KIND.
func EnvName(key string) string {
	return envPrefix + "_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// closest returns the candidate nearest to s by edit distance, or "" when none is close.
func closest(s string, candidates []string) string {
	best, bestDist := "", len(s)/2+2
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
