package http

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice"
)

// The web viewer: a static page, script and style sheet, embedded in the binary, with no
// build step and no external requests. Browsers get the page at /streams/{key} (Accept:
// text/html and no ?format, or ?format=html); the script follows the stream over SSE.

//go:embed viewer
var viewerFiles embed.FS

// viewerCSP lets the page load only its own script and style sheet and talk only to
// its own origin: a stream's bytes can never become script or markup.
const viewerCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

type viewerAsset struct {
	body  []byte
	ctype string
	etag  string
}

var (
	// viewerAssets are served under /_sluice/{name}, cached for long: the page names
	// them with their content hash in the query, so a new binary busts the cache.
	viewerAssets = map[string]viewerAsset{}
	viewerPage   []byte
)

func init() {
	page := mustRead("viewer/index.html")
	for name, ctype := range map[string]string{
		"viewer.js":  "text/javascript; charset=utf-8",
		"viewer.css": "text/css; charset=utf-8",
	} {
		body := mustRead("viewer/" + name)
		sum := sha256.Sum256(body)
		tag := hex.EncodeToString(sum[:8])
		viewerAssets[name] = viewerAsset{body: body, ctype: ctype, etag: `"` + tag + `"`}
		page = bytes.ReplaceAll(page, []byte("/_sluice/"+name+`"`), []byte("/_sluice/"+name+"?v="+tag+`"`))
	}
	viewerPage = page
}

func mustRead(name string) []byte {
	b, err := viewerFiles.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return b
}

// serveViewerAsset serves GET /_sluice/{file}.
func (s *Server) serveViewerAsset(w http.ResponseWriter, r *http.Request) {
	a, ok := viewerAssets[r.PathValue("file")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.Set("ETag", a.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}

// setPageHeaders sets the headers of every viewer page: the strict CSP, no sniffing, no
// framing, and no Referer, since a stream's key may be a secret.
func setPageHeaders(h http.Header) {
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", viewerCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	h.Set("Vary", "Accept")
}

var viewerNotFound = template.Must(template.New("404").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Not found · Sluice</title>
<link rel="stylesheet" href="{{.CSS}}"></head>
<body class="notfound"><main><h1>Stream not found</h1><p>There is no stream <code>{{.Key}}</code>.</p></main></body></html>
`))

// serveViewer serves the viewer page for the stream key, or a 404 page if there is no
// such stream.
func (s *Server) serveViewer(w http.ResponseWriter, r *http.Request, key string) {
	st, err := s.store.Open(r.Context(), key)
	if err != nil {
		if !errors.Is(err, sluice.ErrNotFound) {
			s.fail(w, r, err)
			return
		}
		setPageHeaders(w.Header())
		w.WriteHeader(http.StatusNotFound)
		css := "/_sluice/viewer.css?v=" + strings.Trim(viewerAssets["viewer.css"].etag, `"`)
		viewerNotFound.Execute(w, struct{ CSS, Key string }{css, key})
		return
	}
	info := st.Info()
	st.Release()
	setPageHeaders(w.Header())
	setInfo(w.Header(), info)
	w.Write(viewerPage)
}

// recentKeys remembers the keys of the streams most recently written (created or
// published to), newest last, for the index page.
type recentKeys struct {
	mu   sync.Mutex
	keys []string
}

const maxRecent = 200

func (k *recentKeys) note(key string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if n := len(k.keys); n > 0 && k.keys[n-1] == key {
		return // the common case: the same stream again
	}
	k.keys = slices.DeleteFunc(k.keys, func(s string) bool { return s == key })
	if len(k.keys) >= maxRecent {
		k.keys = slices.Delete(k.keys, 0, len(k.keys)-maxRecent+1)
	}
	k.keys = append(k.keys, key)
}

func (k *recentKeys) list() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := slices.Clone(k.keys)
	slices.Reverse(out)
	return out
}

var viewerIndex = template.Must(template.New("index").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Streams · Sluice</title>
<link rel="icon" href="data:,"><link rel="stylesheet" href="{{.CSS}}"></head>
<body class="index"><main><h1>Streams</h1>
{{if .Streams}}<table><thead><tr><th>stream</th><th>state</th><th>size</th></tr></thead><tbody>
{{range .Streams}}<tr><td><a href="/streams/{{.Key}}">{{.Key}}</a></td><td class="{{.State}}">{{.State}}</td><td>{{.Length}} B</td></tr>
{{end}}</tbody></table>{{else}}<p>No stream has been written since the server started.</p>{{end}}
</main></body></html>
`))

// serveIndex serves the index of recently written streams (Config.Index), newest first.
func (s *Server) serveIndex(w http.ResponseWriter, r *http.Request) {
	type row struct {
		Key, State string
		Length     int64
	}
	var rows []row
	for _, key := range s.recent.list() {
		st, err := s.store.Open(r.Context(), key)
		if err != nil {
			continue // purged since
		}
		info := st.Info()
		st.Release()
		state := "live"
		if info.Closed {
			state = "closed"
		}
		rows = append(rows, row{key, state, info.Length})
	}
	setPageHeaders(w.Header())
	css := "/_sluice/viewer.css?v=" + strings.Trim(viewerAssets["viewer.css"].etag, `"`)
	viewerIndex.Execute(w, struct {
		CSS     string
		Streams []row
	}{css, rows})
}
