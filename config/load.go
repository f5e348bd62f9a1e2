package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

const envPrefix = "EDGECAM"

// LoadOptions say where configuration comes from. Later sources win: defaults, the file,
// environment variables, then flags that were set on the command line.
type LoadOptions struct {
	// Path is the YAML file; empty means no file (defaults, environment and flags only).
	Path string
	// Required makes a missing file an error (the user named it with --config).
	Required bool
	// Flags maps configuration keys to command-line flags; a flag counts only when set.
	Flags map[string]*pflag.Flag
	// Adjust, when set, edits the decoded configuration before validation (dry-run uses it).
	Adjust func(*Config)
}

// Loaded is a validated configuration and where it came from.
type Loaded struct {
	Config
	// File is the configuration file that was read, or "" when none was found.
	File string
}

// Load reads, decodes and validates the configuration. Every problem found (unknown keys,
// values of the wrong type, values out of range) is returned at once as an *Error.
func Load(opts LoadOptions) (*Loaded, error) {
	path := opts.Path
	v := viper.New()
	v.SetEnvPrefix(envPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()

	def := Default()
	byKey := map[string]leaf{}
	for _, l := range leaves(reflect.ValueOf(&def).Elem()) {
		v.SetDefault(l.key, l.value.Interface())
		byKey[l.key] = l
	}

	loaded := &Loaded{}
	var data []byte // the file, read once: viper decodes it, restoreMapKeys reads its map keys
	if path != "" {
		var err error
		data, err = os.ReadFile(path)
		switch {
		case err == nil:
			v.SetConfigType("yaml")
			if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
				return nil, fmt.Errorf("config file %s: %w", path, err)
			}
			loaded.File = path
		case errors.Is(err, os.ErrNotExist) && !opts.Required:
			// No file: defaults, environment and flags only.
		case errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("config file %s does not exist: create it (see configs/edgecam.yaml) or name another with --config", path)
		default:
			return nil, fmt.Errorf("config file %s: %w", path, err)
		}
	}

	for key, f := range opts.Flags {
		if _, ok := byKey[key]; !ok {
			return nil, fmt.Errorf("config: flag --%s is bound to unknown key %q", f.Name, key)
		}
		if f.Changed {
			if err := v.BindPFlag(key, f); err != nil {
				return nil, fmt.Errorf("config: bind --%s: %w", f.Name, err)
			}
		}
	}

	var problems Problems
	problems = append(problems, unknownKeys(v, byKey)...)
	problems = append(problems, unknownEnv(byKey)...)

	cfg := def
	err := v.Unmarshal(&cfg, func(dc *mapstructure.DecoderConfig) {
		dc.TagName = "yaml"
		dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(
			mapstructure.TextUnmarshallerHookFunc(),
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		)
	})
	problems = append(problems, decodeProblems(err, byKey)...)
	if loaded.File != "" {
		restoreMapKeys(data, &cfg)
	}
	if opts.Adjust != nil {
		opts.Adjust(&cfg)
	}
	problems = append(problems, cfg.Validate()...)
	if len(problems) > 0 {
		return nil, &Error{File: loaded.File, Problems: problems.sorted()}
	}
	loaded.Config = cfg
	return loaded, nil
}

// unknownKeys reports keys in the file that edgecam does not know, with a suggestion.
func unknownKeys(v *viper.Viper, known map[string]leaf) Problems {
	names := make([]string, 0, len(known))
	for k := range known {
		names = append(names, k)
	}
	var out Problems
	for _, key := range v.AllKeys() {
		if _, ok := known[key]; ok || underMapKey(key, known) {
			continue
		}
		msg := "unknown key"
		if s := closest(key, names); s != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", s)
		} else {
			msg += "; see configs/edgecam.yaml for every key"
		}
		out = append(out, Problem{Key: key, Msg: msg})
	}
	return out
}

// underMapKey reports whether key lies inside a map-typed key, whose sub-keys are free-form.
func underMapKey(key string, known map[string]leaf) bool {
	for k, l := range known {
		if l.field.Type.Kind() == reflect.Map && strings.HasPrefix(key, k+".") {
			return true
		}
	}
	return false
}

// unknownEnv reports EDGECAM_* variables that set no key: a typo there is otherwise silent.
func unknownEnv(known map[string]leaf) Problems {
	envs := map[string]string{}
	for k := range known {
		envs[EnvName(k)] = k
	}
	names := make([]string, 0, len(envs))
	for e := range envs {
		names = append(names, e)
	}
	var out Problems
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, envPrefix+"_") {
			continue
		}
		if _, ok := envs[name]; ok {
			continue
		}
		msg := "environment variable sets no configuration key"
		if s := closest(name, names); s != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", s)
		}
		out = append(out, Problem{Key: "$" + name, Msg: msg})
	}
	return out
}

// decodeProblems turns mapstructure's errors into one Problem per key, in the user's terms.
func decodeProblems(err error, known map[string]leaf) Problems {
	if err == nil {
		return nil
	}
	var out Problems
	for _, e := range flatten(err) {
		var de *mapstructure.DecodeError
		if !errors.As(e, &de) {
			out = append(out, Problem{Key: "(config)", Msg: e.Error()})
			continue
		}
		key := de.Name()
		l, ok := known[key]
		if !ok {
			out = append(out, Problem{Key: key, Msg: de.Unwrap().Error()})
			continue
		}
		out = append(out, Problem{Key: key, Msg: wantType(l.field.Type, de.Unwrap())})
	}
	return out
}

// flatten unwraps joined and wrapped errors down to mapstructure's per-key errors.
func flatten(err error) []error {
	switch u := err.(type) {
	case *mapstructure.DecodeError:
		return []error{u}
	case interface{ Unwrap() []error }:
		var out []error
		for _, e := range u.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	case interface{ Unwrap() error }:
		if inner := u.Unwrap(); inner != nil {
			return flatten(inner)
		}
	}
	return []error{err}
}

// wantType says what a key of type t accepts.
func wantType(t reflect.Type, cause error) string {
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return "want a duration such as 2s, 500ms or 1m30s (" + cause.Error() + ")"
	case t == reflect.TypeFor[ByteSize]():
		return "want a size such as 512MiB or 2GB (" + cause.Error() + ")"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "want true or false (" + cause.Error() + ")"
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint, reflect.Uint32, reflect.Uint64:
		return "want a whole number (" + cause.Error() + ")"
	case reflect.Float64:
		return "want a number (" + cause.Error() + ")"
	case reflect.Slice:
		return "want a list (" + cause.Error() + ")"
	case reflect.Map:
		return "want a mapping of keys to values (" + cause.Error() + ")"
	}
	return cause.Error()
}

// Problem is one thing wrong with the configuration.
type Problem struct {
	Key string // dotted key path, or $ENV_NAME
	Msg string
}

func (p Problem) String() string { return p.Key + ": " + p.Msg }

// Problems is a list of configuration problems.
type Problems []Problem

func (ps Problems) sorted() Problems {
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Key < ps[j].Key })
	return ps
}

// Error is returned by Load when the configuration has problems.
type Error struct {
	File     string
	Problems Problems
}

func (e *Error) Error() string {
	var b strings.Builder
	src := "configuration"
	if e.File != "" {
		src = "config file " + e.File
	}
	noun := "problems"
	if len(e.Problems) == 1 {
		noun = "problem"
	}
	fmt.Fprintf(&b, "%s has %d %s:", src, len(e.Problems), noun)
	for _, p := range e.Problems {
		b.WriteString("\n  " + p.String())
	}
	return b.String()
}

// restoreMapKeys reads map-typed keys (provisioning.parameters) from the file's YAML again:
// viper lowercases every key, but template parameters such as SerialNumber are case-sensitive.
func restoreMapKeys(data []byte, cfg *Config) {
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return
	}
	for _, l := range leaves(reflect.ValueOf(cfg).Elem()) {
		if l.field.Type.Kind() != reflect.Map {
			continue
		}
		node := any(raw)
		for _, part := range strings.Split(l.key, ".") {
			m, ok := node.(map[string]any)
			if !ok {
				node = nil
				break
			}
			node = m[part]
		}
		m, ok := node.(map[string]any)
		if !ok {
			continue
		}
		restored := reflect.MakeMapWithSize(l.field.Type, len(m))
		for k, v := range m {
			if s, ok := v.(string); ok || v == nil {
				restored.SetMapIndex(reflect.ValueOf(k), reflect.ValueOf(s))
				continue
			}
			restored.SetMapIndex(reflect.ValueOf(k), reflect.ValueOf(fmt.Sprint(v)))
		}
		l.value.Set(restored)
	}
}
