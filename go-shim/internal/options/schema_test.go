package options

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"
)

// schema is schema.json, generated from the engine's option schema
// (src/config/options/) by `make options` and checked by the Rust tests.
type schema struct {
	Options []struct {
		Key     string   `json:"key"`
		Aliases []string `json:"aliases"`
		Kind    string   `json:"kind"`
	} `json:"options"`
}

func readSchema(t *testing.T) schema {
	t.Helper()
	b, err := os.ReadFile("schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var s schema
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// fill sets every option field that is not set (nil pointers, nil slices) to
// a value of its type, recursing into nested blocks.
func fill(t *testing.T, v reflect.Value) {
	t.Helper()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		if !f.CanSet() {
			continue
		}
		switch f.Kind() {
		case reflect.Struct:
			fill(t, f)
		case reflect.Pointer:
			p := reflect.New(f.Type().Elem())
			switch p.Elem().Interface().(type) {
			case bool:
				p.Elem().SetBool(true)
			case int:
				p.Elem().SetInt(7)
			case float64:
				p.Elem().SetFloat(1.5)
			case time.Duration:
				p.Elem().Set(reflect.ValueOf(3 * time.Second))
			case string:
				p.Elem().SetString("x")
			default:
				t.Fatalf("field %s: no value for %s", v.Type().Field(i).Name, f.Type())
			}
			f.Set(p)
		case reflect.Slice:
			switch f.Interface().(type) {
			case []string:
				f.Set(reflect.ValueOf([]string{"x"}))
			case []time.Duration:
				f.Set(reflect.ValueOf([]time.Duration{time.Second}))
			case []FilterPolicy:
				f.Set(reflect.ValueOf([]FilterPolicy{{Include: &PolicyMatch{MatchType: "strict",
					Attributes: []PolicyAttribute{{Key: "name", Value: "x"}}}}}))
			default:
				t.Fatalf("field %s: no value for %s", v.Type().Field(i).Name, f.Type())
			}
		}
	}
}

// The Go options send the engine exactly the options its schema has: every
// key the shim can send is one of the engine's names for an option, with a
// value of the option's kind, and every engine option can be set from YAML.
func TestOptionsMatchTheEngineSchema(t *testing.T) {
	s := readSchema(t)
	kindOf := map[string]string{}
	for _, o := range s.Options {
		kindOf[o.Key] = o.Kind
		for _, a := range o.Aliases {
			kindOf[a] = o.Kind
		}
	}

	o := Defaults(CompatContrib)
	fill(t, reflect.ValueOf(&o).Elem())
	o.Catalog = filepath.Join(t.TempDir(), "catalog.yaml")
	if err := os.WriteFile(o.Catalog, []byte("services: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	doc, err := o.EngineJSON()
	if err != nil {
		t.Fatal(err)
	}
	var sent map[string]any
	if err := json.Unmarshal(doc, &sent); err != nil {
		t.Fatal(err)
	}

	covered := map[string]bool{}
	for key, v := range sent {
		kind, ok := kindOf[key]
		if !ok {
			t.Errorf("the shim sends %q, which is not an engine option", key)
			continue
		}
		var fits bool
		switch kind {
		case "bool":
			_, fits = v.(bool)
		case "count", "bytes", "number":
			_, fits = v.(float64)
		case "duration", "string", "optional_string", "choice", "preset":
			_, fits = v.(string)
		case "string_list", "buckets", "filter_policies":
			_, fits = v.([]any)
		case "catalog":
			_, fits = v.(map[string]any)
		}
		if !fits {
			t.Errorf("%s: the shim sends %T for an option of kind %s", key, v, kind)
		}
		for _, opt := range s.Options {
			if opt.Key == key {
				covered[opt.Key] = true
			}
			for _, a := range opt.Aliases {
				if a == key {
					covered[opt.Key] = true
				}
			}
		}
	}
	var missing []string
	for _, opt := range s.Options {
		if !covered[opt.Key] {
			missing = append(missing, opt.Key)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("engine options the collector configuration cannot set: %v", missing)
	}
}
