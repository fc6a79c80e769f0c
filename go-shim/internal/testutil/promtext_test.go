package testutil

import "testing"

func TestSample(t *testing.T) {
	text := []byte(`# HELP x_total Requests.
# TYPE x_total counter
x_total{client="a",server="b",connection_type=""} 3
x_total{client="a\"q",server="c"} 4 1700000000000
y 2.5
`)
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
		ok     bool
	}{
		{"x_total", map[string]string{"client": "a", "server": "b"}, 3, true},
		{"x_total", map[string]string{"connection_type": ""}, 3, true},
		{"x_total", map[string]string{"client": `a"q`}, 4, true},
		{"x_total", map[string]string{"server": "z"}, 0, false},
		{"y", nil, 2.5, true},
		{"z", nil, 0, false},
	} {
		got, ok := Sample(text, tc.name, tc.labels)
		if ok != tc.ok || got != tc.want {
			t.Errorf("Sample(%s, %v) = %v, %v; want %v, %v", tc.name, tc.labels, got, ok, tc.want, tc.ok)
		}
	}
}
