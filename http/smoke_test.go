package http

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/file"
)

func TestSmokePublishFollow(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	resp, err := http.Post(ts.url+"/streams/a/b", "text/plain", strings.NewReader("hello\n"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Stream-Length") != "6" {
		t.Fatalf("publish: %d %v", resp.StatusCode, resp.Header)
	}
	resp, err = http.Get(ts.url + "/streams/a/b")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hello\n" {
		t.Fatalf("got %q", b)
	}
}
