package servicemapprocessor

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/bearertokenauthextension"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/extension/extensiontest"

	"github.com/servicemap/servicemap/go-shim/internal/testutil"
)

const (
	edgeLine      = `{"client":"lb","server":"a","count":2}` + "\n"
	edgesOff      = "POST /api/edges is off: set `http: {accept_edges: true}` in the servicemap processor's configuration to accept edges\n"
	dashboard     = "https://dash.example"
	testToken     = "s3cret-token"
	authenticator = "bearertokenauth"
)

// call sends one request and returns its status, headers and body.
func call(t *testing.T, c *http.Client, method, url string, header map[string]string, body io.Reader) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// graphJSON is /api/graph; the fixture's clock is fixed, so the same map
// gives the same bytes.
func graphJSON(t *testing.T, c *http.Client, base string, header map[string]string) string {
	t.Helper()
	code, _, body := call(t, c, http.MethodGet, base+"/api/graph", header, nil)
	if code != http.StatusOK {
		t.Fatalf("GET /api/graph: %d %s", code, body)
	}
	return body
}

// consumeOneEdge gives the engine a -> b, so that the map is not empty.
func consumeOneEdge(t *testing.T, f *fixture) {
	t.Helper()
	if err := f.tp.ConsumeTraces(context.Background(), testutil.ClientServer("a", "b", f.clock.Now(), false)); err != nil {
		t.Fatal(err)
	}
}

func TestPostEdgesIsOffByDefault(t *testing.T) {
	f := newFixture(t, testConfig())
	f.start(t)
	consumeOneEdge(t, f)
	base := "http://" + f.p.addr().String()
	before := graphJSON(t, client, base, nil)
	code, _, body := call(t, client, http.MethodPost, base+"/api/edges", map[string]string{"Content-Type": "application/x-ndjson"}, strings.NewReader(edgeLine))
	if code != http.StatusNotFound || body != edgesOff {
		t.Errorf("POST /api/edges by default: %d %q, want 404 %q", code, body, edgesOff)
	}
	if after := graphJSON(t, client, base, nil); after != before {
		t.Errorf("the map changed:\nbefore %s\nafter  %s", before, after)
	}
}

// TestPostEdgesRulesOnTheServer runs the rules behind the server as
// confighttp builds it: its CORS handler, decompression and body bound.
func TestPostEdgesRulesOnTheServer(t *testing.T) {
	cfg := loadHTTP(t, map[string]any{
		"endpoint":            "127.0.0.1:0",
		"accept_edges":        true,
		"max_edges_body_size": 200,
		"cors":                map[string]any{"allowed_origins": []any{dashboard}},
	})
	f := newFixture(t, cfg)
	f.start(t)
	consumeOneEdge(t, f)
	base := "http://" + f.p.addr().String()

	for _, tc := range []struct {
		name   string
		header map[string]string
		body   []byte
		status int
		want   string
	}{
		{"other origin", map[string]string{"Content-Type": "application/json", "Origin": "https://evil.example"}, []byte(edgeLine),
			http.StatusForbidden, `POST /api/edges from origin "https://evil.example" refused: only requests from http://` + f.p.addr().String() +
				` itself, or from an origin listed in the server's cors.allowed_origins, may post edges` + "\n"},
		{"text/plain", map[string]string{"Content-Type": "text/plain"}, []byte(edgeLine),
			http.StatusUnsupportedMediaType, `POST /api/edges takes Content-Type application/json or application/x-ndjson (JSON lines), not "text/plain"` + "\n"},
		// 60 bytes compressed, 900 once decompressed: the bound is on what the engine would read.
		{"gzip past max_edges_body_size", map[string]string{"Content-Type": "application/json", "Content-Encoding": "gzip"}, gzipped(t, padded(900)),
			http.StatusRequestEntityTooLarge, "POST /api/edges body is larger than 200 bytes (http.max_edges_body_size); send the edges in smaller requests\n"},
	} {
		before := graphJSON(t, client, base, nil)
		code, _, body := call(t, client, http.MethodPost, base+"/api/edges", tc.header, bytes.NewReader(tc.body))
		if code != tc.status || body != tc.want {
			t.Errorf("%s: %d %q, want %d %q", tc.name, code, body, tc.status, tc.want)
		}
		if after := graphJSON(t, client, base, nil); after != before {
			t.Errorf("%s: the map changed:\nbefore %s\nafter  %s", tc.name, before, after)
		}
	}

	// The origin the CORS settings allow may post, and its browser is told so.
	code, header, body := call(t, client, http.MethodPost, base+"/api/edges",
		map[string]string{"Content-Type": "application/json", "Origin": dashboard}, strings.NewReader(edgeLine))
	if code != http.StatusNoContent || header.Get("Access-Control-Allow-Origin") != dashboard {
		t.Errorf("from %s: %d %q, Access-Control-Allow-Origin %q", dashboard, code, body, header.Get("Access-Control-Allow-Origin"))
	}
	// So may a client that sends no Origin.
	if code, _, body := call(t, client, http.MethodPost, base+"/api/edges",
		map[string]string{"Content-Type": "application/json"}, strings.NewReader(`{"client":"cron","server":"a"}`)); code != http.StatusNoContent {
		t.Errorf("without Origin: %d %q", code, body)
	}
	code, _, body = call(t, client, http.MethodGet, base+"/api/impact?service=b", nil, nil)
	if want := `"dependents":["a","cron","lb"]`; code != http.StatusOK || !strings.Contains(body, want) {
		t.Errorf("impact of b: %d %s, want %s", code, body, want)
	}
}

// TestServerBoundBelowEdgesBound: when the server's max_request_body_size
// is the lower bound, the message names it.
func TestServerBoundBelowEdgesBound(t *testing.T) {
	cfg := loadHTTP(t, map[string]any{"endpoint": "127.0.0.1:0", "accept_edges": true, "max_request_body_size": 100})
	f := newFixture(t, cfg)
	f.start(t)
	base := "http://" + f.p.addr().String()
	code, _, body := call(t, client, http.MethodPost, base+"/api/edges",
		map[string]string{"Content-Type": "application/json", "Content-Encoding": "gzip"}, bytes.NewReader(gzipped(t, padded(500))))
	want := "POST /api/edges body is larger than 100 bytes (http.max_request_body_size); send the edges in smaller requests\n"
	if code != http.StatusRequestEntityTooLarge || body != want {
		t.Errorf("%d %q, want 413 %q", code, body, want)
	}
}

// TestSecureServer: the processor's endpoint behind TLS and an auth
// extension, configured with the same keys as any collector HTTP server.
func TestSecureServer(t *testing.T) {
	certFile, keyFile, roots := selfSignedCert(t)
	cfg := loadHTTP(t, map[string]any{
		"endpoint":     "127.0.0.1:0",
		"accept_edges": true,
		"tls":          map[string]any{"cert_file": certFile, "key_file": keyFile},
		"auth":         map[string]any{"authenticator": authenticator},
	})
	f := newFixture(t, cfg)
	f.startWith(t, hostWith(t, authenticator, testToken))
	consumeOneEdge(t, f)
	addr := f.p.addr().String()
	base := "https://" + addr
	tlsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	t.Cleanup(tlsClient.CloseIdleConnections)
	authorized := map[string]string{"Authorization": "Bearer " + testToken}

	before := graphJSON(t, tlsClient, base, authorized)
	for _, tc := range []struct {
		name, method, path string
		header             map[string]string
		want               string
	}{
		{"no credentials", http.MethodGet, "/api/graph", nil, "missing or empty authorization header: Authorization\n"},
		{"no credentials", http.MethodGet, "/metrics", nil, "missing or empty authorization header: Authorization\n"},
		{"wrong token", http.MethodGet, "/api/graph", map[string]string{"Authorization": "Bearer guess"},
			"provided authorization does not match expected scheme or token\n"},
		{"no credentials", http.MethodPost, "/api/edges", map[string]string{"Content-Type": "application/json"},
			"missing or empty authorization header: Authorization\n"},
	} {
		code, _, body := call(t, tlsClient, tc.method, base+tc.path, tc.header, strings.NewReader(edgeLine))
		if code != http.StatusUnauthorized || body != tc.want {
			t.Errorf("%s %s, %s: %d %q, want 401 %q", tc.method, tc.path, tc.name, code, body, tc.want)
		}
	}
	if after := graphJSON(t, tlsClient, base, authorized); after != before {
		t.Errorf("unauthenticated requests changed the map:\nbefore %s\nafter  %s", before, after)
	}

	// Plain HTTP on the TLS port is answered by the TLS layer, not served.
	code, _, body := call(t, client, http.MethodGet, "http://"+addr+"/api/graph", nil, nil)
	if code != http.StatusBadRequest || body != "Client sent an HTTP request to an HTTPS server.\n" {
		t.Errorf("plain HTTP: %d %q", code, body)
	}

	// With the token, over TLS the client verified, everything is served.
	if code, _, body := call(t, tlsClient, http.MethodGet, base+"/metrics", authorized, nil); code != http.StatusOK {
		t.Errorf("GET /metrics with the token: %d %q", code, body)
	}
	header := map[string]string{"Authorization": "Bearer " + testToken, "Content-Type": "application/x-ndjson"}
	if code, _, body := call(t, tlsClient, http.MethodPost, base+"/api/edges", header, strings.NewReader(edgeLine)); code != http.StatusNoContent {
		t.Errorf("POST /api/edges with the token: %d %q", code, body)
	}
	code, _, body = call(t, tlsClient, http.MethodGet, base+"/api/impact?service=b", authorized, nil)
	if want := `"dependents":["a","lb"]`; code != http.StatusOK || !strings.Contains(body, want) {
		t.Errorf("impact of b after posting: %d %s, want %s", code, body, want)
	}
}

func TestConfigOfPostedEdges(t *testing.T) {
	cfg, err := loadConfig(t, "edges")
	if err != nil {
		t.Fatal(err)
	}
	if err := confmap.Validate(cfg); err != nil {
		t.Fatal(err)
	}
	opts := (&serviceMapProcessor{cfg: cfg}).edgesOptions()
	if !opts.Accept || opts.MaxBodySize != 65536 || strings.Join(opts.AllowedOrigins, ",") != "https://dash.example,https://*.example.org" {
		t.Errorf("edges options %+v", opts)
	}
	def := (&serviceMapProcessor{cfg: createDefaultConfig()}).edgesOptions()
	if def.Accept || def.MaxBodySize != 1<<20 || def.AllowedOrigins != nil {
		t.Errorf("default edges options %+v", def)
	}

	// Bad values name their key.
	bad := testConfig()
	if err := confmap.NewFromStringMap(map[string]any{"http": map[string]any{"accept_edges": "sometimes"}}).Unmarshal(bad); err == nil ||
		!strings.Contains(err.Error(), "accept_edges") {
		t.Errorf("accept_edges: sometimes: %v", err)
	}
	bad = testConfig()
	bad.HTTP.MaxEdgesBodySize = -1
	if err := confmap.Validate(bad); err == nil || err.Error() != "http.max_edges_body_size: must be a positive number of bytes, got -1" {
		t.Errorf("max_edges_body_size -1: %v", err)
	}
}

// loadHTTP is the test configuration with the given `http` block, read as
// the collector reads its YAML.
func loadHTTP(t *testing.T, block map[string]any) *Config {
	t.Helper()
	cfg := testConfig()
	if err := confmap.NewFromStringMap(map[string]any{"http": block}).Unmarshal(cfg); err != nil {
		t.Fatal(err)
	}
	if err := confmap.Validate(cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// padded is one edge line padded with spaces to n bytes.
func padded(n int) []byte {
	line := `{"client":"big","server":"a"}`
	return []byte(line + strings.Repeat(" ", n-len(line)-1) + "\n")
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// selfSignedCert writes a certificate for 127.0.0.1 and its key to files
// and returns their paths and a pool that trusts the certificate.
func selfSignedCert(t *testing.T) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "servicemap test"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	roots = x509.NewCertPool()
	roots.AddCert(cert)
	return certFile, keyFile, roots
}

// extensionsHost is a host offering the given extensions.
type extensionsHost struct {
	component.Host
	extensions map[component.ID]component.Component
}

func (h extensionsHost) GetExtensions() map[component.ID]component.Component { return h.extensions }

// hostWith starts contrib's bearer token authenticator, accepting token,
// under the name id, and returns a host offering it.
func hostWith(t *testing.T, id, token string) component.Host {
	t.Helper()
	factory := bearertokenauthextension.NewFactory()
	cfg := factory.CreateDefaultConfig()
	if err := confmap.NewFromStringMap(map[string]any{"token": token}).Unmarshal(cfg); err != nil {
		t.Fatal(err)
	}
	ext, err := factory.Create(context.Background(), extensiontest.NewNopSettings(factory.Type()), cfg)
	if err != nil {
		t.Fatal(err)
	}
	host := extensionsHost{Host: componenttest.NewNopHost(), extensions: map[component.ID]component.Component{component.MustNewID(id): ext}}
	if err := ext.Start(context.Background(), host); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ext.Shutdown(context.Background()) })
	return host
}
