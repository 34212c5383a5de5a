package client_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/sluicehq/sluice/client"
	"github.com/sluicehq/sluice/file"
	sluicehttp "github.com/sluicehq/sluice/http"
)

// exampleServer starts a Sluice server over a file store in a temporary directory, on a
// loopback port, and returns its base URL and a function that stops it.
func exampleServer() (baseURL string, stop func()) {
	dir, err := os.MkdirTemp("", "sluice-example-")
	if err != nil {
		log.Fatal(err)
	}
	store, err := file.Open(dir, file.Options{})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := sluicehttp.NewServer(store, sluicehttp.Config{Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	return "http://" + ln.Addr().String(), func() {
		cancel()
		<-done
		store.Close()
		os.RemoveAll(dir)
		http.DefaultClient.CloseIdleConnections()
	}
}

// A Writer publishes a build log. Write only appends to a local spool file, so the build
// never waits for the network; Close closes the stream and reports whether the server
// confirmed every byte.
func ExampleNewWriter() {
	base, stop := exampleServer()
	defer stop()
	url := base + "/streams/builds/42"

	w, err := client.NewWriter(url, client.WriterOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintln(w, "step 1: compile")
	fmt.Fprintln(w, "step 2: test")
	if err := w.Close(); err != nil { // wraps ErrNotDelivered if bytes were not confirmed
		log.Fatal(err)
	}
	fmt.Println("acknowledged:", w.Acked())

	// Read the stream back, to its end.
	r := client.NewReader(url, client.ReaderOptions{})
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(b))
	// Output:
	// acknowledged: 29
	// step 1: compile
	// step 2: test
}

// A Reader follows a stream while it is being written, resuming by offset if the
// connection drops, and ends with io.EOF when the producer closes the stream.
func ExampleNewReader() {
	base, stop := exampleServer()
	defer stop()
	url := base + "/streams/deploys/7"

	// Create the stream first: to a Reader, a stream that does not exist (yet) is an
	// error wrapping sluice.ErrNotFound, and the Writer creates it only when it connects.
	req, _ := http.NewRequest(http.MethodPut, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()

	w, err := client.NewWriter(url, client.WriterOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintln(w, "deploying")
	r := client.NewReader(url, client.ReaderOptions{})
	defer r.Close()
	closed := make(chan error, 1)
	go func() {
		for _, line := range []string{"release v7 created", "done"} {
			fmt.Fprintln(w, line)
		}
		closed <- w.Close()
	}()
	b, err := io.ReadAll(r) // returns when the stream is closed
	if err != nil {
		log.Fatal(err)
	}
	if err := <-closed; err != nil {
		log.Fatal(err)
	}
	for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		fmt.Println(i+1, line)
	}
	fmt.Println("next offset:", r.Offset())
	// Output:
	// 1 deploying
	// 2 release v7 created
	// 3 done
	// next offset: 34
}
