// Package schema validates plists against Apple's device-management YAML
// schemas (a copy of the files mdmd needs is in testdata/, with Apple's
// licence): key names, value types, allowed values, ranges and formats.
// Tests use it to check the profiles and commands mdmd generates and the
// messages its simulated devices send.
package schema

import (
	"embed"
	"fmt"
	"io/fs"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

//go:embed testdata
var files embed.FS

// Key describes one key of a payload, command or message.
type Key struct {
	Key       string `yaml:"key"`
	Type      string `yaml:"type"`
	Presence  string `yaml:"presence"`
	Rangelist []any  `yaml:"rangelist"`
	Range     *struct {
		Min *float64 `yaml:"min"`
		Max *float64 `yaml:"max"`
	} `yaml:"range"`
	Format  string `yaml:"format"`
	Subkeys []Key  `yaml:"subkeys"`
}

// Doc is one schema file.
type Doc struct {
	Title   string `yaml:"title"`
	Payload struct {
		PayloadType string `yaml:"payloadtype"`
		RequestType string `yaml:"requesttype"`
	} `yaml:"payload"`
	PayloadKeys  []Key `yaml:"payloadkeys"`
	ResponseKeys []Key `yaml:"responsekeys"`
}

// Load reads a schema by its path in Apple's repository under mdm/, such as
// "commands/device.lock.yaml".
func Load(path string) (*Doc, error) {
	raw, err := fs.ReadFile(files, "testdata/"+path)
	if err != nil {
		return nil, err
	}
	var d Doc
	if err := yaml.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &d, nil
}

// MustLoad is Load that panics, for tests.
func MustLoad(path string) *Doc {
	d, err := Load(path)
	if err != nil {
		panic(err)
	}
	return d
}

// Options tune a validation.
type Options struct {
	// NotRequired lists keys whose "presence: required" does not apply in
	// this context (the schemas' presence is not context-aware: a device
	// channel TokenUpdate has no EnrollmentID, for example).
	NotRequired []string
}

// Validate checks dict against keys and returns every problem found.
func Validate(keys []Key, dict map[string]any, opt Options) []error {
	skip := map[string]bool{}
	for _, k := range opt.NotRequired {
		skip[k] = true
	}
	var errs []error
	validateDict(keys, dict, "", skip, &errs)
	return errs
}

func validateDict(keys []Key, dict map[string]any, path string, skip map[string]bool, errs *[]error) {
	byName := map[string]Key{}
	anyKey := false
	for _, k := range keys {
		if k.Key == "ANY" {
			anyKey = true
		}
		byName[k.Key] = k
	}
	names := make([]string, 0, len(dict))
	for name := range dict {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		k, ok := byName[name]
		if !ok {
			if !anyKey {
				*errs = append(*errs, fmt.Errorf("%s%s: key not in the schema", path, name))
			}
			continue
		}
		validateValue(k, dict[name], path+name, skip, errs)
	}
	for _, k := range keys {
		if k.Presence == "required" && !skip[k.Key] && k.Key != "ANY" {
			if _, ok := dict[k.Key]; !ok {
				*errs = append(*errs, fmt.Errorf("%s%s: required key missing", path, k.Key))
			}
		}
	}
}

func validateValue(k Key, v any, path string, skip map[string]bool, errs *[]error) {
	fail := func(format string, args ...any) {
		*errs = append(*errs, fmt.Errorf("%s: "+format, append([]any{path}, args...)...))
	}
	rv := reflect.ValueOf(v)
	switch k.Type {
	case "<any>", "":
		return
	case "<string>", "<hostname>", "<url>":
		s, ok := v.(string)
		if !ok {
			fail("want a string, got %T", v)
			return
		}
		if k.Format != "" {
			if re, err := regexp.Compile(k.Format); err == nil && !re.MatchString(s) {
				fail("%q does not match %s", s, k.Format)
			}
		}
	case "<integer>":
		switch rv.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		default:
			fail("want an integer, got %T", v)
			return
		}
	case "<real>":
		switch rv.Kind() {
		case reflect.Float32, reflect.Float64, reflect.Int, reflect.Int64, reflect.Uint64:
		default:
			fail("want a real, got %T", v)
			return
		}
	case "<boolean>":
		if _, ok := v.(bool); !ok {
			fail("want a boolean, got %T", v)
		}
		return
	case "<data>":
		if _, ok := v.([]byte); !ok {
			fail("want data, got %T", v)
		}
		return
	case "<date>":
		if _, ok := v.(time.Time); !ok {
			fail("want a date, got %T", v)
		}
		return
	case "<array>":
		items, ok := v.([]any)
		if !ok {
			fail("want an array, got %T", v)
			return
		}
		if len(k.Subkeys) == 1 {
			for i, item := range items {
				validateValue(k.Subkeys[0], item, fmt.Sprintf("%s[%d]", path, i), skip, errs)
			}
		}
		return
	case "<dictionary>":
		d, ok := v.(map[string]any)
		if !ok {
			fail("want a dictionary, got %T", v)
			return
		}
		if len(k.Subkeys) > 0 {
			validateDict(k.Subkeys, d, path+".", skip, errs)
		}
		return
	default:
		fail("unknown schema type %s", k.Type)
		return
	}
	if len(k.Rangelist) > 0 {
		found := false
		for _, allowed := range k.Rangelist {
			if fmt.Sprint(allowed) == fmt.Sprint(v) {
				found = true
			}
		}
		if !found {
			fail("%v is not one of %v", v, k.Rangelist)
		}
	}
	if k.Range != nil {
		f := toFloat(v)
		if k.Range.Min != nil && f < *k.Range.Min || k.Range.Max != nil && f > *k.Range.Max {
			fail("%v is out of range", v)
		}
	}
}

func toFloat(v any) float64 {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return float64(rv.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return float64(rv.Uint())
	case reflect.Float32, reflect.Float64:
		return rv.Float()
	}
	return 0
}

// Join formats problems for a test failure.
func Join(errs []error) string {
	var b strings.Builder
	for _, e := range errs {
		b.WriteString("\n  " + e.Error())
	}
	return b.String()
}
