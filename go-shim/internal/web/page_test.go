package web

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// An id attribute, in the page's HTML or in the markup its script writes.
// The leading space keeps data-id and similar attributes out.
var idAttr = regexp.MustCompile(`\sid\s*=\s*(?:"([^"]*)"|'([^']*)')`)

// TestPageWritesEachElementIDOnce: every id in index.html, including those
// in the script's templates, is written once. The script replaces the side
// panel's whole markup on each update, so an id written once cannot be in
// the document twice, and no panel section can be shown twice.
func TestPageWritesEachElementIDOnce(t *testing.T) {
	b, err := os.ReadFile("index.html")
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, m := range idAttr.FindAllSubmatch(b, -1) {
		count[string(m[1])+string(m[2])]++
	}
	for id, n := range count {
		if n != 1 {
			t.Errorf("id %q is written %d times", id, n)
		}
	}
	// The elements the end-to-end test reads are all there.
	for _, id := range []string{"status", "map", "panel", "selected", "blast", "dependents", "dependencies",
		"recovery", "causes", "root-causes", "clear", "facts", "hurt", "users", "cause"} {
		if count[id] != 1 {
			t.Errorf("id %q is written %d times, want once", id, count[id])
		}
	}
	if n := strings.Count(string(b), "<h3>Recovery order</h3>"); n != 1 {
		t.Errorf("the recovery order heading is written %d times, want once", n)
	}
}
