// Package testutil holds helpers shared by the shim's tests.
package testutil

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
)

// Sample finds a sample of metric name in Prometheus or OpenMetrics text
// whose labels include every pair in labels, and returns its value. Labels
// not listed in labels are ignored.
func Sample(text []byte, name string, labels map[string]string) (float64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		n, ls, value, ok := parseSample(line)
		if !ok || n != name {
			continue
		}
		match := true
		for k, v := range labels {
			if got, found := ls[k]; !found || got != v {
				match = false
				break
			}
		}
		if match {
			return value, true
		}
	}
	return 0, false
}

// parseSample splits `name{k="v",...} value [timestamp]`.
func parseSample(line string) (string, map[string]string, float64, bool) {
	labels := map[string]string{}
	var name, rest string
	if i := strings.IndexByte(line, '{'); i >= 0 {
		name = line[:i]
		j := i + 1
		for {
			for j < len(line) && (line[j] == ',' || line[j] == ' ') {
				j++
			}
			if j >= len(line) {
				return "", nil, 0, false
			}
			if line[j] == '}' {
				j++
				break
			}
			eq := strings.IndexByte(line[j:], '=')
			if eq < 0 || j+eq+1 >= len(line) || line[j+eq+1] != '"' {
				return "", nil, 0, false
			}
			key := line[j : j+eq]
			j += eq + 2
			var val strings.Builder
			for j < len(line) && line[j] != '"' {
				if line[j] == '\\' && j+1 < len(line) {
					j++
					switch line[j] {
					case 'n':
						val.WriteByte('\n')
					default:
						val.WriteByte(line[j])
					}
				} else {
					val.WriteByte(line[j])
				}
				j++
			}
			if j >= len(line) {
				return "", nil, 0, false
			}
			j++ // closing quote
			labels[key] = val.String()
		}
		rest = line[j:]
	} else {
		sp := strings.IndexByte(line, ' ')
		if sp < 0 {
			return "", nil, 0, false
		}
		name, rest = line[:sp], line[sp:]
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return "", nil, 0, false
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return "", nil, 0, false
	}
	return name, labels, v, true
}
