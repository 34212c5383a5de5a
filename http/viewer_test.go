package http

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/file"
	"github.com/sluicehq/sluice/jwt"
)

// The web viewer's end-to-end tests drive a real headless Chromium (Debian's chromium,
// through chromedp) against a real server. In CI (CI set) a missing chromium fails the
// tests; on a developer's machine without it they are skipped.

// browserAccept is what Chromium sends when it navigates to a page.
const browserAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8"

// vGet makes a GET (or another method) with the given Accept ("" for none) and returns
// the response with its body read.
func vGet(t *testing.T, method, url, accept string, h ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(subCtx(t), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	for i := 0; i+1 < len(h); i += 2 {
		req.Header.Set(h[i], h[i+1])
	}
	resp, err := http.DefaultTransport.RoundTrip(req) // DefaultClient would add nothing, but be explicit: no Accept added
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// vPublish POSTs body at offset off to the server at base.
func vPublish(t *testing.T, base, key string, off int64, body []byte, closeAtEnd bool) {
	t.Helper()
	req, err := http.NewRequestWithContext(subCtx(t), http.MethodPost, base+"/streams/"+key, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Stream-Offset", strconv.FormatInt(off, 10))
	if !closeAtEnd {
		req.Header.Set("Stream-Close", "false")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("publish %s at %d: %d %s", key, off, resp.StatusCode, msg)
	}
}

// TestViewerNegotiation proves the rule "GET /streams/{key} from a browser (Accept:
// text/html and no explicit format) serves the viewer page; every other client keeps
// getting the raw stream exactly as the contract says", and that the page has a strict
// CSP and its assets are cached.
func TestViewerNegotiation(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	body := []byte("hello <b>world</b>\n")
	vPublish(t, ts.url, "app/build", 0, body, true)
	u := ts.url + "/streams/app/build"

	for _, tc := range []struct {
		name, query, accept string
		want                string // raw, sse or page
	}{
		{"curl-like", "", "*/*", "raw"},
		{"no Accept", "", "", "raw"},
		{"EventSource", "", "text/event-stream", "sse"},
		{"html and event-stream", "", "text/html, text/event-stream;q=0.9", "sse"},
		{"browser", "", browserAccept, "page"},
		{"format=html", "?format=html", "*/*", "page"},
		{"browser format=raw", "?format=raw", browserAccept, "raw"},
		{"browser format=sse", "?format=sse", browserAccept, "sse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// identity, as curl sends no Accept-Encoding (Go's transport would add gzip).
			resp, b := vGet(t, http.MethodGet, u+tc.query, tc.accept, "Accept-Encoding", "identity")
			csp := resp.Header.Get("Content-Security-Policy")
			switch tc.want {
			case "raw":
				subWantHeaders(t, resp.Header, "Content-Type", "text/plain; charset=utf-8", "Content-Length", strconv.Itoa(len(body)))
				subEqual(t, "raw body", b, body)
			case "sse":
				subWantHeaders(t, resp.Header, "Content-Type", "text/event-stream")
				if !bytes.Contains(b, []byte("data: hello <b>world</b>\ndata: \n")) || !bytes.Contains(b, []byte("event: end")) {
					t.Fatalf("SSE body %q lacks the stream's event or the end", b)
				}
			case "page":
				subWantHeaders(t, resp.Header, "Content-Type", "text/html; charset=utf-8", "Content-Security-Policy", viewerCSP,
					"X-Content-Type-Options", "nosniff", "Referrer-Policy", "no-referrer", "Stream-Length", strconv.Itoa(len(body)))
				if resp.StatusCode != 200 || !bytes.Contains(b, []byte(`src="/_sluice/viewer.js?v=`)) || bytes.Contains(b, []byte("world")) {
					t.Fatalf("page: %d %q", resp.StatusCode, b)
				}
				return
			}
			if resp.StatusCode != 200 || csp != "" {
				t.Fatalf("status %d, CSP %q: want 200 and no CSP", resp.StatusCode, csp)
			}
		})
	}

	t.Run("curl", func(t *testing.T) {
		curl, err := exec.LookPath("curl")
		if err != nil {
			t.Skip("curl not installed") // the Accept */* case above covers curl's request
		}
		out, err := exec.CommandContext(subCtx(t), curl, "-sS", u).Output()
		if err != nil {
			t.Fatal(err)
		}
		subEqual(t, "curl", out, body)
	})

	t.Run("not found", func(t *testing.T) {
		resp, b := vGet(t, http.MethodGet, ts.url+"/streams/nope", browserAccept)
		subWantHeaders(t, resp.Header, "Content-Type", "text/html; charset=utf-8", "Content-Security-Policy", viewerCSP)
		if resp.StatusCode != http.StatusNotFound || !bytes.Contains(b, []byte("Stream not found")) {
			t.Fatalf("missing stream: %d %q", resp.StatusCode, b)
		}
		resp, _ = vGet(t, http.MethodGet, ts.url+"/streams/a/../b", browserAccept)
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("bad key: %d, want 400", resp.StatusCode)
		}
	})

	t.Run("assets", func(t *testing.T) {
		for name, ctype := range map[string]string{"viewer.js": "text/javascript; charset=utf-8", "viewer.css": "text/css; charset=utf-8"} {
			resp, b := vGet(t, http.MethodGet, ts.url+"/_sluice/"+name, "")
			subWantHeaders(t, resp.Header, "Content-Type", ctype, "Cache-Control", "public, max-age=31536000, immutable")
			etag := resp.Header.Get("ETag")
			if resp.StatusCode != 200 || len(b) == 0 || etag == "" {
				t.Fatalf("%s: %d, %d bytes, ETag %q", name, resp.StatusCode, len(b), etag)
			}
			resp, _ = vGet(t, http.MethodGet, ts.url+"/_sluice/"+name, "", "If-None-Match", etag)
			if resp.StatusCode != http.StatusNotModified {
				t.Fatalf("%s with If-None-Match: %d, want 304", name, resp.StatusCode)
			}
		}
		resp, _ := vGet(t, http.MethodGet, ts.url+"/_sluice/nope.js", "")
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("unknown asset: %d", resp.StatusCode)
		}
	})
}

// browserLog keeps what Chromium printed, for failure messages.
var browserLog lockedBuffer

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newBrowser starts a headless Chromium for the test and returns the context of its
// first tab, from which tab opens more; it is stopped when the test ends.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed: the viewer's browser tests need it (apt-get install chromium)")
		}
		t.Skip("chromium is not installed; CI installs it and runs these tests")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 800),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.CombinedOutput(&browserLog),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	// The first tab starts the browser; the tests' tabs open beside it. A start is
	// retried: on a loaded machine Chromium has been seen to exit at once, silently.
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		bctx, bcancel := chromedp.NewContext(actx)
		if err = chromedp.Do(bctx); err == nil {
			t.Cleanup(bcancel)
			return bctx
		}
		bcancel()
		t.Logf("start browser (attempt %d): %v\n%s", attempt, err, browserLog.String())
	}
	t.Fatalf("start browser: %v", err)
	return nil
}

// tab opens a new tab in the browser; it is closed when the test ends. init, if not
// empty, runs in every document before the page's own scripts.
func tab(t *testing.T, browser context.Context, init string) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("open tab: %v\n%s", err, browserLog.String())
	}
	if init != "" {
		err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: init})
			return err
		}))
		if err != nil {
			t.Fatal(err)
		}
	}
	return ctx
}

func navigate(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("navigate %s: %v", url, err)
	}
}

func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor evaluates expr until it is true, failing after a generous bound. (chromedp's
// Poll compiles its predicate with new Function, which the page's CSP forbids, rightly.)
func waitFor(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(subTimeout)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (%s): err %v; page: %s", what, expr, err, pageState(ctx))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pageText is the text the viewer shows: its lines joined with "\n".
const pageText = `Array.from(document.querySelectorAll('#log .ln'), e => e.textContent).join('\n')`

func pageState(ctx context.Context) string {
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('state').textContent + ' | ' + document.getElementById('size').textContent + ' | ' + (`+pageText+`).slice(-300)`))
	return s
}

// waitText waits until the page shows exactly want, and reports what it showed if not.
func waitText(t *testing.T, ctx context.Context, want string) {
	t.Helper()
	js, _ := json.Marshal(want)
	deadline := time.Now().Add(subTimeout)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(`+pageText+`) === `+string(js)))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			got, _ := chromedp.Run(ctx, chromedp.Evaluate[string](pageText))
			t.Fatalf("page text:\n%q\nwant:\n%q\n(err %v)", got, want, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitState(t *testing.T, ctx context.Context, state string) {
	t.Helper()
	waitFor(t, ctx, "state "+state, `document.getElementById('state').textContent === '`+state+`'`)
}

// colourful is a build log with the escape sequences real tools write.
func colourful() []byte {
	var b bytes.Buffer
	b.WriteString("\x1b[1m==> Building sluice\x1b[0m (go1.26, linux/amd64)\n")
	b.WriteString("\x1b[2m$ go build ./...\x1b[0m\n")
	for i := 0; i <= 100; i += 25 {
		fmt.Fprintf(&b, "\rdownloading modules [\x1b[32m%-20s\x1b[0m] %3d%%\x1b[K", strings.Repeat("#", i/5), i)
	}
	b.WriteString("\n")
	b.WriteString("\x1b[33mwarning:\x1b[0m http/follow.go:42: \x1b[3munused variable\x1b[0m\n")
	b.WriteString("\x1b[38;5;39mtest\x1b[0m  sluice/http      \x1b[42;30m PASS \x1b[0m 4.2s\n")
	b.WriteString("\x1b[38;5;39mtest\x1b[0m  sluice/file      \x1b[42;30m PASS \x1b[0m 1.7s\n")
	b.WriteString("\x1b[38;5;39mtest\x1b[0m  sluice/sse       \x1b[41;97m FAIL \x1b[0m 0.3s\n")
	b.WriteString("    \x1b[31mdecoder_test.go:88: got \"a\\r\", want \"a\"\x1b[0m\n")
	b.WriteString("\x1b[38;2;255;135;0mtruecolor\x1b[0m \x1b[7m inverse \x1b[0m \x1b[4munderlined\x1b[0m \x1b[9mstruck\x1b[0m\n")
	b.WriteString("<script>window.pwned = true</script> stays text\n")
	b.WriteString("\x1b]0;window title\x07\x1b[?25l\x1b[1;32m✔ deployed\x1b[0m to \x1b[4;36mhttps://example.test\x1b[0m\n")
	return b.Bytes()
}

// TestViewer proves the viewer's rules in a real browser: live follow ("open a stream's
// URL in a browser and watch it live"), terminal-like rendering ("ANSI SGR colours and
// styles", "\r overwriting the current line", "\x1b[K", "other escape sequences
// dropped", "invalid UTF-8 shown with replacement characters"), "HTML is always
// escaped", permalinks ("#L120 scrolls to and highlights a line"), and "a 50 MB stream
// opens without freezing the tab", with the page's long tasks measured.
func TestViewer(t *testing.T) {
	ts := newTestServer(t, Config{SSERetry: 200 * time.Millisecond}, file.Options{SyncInterval: time.Second})
	browser := newBrowser(t)

	t.Run("live", func(t *testing.T) {
		ctx := tab(t, browser, "")
		subCreate(t, ts, "live/1")
		navigate(t, ctx, ts.url+"/streams/live/1")
		waitState(t, ctx, "live")
		var sent []byte
		for i, part := range []string{"step 1: fetch\n", "step 2: build ", "(still going)\nstep 3: héllo wörld ✓\n", "no newline at the end"} {
			vPublish(t, ts.url, "live/1", int64(len(sent)), []byte(part), false)
			sent = append(sent, part...)
			waitText(t, ctx, string(sent))
			if i == 0 {
				waitFor(t, ctx, "line numbers", `document.querySelector('#log .ln').dataset.n === '1'`)
			}
		}
		subClose(t, ts, "live/1")
		waitState(t, ctx, "closed")
		waitText(t, ctx, string(sent))
		if got := eval[string](t, ctx, `document.getElementById('size').textContent`); got != fmt.Sprintf("%d B", len(sent)) {
			t.Errorf("size shown %q, want %d B", got, len(sent))
		}
		if got := eval[string](t, ctx, `document.getElementById('raw').getAttribute('href')`); got != "/streams/live/1?format=raw&follow=false" {
			t.Errorf("raw link %q", got)
		}
	})

	t.Run("closed empty", func(t *testing.T) {
		// The SSE request gets 204 No Content, which stops EventSource: the page must
		// show the stream closed, not an error or an endless "reconnecting".
		ctx := tab(t, browser, "")
		vPublish(t, ts.url, "empty", 0, nil, true)
		navigate(t, ctx, ts.url+"/streams/empty")
		waitState(t, ctx, "closed")
		waitText(t, ctx, "")
		if got := eval[string](t, ctx, `document.getElementById('size').textContent`); got != "0 B" {
			t.Errorf("size shown %q, want 0 B", got)
		}
	})

	t.Run("rendering", func(t *testing.T) {
		ctx := tab(t, browser, "")
		in := "plain \x1b[31mred\x1b[0m \x1b[1;38;5;208mbold256\x1b[0m \x1b[38;2;10;200;30;48;2;1;2;3mtruecolor\x1b[0m \x1b[3;4mitalic-underline\x1b[22;23;24m after\n" +
			"progress 10%\rprogress 50%\rprogress 100%\n" +
			"abcdef\r12\x1b[K\n" +
			"bad \xff\xfe utf8 \xe2\x82\n" +
			"<script>window.pwned=1;document.title='pwned'</script><img src=x onerror=\"window.pwned=2\"> &amp; <b>not bold</b>\n" +
			"\x1b]0;title\x07osc \x1b[2Jgone \x1b[?25lcursor\x1b(B ok\x07\x00\n"
		vPublish(t, ts.url, "render", 0, []byte(in), true)
		navigate(t, ctx, ts.url+"/streams/render")
		waitState(t, ctx, "closed")
		waitText(t, ctx, "plain red bold256 truecolor italic-underline after\n"+
			"progress 100%\n"+
			"12\n"+
			"bad \ufffd\ufffd utf8 \ufffd\n"+
			"<script>window.pwned=1;document.title='pwned'</script><img src=x onerror=\"window.pwned=2\"> &amp; <b>not bold</b>\n"+
			"osc gone cursor ok\n")
		styles := eval[map[string]string](t, ctx, `(() => {
			const spans = Array.from(document.querySelectorAll('#log .ln span'));
			const by = (txt) => getComputedStyle(spans.find(s => s.textContent === txt));
			const r = by('red'), b = by('bold256'), c = by('truecolor'), iu = by('italic-underline');
			return {red: r.color, bold: b.fontWeight, c256: b.color, tc: c.color, tcbg: c.backgroundColor,
				italic: iu.fontStyle, underline: iu.textDecorationLine, plain: String(spans.some(s => s.textContent.includes('plain') || s.textContent.includes('after')))};
		})()`)
		want := map[string]string{"red": "rgb(224, 108, 117)", "bold": "700", "c256": "rgb(255, 135, 0)", "tc": "rgb(10, 200, 30)",
			"tcbg": "rgb(1, 2, 3)", "italic": "italic", "underline": "underline", "plain": "false"}
		for k, v := range want {
			if styles[k] != v {
				t.Errorf("style %s = %q, want %q (all: %v)", k, styles[k], v, styles)
			}
		}
		// Nothing from the stream ran or became markup.
		if got := eval[string](t, ctx, `String(window.pwned) + '|' + document.title + '|' + document.querySelectorAll('#log script, #log img, #log b').length`); got != "undefined|render · Sluice|0" {
			t.Errorf("script injection: pwned|title|elements = %q", got)
		}
	})

	t.Run("permalink", func(t *testing.T) {
		ctx := tab(t, browser, "")
		var b strings.Builder
		for i := 1; i <= 300; i++ {
			fmt.Fprintf(&b, "line %d\n", i)
		}
		vPublish(t, ts.url, "perma", 0, []byte(b.String()), false) // still open: loading
		navigate(t, ctx, ts.url+"/streams/perma#L3")
		waitFor(t, ctx, "line 3 highlighted", `(() => { const h = document.querySelectorAll('#log .ln.hl');
			return h.length === 1 && h[0].dataset.n === '3' && h[0].textContent === 'line 3'; })()`)
		// It is scrolled into view, not left at the end where following would put it.
		if ok := eval[bool](t, ctx, `(() => { const r = document.querySelector('#log .ln.hl').getBoundingClientRect(), s = document.getElementById('scroller').getBoundingClientRect();
			return r.top >= s.top && r.bottom <= s.bottom; })()`); !ok {
			t.Error("line 3 is not in view")
		}
		// A hash change moves the highlight.
		if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`location.hash = '#L250'`)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, ctx, "line 250 highlighted", `(() => { const h = document.querySelectorAll('#log .ln.hl');
			return h.length === 1 && h[0].dataset.n === '250' && h[0].textContent === 'line 250'; })()`)
		// Search finds loaded text.
		if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`document.getElementById('q').value = 'LINE 12'; document.getElementById('search').requestSubmit()`)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, ctx, "search hit", `document.getElementById('hits').textContent === '1/11' && document.querySelector('#log .ln.match').textContent === 'line 12'`)
	})

	t.Run("follow mode", func(t *testing.T) {
		// "follow mode that stops when the user scrolls up and resumes with a 'jump to
		// end' control".
		ctx := tab(t, browser, "")
		var sent []byte
		publish := func(from, to int) {
			var b strings.Builder
			for i := from; i < to; i++ {
				fmt.Fprintf(&b, "line %d\n", i)
			}
			vPublish(t, ts.url, "follow", int64(len(sent)), []byte(b.String()), false)
			sent = append(sent, b.String()...)
		}
		publish(1, 201)
		navigate(t, ctx, ts.url+"/streams/follow")
		waitText(t, ctx, string(sent))
		const atEnd = `(() => { const s = document.getElementById('scroller'); return s.scrollTop + s.clientHeight >= s.scrollHeight - 4; })()`
		waitFor(t, ctx, "following at the end", atEnd+` && document.getElementById('jump').hidden`)
		if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`document.getElementById('scroller').scrollTop = 0`)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, ctx, "jump to end shown", `!document.getElementById('jump').hidden`)
		publish(201, 251)
		waitText(t, ctx, string(sent))
		if top := eval[float64](t, ctx, `document.getElementById('scroller').scrollTop`); top > 5 {
			t.Errorf("scrolled to %v while the user had scrolled up: follow mode did not stop", top)
		}
		if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`document.getElementById('jump').click()`)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, ctx, "back at the end", atEnd+` && document.getElementById('jump').hidden`)
		publish(251, 301)
		waitText(t, ctx, string(sent))
		waitFor(t, ctx, "following again", atEnd)
	})

	t.Run("large open", func(t *testing.T) {
		// A large stream starts from its end (a ranged read) and then follows over SSE
		// from ?offset: the bytes after it arrive, none before it is shown twice.
		ctx := tab(t, browser, "")
		var b bytes.Buffer
		for i := 1; b.Len() < 5<<20; i++ {
			fmt.Fprintf(&b, "line %07d of a large stream that is still open\n", i)
		}
		vPublish(t, ts.url, "large-open", 0, b.Bytes(), false)
		navigate(t, ctx, ts.url+"/streams/large-open")
		waitState(t, ctx, "live")
		waitFor(t, ctx, "tail loaded", `document.getElementById('size').textContent === '2.0 MiB of 5.0 MiB loaded'`)
		vPublish(t, ts.url, "large-open", int64(b.Len()), []byte("one more line\n"), true)
		waitState(t, ctx, "closed")
		const tail = `(() => { const l = Array.from(document.querySelectorAll('#log .ln'), e => e.textContent); return l.slice(-3).join('|'); })()`
		waitFor(t, ctx, "last line", tail+`.endsWith('|one more line|')`)
		got := eval[string](t, ctx, tail)
		last := b.Bytes()[bytes.LastIndexByte(b.Bytes()[:b.Len()-1], '\n')+1 : b.Len()-1]
		if want := string(last) + "|one more line|"; got != want {
			t.Errorf("last lines %q, want %q", got, want)
		}
		// Every shown line is a whole line of the stream, each once, in order.
		lines := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('#log .ln'), e => e.textContent)`)
		first := -1
		for i, l := range lines[:len(lines)-2] {
			var n int
			if _, err := fmt.Sscanf(l, "line %d of a large stream that is still open", &n); err != nil {
				t.Fatalf("line %d: %q is not a whole line of the stream", i, l)
			}
			if first < 0 {
				first = n
			} else if n != first+i {
				t.Fatalf("line %d is %d, want %d", i, n, first+i)
			}
		}
	})

	t.Run("permalink large", func(t *testing.T) {
		// "#L120 scrolls to and highlights a line, also while the stream is still
		// loading", here in a stream too large to render whole.
		ctx := tab(t, browser, longTasks)
		var b bytes.Buffer
		for i := 1; b.Len() < 6<<20; i++ {
			fmt.Fprintf(&b, "line %d\x1b[2m of a stream too large to render whole\x1b[0m\n", i)
		}
		vPublish(t, ts.url, "perma-large", 0, b.Bytes(), true)
		navigate(t, ctx, ts.url+"/streams/perma-large#L40000")
		waitFor(t, ctx, "line 40000 highlighted", `(() => { const h = document.querySelectorAll('#log .ln.hl');
			return h.length === 1 && h[0].dataset.n === '40000' && h[0].textContent === 'line 40000 of a stream too large to render whole'; })()`)
		waitState(t, ctx, "closed")
		if n := eval[int](t, ctx, `document.querySelectorAll('#log .ln').length`); n > 20001 {
			t.Errorf("%d lines rendered, want at most 20,000", n)
		}
		if ok := eval[bool](t, ctx, `(() => { const r = document.querySelector('#log .ln.hl').getBoundingClientRect(), s = document.getElementById('scroller').getBoundingClientRect();
			return r.top >= s.top && r.bottom <= s.bottom; })()`); !ok {
			t.Error("line 40000 is not in view after the stream loaded")
		}
		tasks := eval[[][]float64](t, ctx, `window.__longtasks`)
		var total, most float64
		for _, e := range tasks {
			total += e[1]
			most = max(most, e[1])
		}
		t.Logf("6 MiB stream read whole over SSE: %d long tasks, longest %.0f ms, total %.0f ms", len(tasks), most, total)
		if most > 1000 {
			t.Errorf("a main-thread task took %.0f ms", most)
		}
	})

	t.Run("load earlier to the start", func(t *testing.T) {
		// A large stream opened at its end has no line numbers until "load earlier"
		// reaches its start; then every line has its number.
		ctx := tab(t, browser, "")
		var b bytes.Buffer
		pad := strings.Repeat(".", 480)
		lines := 0
		for b.Len() < 5<<20 {
			lines++
			fmt.Fprintf(&b, "line %d %s\n", lines, pad)
		}
		vPublish(t, ts.url, "earlier", 0, b.Bytes(), true)
		navigate(t, ctx, ts.url+"/streams/earlier")
		waitState(t, ctx, "closed")
		waitFor(t, ctx, "the end, unnumbered", `(() => { const l = document.querySelectorAll('#log .ln'); return l.length > 100 && !l[0].dataset.n; })()`)
		for i := 0; ; i++ {
			if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`document.getElementById('earlier').click()`)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, ctx, "earlier loaded", `document.getElementById('earlier').textContent === 'load earlier'`)
			if eval[bool](t, ctx, `document.getElementById('earlier').hidden`) {
				break
			}
			if i > 40 {
				t.Fatalf("load earlier never reached the start: %s", pageState(ctx))
			}
		}
		waitText(t, ctx, b.String())
		bad := eval[string](t, ctx, `(() => { const l = document.querySelectorAll('#log .ln');
			for (let i = 0; i < l.length - 1; i++) if (l[i].dataset.n !== String(i + 1) || !l[i].textContent.startsWith('line ' + (i + 1) + ' ')) return i + ': ' + l[i].dataset.n + ' ' + l[i].textContent.slice(0, 20);
			return ''; })()`)
		if bad != "" {
			t.Errorf("line numbers after loading to the start: %s", bad)
		}
		if got := eval[string](t, ctx, `document.getElementById('size').textContent`); got != "5.0 MiB" {
			t.Errorf("size %q, want 5.0 MiB (all loaded)", got)
		}
	})

	t.Run("50MB", func(t *testing.T) { viewerLarge(t, ts, browser) })

	t.Run("screenshot", func(t *testing.T) {
		ctx := tab(t, browser, "")
		vPublish(t, ts.url, "builds/1234", 0, colourful(), true)
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(1000, 420)); err != nil {
			t.Fatal(err)
		}
		navigate(t, ctx, ts.url+"/streams/builds/1234")
		waitState(t, ctx, "closed")
		waitFor(t, ctx, "rendered", `document.querySelectorAll('#log .ln').length === 12`)
		if got := eval[string](t, ctx, `document.querySelectorAll('#log .ln')[2].textContent`); got != "downloading modules [####################] 100%" {
			t.Errorf("progress line %q", got)
		}
		shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(shot))
		if err != nil || img.Bounds().Dx() < 500 {
			t.Fatalf("screenshot: %v", err)
		}
		if os.Getenv("SLUICE_SCREENSHOTS") == "1" {
			if err := os.WriteFile(filepath.Join("..", "docs", "viewer.png"), shot, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// longTasks collects the page's main-thread long tasks from its first script on.
const longTasks = `window.__longtasks = [];
new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__longtasks.push([e.startTime, e.duration]); }).observe({type: 'longtask', buffered: true});`

// viewerLarge opens a 50 MB closed stream: the page starts from the end (the last 2 MB,
// by a ranged read), stays responsive (long tasks measured), and loads earlier parts.
func viewerLarge(t *testing.T, ts *testServer, browser context.Context) {
	const size = 50 << 20
	var b bytes.Buffer
	b.Grow(size + 200)
	for i := 1; b.Len() < size; i++ {
		fmt.Fprintf(&b, "\x1b[2m%08d\x1b[0m \x1b[32mINFO\x1b[0m step %d of the build: compiling package number %d with \x1b[1mflags\x1b[0m -race -trimpath\n", i, i, i*7)
	}
	data := b.Bytes()
	lastLine := data[bytes.LastIndexByte(data[:len(data)-1], '\n')+1 : len(data)-1]
	vPublish(t, ts.url, "big", 0, data, true)

	ctx := tab(t, browser, longTasks)
	start := time.Now()
	navigate(t, ctx, ts.url+"/streams/big")
	waitState(t, ctx, "closed")
	plain := strings.NewReplacer("\x1b[2m", "", "\x1b[0m", "", "\x1b[32m", "", "\x1b[1m", "").Replace(string(lastLine))
	js, _ := json.Marshal(plain)
	waitFor(t, ctx, "last line rendered", `(() => { const l = document.querySelectorAll('#log .ln'); return l.length > 2 && l[l.length-2].textContent === `+string(js)+`; })()`)
	loaded := time.Since(start)
	loadTasks := eval[[][]float64](t, ctx, `window.__longtasks`)
	n := eval[int](t, ctx, `document.querySelectorAll('#log .ln').length`)
	if n > 20001 {
		t.Errorf("%d lines rendered: want at most 20,000", n)
	}
	if got := eval[string](t, ctx, `document.getElementById('size').textContent`); got != "2.0 MiB of 50 MiB loaded" {
		t.Errorf("size shown %q: want the last 2 MiB of 50 loaded", got)
	}
	// "load earlier" renders earlier lines from memory, then reads earlier bytes with a
	// ranged GET.
	for i := 0; ; i++ {
		if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`document.getElementById('earlier').click()`)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, ctx, "earlier loaded", `document.getElementById('earlier').textContent === 'load earlier'`)
		if eval[string](t, ctx, `document.getElementById('size').textContent`) == "4.0 MiB of 50 MiB loaded" {
			break
		}
		if i > 50 {
			t.Fatalf("load earlier did not read earlier bytes: %s", pageState(ctx))
		}
	}
	waitFor(t, ctx, "more lines", fmt.Sprintf(`document.querySelectorAll('#log .ln').length > %d`, n))
	// Scroll through it.
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`(async () => { const s = document.getElementById('scroller');
		for (let y = 0; y < s.scrollHeight; y += s.scrollHeight / 20) { s.scrollTop = y; await new Promise(r => requestAnimationFrame(r)); } })()`, chromedp.EvalAwaitPromise)); err != nil {
		t.Fatal(err)
	}
	allTasks := eval[[][]float64](t, ctx, `window.__longtasks`)
	sum := func(tasks [][]float64) (total, most float64) {
		for _, e := range tasks {
			total += e[1]
			most = max(most, e[1])
		}
		return total, most
	}
	total, most := sum(loadTasks)
	t.Logf("50 MB stream: end shown in %v with %d lines rendered; long tasks while loading: %d, longest %.0f ms, total %.0f ms",
		loaded.Round(time.Millisecond), n, len(loadTasks), most, total)
	total, most = sum(allTasks)
	t.Logf("... and after loading earlier parts and scrolling: %d long tasks, longest %.0f ms, total %.0f ms", len(allTasks), most, total)
	if most > 1000 {
		t.Errorf("a main-thread task took %.0f ms: the tab froze", most)
	}
}

// restartable is a server on a fixed address and data directory that can be stopped and
// started again, as a real deployment restarts.
type restartable struct {
	t     *testing.T
	addr  string
	dir   string
	stopF func()
}

func (r *restartable) start() {
	r.t.Helper()
	store, err := file.Open(r.dir, file.Options{SyncInterval: time.Second})
	if err != nil {
		r.t.Fatal(err)
	}
	var ln net.Listener
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ln, err = net.Listen("tcp", r.addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		r.t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	srv := NewServer(store, Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ShutdownGrace: 5 * time.Second, SSERetry: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	r.stopF = func() {
		cancel()
		if err := <-done; err != nil {
			r.t.Errorf("Serve: %v", err)
		}
		if err := store.Close(); err != nil {
			r.t.Errorf("store.Close: %v", err)
		}
		http.DefaultClient.CloseIdleConnections()
	}
}

func (r *restartable) stop() {
	if r.stopF != nil {
		r.stopF()
		r.stopF = nil
	}
}

// TestViewerRestart proves "when the connection drops or the server restarts, the page
// goes on from the last byte it showed, with no gap and no duplicate, and says that it
// is reconnecting": the page's text equals the published bytes exactly once.
func TestViewerRestart(t *testing.T) {
	browser := newBrowser(t)
	r := &restartable{t: t, addr: "127.0.0.1:0", dir: t.TempDir()}
	r.start()
	t.Cleanup(r.stop)
	base := "http://" + r.addr
	ctx := tab(t, browser, "")

	var sent []byte
	publish := func(s string, closeAtEnd bool) {
		vPublish(t, base, "deploy", int64(len(sent)), []byte(s), closeAtEnd)
		sent = append(sent, s...)
	}
	publish("before restart 1\n", false)
	navigate(t, ctx, base+"/streams/deploy")
	waitState(t, ctx, "live")
	publish("before restart 2 \x1b[32mgreen\x1b[0m ünïcödé\n", false)
	waitText(t, ctx, "before restart 1\nbefore restart 2 green ünïcödé\n")

	r.stop()
	waitState(t, ctx, "reconnecting…")
	r.start()
	if "http://"+r.addr != base {
		t.Fatalf("restarted on %s, want %s", r.addr, base)
	}
	publish("after restart 3\n", false)
	publish("after restart 4", true)
	waitState(t, ctx, "closed")
	waitText(t, ctx, "before restart 1\nbefore restart 2 green ünïcödé\nafter restart 3\nafter restart 4")
	if got := eval[string](t, ctx, `document.getElementById('size').textContent`); got != fmt.Sprintf("%d B", len(sent)) {
		t.Errorf("size shown %q, want %d B", got, len(sent))
	}
}

// TestViewerIndex proves "optional index page of recent streams (GET /streams/ or /),
// off by default, since stream keys may be secret".
func TestViewerIndex(t *testing.T) {
	t.Run("off by default", func(t *testing.T) {
		ts := newTestServer(t, Config{}, file.Options{})
		vPublish(t, ts.url, "secret/key", 0, []byte("x"), true)
		for path, code := range map[string]int{"/": http.StatusNotFound, "/streams/": http.StatusBadRequest} {
			resp, b := vGet(t, http.MethodGet, ts.url+path, browserAccept)
			if resp.StatusCode != code || bytes.Contains(b, []byte("secret")) {
				t.Errorf("GET %s: %d %q, want %d without the key", path, resp.StatusCode, b, code)
			}
		}
	})
	t.Run("on", func(t *testing.T) {
		ts := newTestServer(t, Config{Index: true}, file.Options{})
		vPublish(t, ts.url, "app/builds/1", 0, []byte("done\n"), true)
		subCreate(t, ts, "app/builds/2")
		vPublish(t, ts.url, "gone", 0, []byte("x"), true)
		subPurge(t, ts, "gone")
		for _, path := range []string{"/", "/streams/"} {
			resp, b := vGet(t, http.MethodGet, ts.url+path, "")
			subWantHeaders(t, resp.Header, "Content-Type", "text/html; charset=utf-8", "Content-Security-Policy", viewerCSP)
			page := string(b)
			i1 := strings.Index(page, `<a href="/streams/app/builds/1">app/builds/1</a></td><td class="closed">closed</td><td>5 B</td>`)
			i2 := strings.Index(page, `<a href="/streams/app/builds/2">app/builds/2</a></td><td class="live">live</td><td>0 B</td>`)
			if resp.StatusCode != 200 || i1 < 0 || i2 < 0 || i2 > i1 || strings.Contains(page, "gone") {
				t.Errorf("GET %s: %d, want both streams, newest first, not the purged one:\n%s", path, resp.StatusCode, page)
			}
		}
		// Streams are still streams.
		resp, b := vGet(t, http.MethodGet, ts.url+"/streams/app/builds/1", "*/*")
		if resp.StatusCode != 200 || string(b) != "done\n" {
			t.Errorf("stream: %d %q", resp.StatusCode, b)
		}
	})
}

// TestViewerToken proves the viewer under access control: opened with a read token in
// its URL (?token=), the page takes the token out of the address bar, follows the stream
// live with it, and shows no link that holds it (the raw link, fetched bare, is refused);
// opened without one, the server refuses the page.
func TestViewerToken(t *testing.T) {
	key := []byte("viewer-test-key-0123456789abcdef")
	v, err := jwt.NewVerifier(key)
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := jwt.NewSigner(key)
	tok, err := signer.Mint(jwt.Grant{Allow: []sluice.Op{sluice.OpRead}, Keys: []string{"private/log"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, Config{Authorizer: &jwt.Authorizer{Verifier: v}}, file.Options{})
	// The producer holds a token of its own; here the store is written directly.
	if _, _, err := ts.store.Create(context.Background(), "private/log", sluice.CreateOptions{Data: []byte("line one\n")}); err != nil {
		t.Fatal(err)
	}
	resp, _ := vGet(t, http.MethodGet, ts.url+"/streams/private/log", "text/html")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the page without a token: %d, want 401", resp.StatusCode)
	}
	browser := newBrowser(t)
	ctx := tab(t, browser, "")
	navigate(t, ctx, ts.url+"/streams/private/log?token="+tok)
	waitState(t, ctx, "live")
	waitText(t, ctx, "line one\n")
	if href := eval[string](t, ctx, `location.href`); strings.Contains(href, tok) || strings.Contains(href, "token") {
		t.Errorf("the address bar still holds the token: %s", href)
	}
	if links := eval[string](t, ctx, `[...document.querySelectorAll('a')].map(a => a.href).join(' ')`); strings.Contains(links, tok) {
		t.Errorf("a link shown holds the token: %s", links)
	}
	st, err := ts.store.Open(context.Background(), "private/log")
	if err != nil {
		t.Fatal(err)
	}
	st.Write(context.Background(), sluice.Write{Data: []byte("line two\n")})
	st.Release()
	waitText(t, ctx, "line one\nline two\n")
	got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(async () => { const r = await fetch(document.getElementById('raw').href); return String(r.status); })()`, chromedp.EvalAwaitPromise))
	if err != nil || got != "401" {
		t.Errorf("the raw link fetched without the page's token: %s (%v), want 401 (the link holds no token)", got, err)
	}
}

// TestCORSInBrowser proves the CORS rule as a browser applies it: a page of another
// origin (another loopback port) tries to purge a stream with fetch(..., {method:
// 'DELETE'}), to publish to it with a form-like POST that needs no preflight, and to
// follow it with an EventSource. Without --cors-origins the purge is blocked at its
// preflight and the POST refused (the stream is left whole), and the read works; with
// the page's origin in --cors-origins, the purge and the POST go through.
func TestCORSInBrowser(t *testing.T) {
	browser := newBrowser(t)
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, `<!doctype html><title>elsewhere</title><p>another site`)
	}))
	t.Cleanup(page.Close)
	script := func(target string) string {
		return `(async () => {
			const out = {};
			try { const r = await fetch('` + target + `/streams/victim?purge=true', {method: 'DELETE'}); out.del = 'status ' + r.status; }
			catch (e) { out.del = 'blocked'; }
			try { const r = await fetch('` + target + `/streams/victim', {method: 'POST', body: 'evil', headers: {'Content-Type': 'text/plain'}, mode: 'no-cors'}); out.post = 'sent'; }
			catch (e) { out.post = 'blocked'; }
			out.read = await new Promise((resolve) => {
				const es = new EventSource('` + target + `/streams/victim');
				es.onmessage = (e) => { es.close(); resolve(e.data); };
				es.onerror = () => { es.close(); resolve('error'); };
			});
			return JSON.stringify(out);
		})()`
	}
	for _, allow := range []bool{false, true} {
		var cfg Config
		if allow {
			cfg.CORSOrigins = []string{page.URL}
		}
		ts := newTestServer(t, cfg, file.Options{})
		subPublish(t, ts, "victim", 0, []byte("public log\n"), false)
		ctx := tab(t, browser, "")
		navigate(t, ctx, page.URL)
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](script(ts.url), chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatal(err)
		}
		var out struct{ Del, Post, Read string }
		json.Unmarshal([]byte(got), &out)
		st, err := ts.store.Open(context.Background(), "victim")
		if !allow {
			if out.Del != "blocked" || err != nil {
				t.Fatalf("without --cors-origins: the page's DELETE %s, the stream: %v; want it blocked, the stream whole", out.Del, err)
			}
			if info := st.Info(); info.Length != int64(len("public log\n")) || info.Closed {
				t.Fatalf("without --cors-origins: the page's POST (%s) changed the stream: %+v", out.Post, info)
			}
			st.Release()
		} else {
			if out.Del != "status 204" {
				t.Fatalf("with the page's origin allowed: DELETE %s, want it purged (204)", out.Del)
			}
			if got := storedBytes(t, ts, "victim"); got != "evil" { // made again by the POST that followed
				t.Fatalf("with the page's origin allowed: the stream holds %q after the purge and the POST", got)
			}
			st.Release()
		}
		if out.Read != "public log\n" && !allow {
			t.Fatalf("the page's EventSource read %q, want the stream", out.Read)
		}
	}
}
