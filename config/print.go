package config

import (
	"bytes"
	"encoding"
	"fmt"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// YAML renders the configuration as a YAML document with the same keys as the file, durations
// and sizes in their readable forms, and secrets (fields tagged secret:"true") redacted.
func (c Config) YAML() ([]byte, error) {
	root := &yaml.Node{Kind: yaml.MappingNode}
	sections := map[string]*yaml.Node{"": root}
	for _, l := range leaves(reflect.ValueOf(&c).Elem()) {
		parent := root
		parts := strings.Split(l.key, ".")
		for i := range len(parts) - 1 {
			path := strings.Join(parts[:i+1], ".")
			sec, ok := sections[path]
			if !ok {
				sec = &yaml.Node{Kind: yaml.MappingNode}
				parent.Content = append(parent.Content, scalar(parts[i]), sec)
				sections[path] = sec
			}
			parent = sec
		}
		val, err := valueNode(l)
		if err != nil {
			return nil, err
		}
		parent.Content = append(parent.Content, scalar(parts[len(parts)-1]), val)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{root}}); err != nil {
		return nil, err
	}
	return buf.Bytes(), enc.Close()
}

func scalar(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: s} }

func valueNode(l leaf) (*yaml.Node, error) {
	v := l.value.Interface()
	if l.field.Tag.Get("secret") == "true" && !l.value.IsZero() {
		return scalar("<redacted>"), nil
	}
	if l.field.Tag.Get("redact") == "url" {
		return scalar(RedactURL(l.value.String())), nil
	}
	switch x := v.(type) {
	case time.Duration:
		return scalar(x.String()), nil
	case encoding.TextMarshaler:
		b, err := x.MarshalText()
		if err != nil {
			return nil, fmt.Errorf("config key %s: %w", l.key, err)
		}
		return scalar(string(b)), nil
	}
	var n yaml.Node
	if err := n.Encode(v); err != nil {
		return nil, fmt.Errorf("config key %s: %w", l.key, err)
	}
	return &n, nil
}
