package http

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/file"
	"github.com/sluicehq/sluice/internal/nettest"
)

// TestTLS proves HTTPS with HTTP/2 through ALPN, a follower over it, and a renewed
// certificate taken without a restart: by Reload (SIGHUP), and by a handshake once the
// files changed.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	nettest.WriteCert(t, certFile, keyFile, "first")
	certs, err := NewCertReloader(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, Config{TLS: certs.Config()}, file.Options{})
	url := "https" + ts.url[len("http"):]
	served := func() (*http.Response, string) {
		t.Helper()
		var seen *x509.Certificate
		tr := &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{
			InsecureSkipVerify: true, // a self-signed certificate: which one is checked below
			VerifyConnection:   func(cs tls.ConnectionState) error { seen = cs.PeerCertificates[0]; return nil },
		}}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(url + "/streams/tls")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, seen.Subject.CommonName + " " + string(b)
	}
	if _, _, err := ts.store.Create(context.Background(), "tls", sluice.CreateOptions{Data: []byte("secret log\n"), Closed: true}); err != nil {
		t.Fatal(err)
	}
	resp, got := served()
	if resp.ProtoMajor != 2 || got != "first secret log\n" {
		t.Fatalf("over TLS: HTTP/%d, %q; want HTTP/2 with the first certificate", resp.ProtoMajor, got)
	}
	nettest.WriteCert(t, certFile, keyFile, "second")
	if err := certs.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, got := served(); got != "second secret log\n" {
		t.Fatalf("after Reload: %q", got)
	}
	nettest.WriteCert(t, certFile, keyFile, "third")
	future := time.Now().Add(time.Minute)
	os.Chtimes(certFile, future, future)
	certs.mu.Lock()
	certs.checked = time.Time{} // as if recheck had passed
	certs.mu.Unlock()
	if _, got := served(); got != "third secret log\n" {
		t.Fatalf("after the files changed: %q", got)
	}
	// A follower of an open stream over TLS, on HTTP/1.1 (its hijacked connection) and
	// on HTTP/2 (its stream), gets the bytes as they come and the end.
	if _, _, err := ts.store.Create(context.Background(), "live", sluice.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, h2 := range []bool{false, true} {
		tr := &http.Transport{ForceAttemptHTTP2: h2, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		resp, err := (&http.Client{Transport: tr}).Get(url + "/streams/live")
		if err != nil {
			t.Fatal(err)
		}
		if (resp.ProtoMajor == 2) != h2 {
			t.Fatalf("HTTP/%d, want HTTP/2 %v", resp.ProtoMajor, h2)
		}
		st, _ := ts.store.Open(context.Background(), "live")
		w := sluice.Write{Data: []byte("x")}
		if h2 {
			w.Close = true
		}
		st.Write(context.Background(), w)
		st.Release()
		buf := make([]byte, 1)
		if _, err := io.ReadFull(resp.Body, buf); err != nil || buf[0] != 'x' {
			t.Fatalf("follower over TLS (HTTP/2 %v): %q, %v", h2, buf, err)
		}
		if h2 {
			if rest, err := io.ReadAll(resp.Body); err != nil || string(rest) != "x" {
				t.Fatalf("follower over TLS and HTTP/2 at the end: %q, %v", rest, err)
			}
		}
		resp.Body.Close()
		tr.CloseIdleConnections()
	}

	os.WriteFile(certFile, []byte("broken"), 0o600)
	if err := certs.Reload(); err == nil {
		t.Fatal("a broken certificate loaded")
	}
	if _, got := served(); got != "third secret log\n" {
		t.Fatalf("after a failed reload: %q, want the last good certificate", got)
	}
}
