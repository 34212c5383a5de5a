// Sluice web viewer: follows a stream over Server-Sent Events and renders it like a
// terminal. No dependencies, no build step. Log data only ever reaches the page as
// text nodes (textContent, createTextNode): never as markup.
'use strict';
(function () {
  const TAIL_THRESHOLD = 4 << 20; // closed or open streams above this start from the end
  const TAIL_BYTES = 2 << 20; // how much of the end is read first
  const EARLIER_BYTES = 2 << 20; // how much "load earlier" reads at a time
  const DOM_CAP = 20000; // most lines rendered at once
  const MEM_CAP = 400000; // most lines kept in memory (for search and re-rendering)
  const EARLIER_LINES = 1000; // lines re-rendered from memory per "load earlier"
  const BUDGET_MS = 8; // work per frame or task before yielding
  const FRAME_LINES = 400; // most lines added to the DOM per frame (layout is not free)
  const BACKLOG_CHARS = 256 << 10; // while following, wait for a backlog this big to be parsed
  const SKIP_AHEAD = 4000; // when following this far behind, skip to the end...
  const SHOW_LINES = 1000; // ...and render this many lines
  const CHUNK = 200; // lines per chunk: off-screen chunks skip layout (content-visibility)

  const $ = (id) => document.getElementById(id);
  const scroller = $('scroller');
  const log = $('log');
  const stateEl = $('state');
  const sizeEl = $('size');
  const jump = $('jump');
  const earlier = $('earlier');
  const hitsEl = $('hits');
  // The page may be opened on either prefix; it reads the stream through busl's side.
  const path = location.pathname.replace(/^\/v1\/stream\//, '/streams/');
  const key = decodeURIComponent(path.replace(/^\/streams\//, ''));
  $('key').textContent = key;
  document.title = key + ' · Sluice';
  // A capability token in the page's URL (?token=, as a browser's navigation cannot
  // send a header) is taken out of the address bar at once, so that it is neither
  // bookmarked nor shared with a link, and passed on to the page's own requests:
  // fetches send it in Authorization, the EventSource (which cannot) in its query.
  const params = new URLSearchParams(location.search);
  const token = params.get('token') || '';
  if (token) {
    params.delete('token');
    const q = params.toString();
    history.replaceState(null, '', location.pathname + (q ? '?' + q : '') + location.hash);
  }
  const auth = token ? { Authorization: 'Bearer ' + token } : {};
  const raw = $('raw');
  const rawName = key.replace(/[^A-Za-z0-9._-]+/g, '_') + '.log';
  raw.href = path + '?format=raw&follow=false'; // never with the token: it is shown
  raw.setAttribute('download', rawName);
  if (token) {
    raw.addEventListener('click', async (e) => {
      e.preventDefault();
      const r = await fetch(raw.href, { headers: auth, cache: 'no-store' });
      if (!r.ok) return;
      const a = document.createElement('a');
      a.href = URL.createObjectURL(await r.blob());
      a.download = rawName;
      a.click();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    });
  }

  // ---- SGR styles ----
  const DEFAULT = Object.freeze({ k: '' });
  const styles = new Map([['', DEFAULT]]);
  function intern(s) {
    const k = [s.b ? 'b' : '', s.d ? 'd' : '', s.i ? 'i' : '', s.u ? 'u' : '', s.s ? 's' : '',
      s.inv ? 'v' : '', s.hid ? 'h' : '', s.fg == null ? '' : s.fg, s.bg == null ? '' : s.bg].join(',');
    const key = k === ',,,,,,,,' ? '' : k;
    let o = styles.get(key);
    if (!o) {
      o = Object.freeze(Object.assign({}, s, { k: key }));
      styles.set(key, o);
    }
    return o;
  }
  function color256(n) {
    if (n < 16) return n;
    if (n < 232) {
      n -= 16;
      const lv = [0, 95, 135, 175, 215, 255];
      return 'rgb(' + lv[Math.floor(n / 36)] + ',' + lv[Math.floor(n / 6) % 6] + ',' + lv[n % 6] + ')';
    }
    const g = 8 + 10 * (n - 232);
    return 'rgb(' + g + ',' + g + ',' + g + ')';
  }
  function sgr(cur, params) {
    const p = params === '' ? [0] : params.replace(/:/g, ';').split(';').map((x) => (x === '' ? 0 : parseInt(x, 10)));
    const s = Object.assign({}, cur);
    for (let i = 0; i < p.length; i++) {
      const n = p[i];
      if (n === 0) { for (const f of ['b', 'd', 'i', 'u', 's', 'inv', 'hid', 'fg', 'bg']) delete s[f]; }
      else if (n === 1) s.b = true;
      else if (n === 2) s.d = true;
      else if (n === 3) s.i = true;
      else if (n === 4 || n === 21) s.u = true;
      else if (n === 7) s.inv = true;
      else if (n === 8) s.hid = true;
      else if (n === 9) s.s = true;
      else if (n === 22) { s.b = false; s.d = false; }
      else if (n === 23) s.i = false;
      else if (n === 24) s.u = false;
      else if (n === 27) s.inv = false;
      else if (n === 28) s.hid = false;
      else if (n === 29) s.s = false;
      else if (n >= 30 && n <= 37) s.fg = n - 30;
      else if (n >= 40 && n <= 47) s.bg = n - 40;
      else if (n >= 90 && n <= 97) s.fg = n - 90 + 8;
      else if (n >= 100 && n <= 107) s.bg = n - 100 + 8;
      else if (n === 39) s.fg = null;
      else if (n === 49) s.bg = null;
      else if (n === 38 || n === 48) {
        let c = null;
        if (p[i + 1] === 5 && i + 2 < p.length) { c = color256(p[i + 2] & 255); i += 2; }
        else if (p[i + 1] === 2 && i + 4 < p.length) {
          const v = (x) => Math.max(0, Math.min(255, x | 0));
          c = 'rgb(' + v(p[i + 2]) + ',' + v(p[i + 3]) + ',' + v(p[i + 4]) + ')';
          i += 4;
        } else break;
        if (n === 38) s.fg = c; else s.bg = c;
      }
    }
    for (const f of ['b', 'd', 'i', 'u', 's', 'inv', 'hid']) if (!s[f]) delete s[f];
    if (s.fg == null) delete s.fg;
    if (s.bg == null) delete s.bg;
    delete s.k;
    return intern(s);
  }

  // ---- the terminal: text in, lines out ----
  // A committed line is a string (no styles) or an array of runs {t, s}.
  const CTRL = /[\x00-\x08\x0a-\x1f\x7f]/g;
  class Term {
    constructor(onLine) {
      this.onLine = onLine;
      this.style = DEFAULT;
      this.cur = [];
      this.len = 0;
      this.col = 0;
      this.pend = '';
    }
    write(str) {
      if (this.pend) { str = this.pend + str; this.pend = ''; }
      const n = str.length;
      let i = 0;
      while (i < n) {
        CTRL.lastIndex = i;
        const m = CTRL.exec(str);
        const j = m ? m.index : n;
        if (j > i) this.put(str.slice(i, j));
        if (!m) break;
        i = j + 1;
        switch (str.charCodeAt(j)) {
          case 10: this.newline(); break;
          case 13: this.col = 0; break;
          case 8: if (this.col > 0) this.col--; break;
          case 27: {
            const k = this.escape(str, j);
            if (k < 0) { this.pend = str.slice(j); return; }
            i = k;
            break;
          }
          default: // other control characters are dropped
        }
      }
    }
    // escape handles the sequence at str[j] (ESC) and returns the index after it, or -1
    // if it is incomplete (it is then kept for the next write).
    escape(str, j) {
      const n = str.length;
      const incomplete = () => (n - j > 4096 ? j + 1 : -1); // a runaway sequence is dropped
      if (j + 1 >= n) return incomplete();
      const c = str[j + 1];
      if (c === '[') {
        let k = j + 2;
        while (k < n) {
          const x = str.charCodeAt(k);
          if (x >= 0x40 && x <= 0x7e) break;
          if (x < 0x20 || x > 0x3f) return k; // malformed: drop what came so far
          k++;
        }
        if (k >= n) return incomplete();
        this.csi(str.slice(j + 2, k), str[k]);
        return k + 1;
      }
      if (c === ']' || c === 'P' || c === 'X' || c === '^' || c === '_') {
        for (let k = j + 2; k < n; k++) {
          const x = str.charCodeAt(k);
          if (x === 7) return k + 1;
          if (x === 27) { if (k + 1 >= n) return incomplete(); if (str[k + 1] === '\\') return k + 2; }
        }
        return incomplete();
      }
      if ('()*+-./#% '.includes(c)) return j + 3 <= n ? j + 3 : incomplete();
      return j + 2;
    }
    csi(params, f) {
      const num = (d) => { const v = parseInt(params, 10); return isNaN(v) || v === 0 ? d : v; };
      switch (f) {
        case 'm': if (/^[0-9;:]*$/.test(params)) this.style = sgr(this.style, params); break;
        case 'K': {
          const mode = params === '' ? 0 : parseInt(params, 10);
          if (mode === 0) { this.cur = cut(this.cur, 0, this.col); this.len = Math.min(this.len, this.col); }
          else if (mode === 1) { const c = this.col; this.col = 0; this.put(' '.repeat(Math.min(c + 1, this.len))); this.col = c; }
          else if (mode === 2) { this.cur = []; this.len = 0; }
          break;
        }
        case 'G': this.col = num(1) - 1; break;
        case 'C': this.col += num(1); break;
        case 'D': this.col = Math.max(0, this.col - num(1)); break;
        default: // cursor movement across lines, modes and the like are dropped
      }
    }
    put(t) {
      const s = this.style;
      if (this.col > this.len) {
        this.appendRun(' '.repeat(this.col - this.len), DEFAULT);
      }
      if (this.col === this.len) {
        this.appendRun(t, s);
        return;
      }
      const end = this.col + t.length;
      const next = cut(this.cur, 0, this.col);
      next.push({ t: t, s: s });
      this.cur = next.concat(cut(this.cur, end, this.len));
      this.len = Math.max(this.len, end);
      this.col = end;
    }
    appendRun(t, s) {
      const last = this.cur[this.cur.length - 1];
      if (last && last.s === s) last.t += t;
      else this.cur.push({ t: t, s: s });
      this.len += t.length;
      this.col = this.len;
    }
    line() {
      const c = this.cur;
      if (c.length === 0) return '';
      if (c.length === 1 && c[0].s === DEFAULT) return c[0].t;
      return c.map((r) => ({ t: r.t, s: r.s }));
    }
    newline() {
      this.onLine(this.line());
      this.cur = [];
      this.len = 0;
      this.col = 0;
    }
  }
  // cut returns the runs covering columns [a, b).
  function cut(runs, a, b) {
    const out = [];
    let pos = 0;
    for (const r of runs) {
      const end = pos + r.t.length;
      if (end > a && pos < b) out.push({ t: r.t.slice(Math.max(0, a - pos), Math.min(r.t.length, b - pos)), s: r.s });
      pos = end;
      if (pos >= b) break;
    }
    return out;
  }
  const lineText = (l) => (typeof l === 'string' ? l : l.map((r) => r.t).join(''));

  // ---- DOM ----
  function styled(r) {
    const s = r.s;
    const sp = document.createElement('span');
    let cls = '';
    if (s.b) cls += ' b';
    if (s.d) cls += ' d';
    if (s.i) cls += ' i';
    if (s.u) cls += ' u';
    if (s.s) cls += ' s';
    if (s.hid) cls += ' hid';
    let fg = s.fg, bg = s.bg;
    if (s.inv) {
      const f = fg, b = bg;
      fg = b == null ? 'var(--bg)' : b;
      bg = f == null ? 'var(--fg)' : f;
    }
    if (typeof fg === 'number') cls += ' f' + fg; else if (fg != null) sp.style.color = fg;
    if (typeof bg === 'number') cls += ' g' + bg; else if (bg != null) sp.style.backgroundColor = bg;
    if (cls) sp.className = cls.slice(1);
    sp.textContent = r.t;
    return sp;
  }
  function fill(el, l) {
    if (typeof l === 'string') { el.textContent = l; return; }
    el.textContent = '';
    for (const r of l) el.appendChild(r.s === DEFAULT ? document.createTextNode(r.t) : styled(r));
  }
  function lineEl(l, idx) {
    const el = document.createElement('div');
    el.className = 'ln';
    if (model.base != null) el.dataset.n = model.base + idx + 1;
    fill(el, l);
    return el;
  }

  // ---- the model: every line in memory, a window of them in the DOM ----
  const model = {
    lines: [], // committed lines
    ends: [], // byte offset just after each committed line's "\n"
    base: 0, // line number - 1 of lines[0]; null while unknown (started from the end)
    startOff: 0, // byte offset of lines[0]
  };
  let domStart = 0; // index of the first rendered line
  let renderedEnd = 0; // lines rendered: [domStart, renderedEnd)
  let els = []; // the rendered lines' elements: els[i] shows line domStart + i
  let tailChunk = null; // the chunk new lines go to
  const newChunk = () => { const c = document.createElement('div'); c.className = 'chunk'; return c; };
  const curEl = document.createElement('div'); // the line being written, always last
  curEl.className = 'ln';
  log.appendChild(curEl);
  let curDirty = false;

  let offset = 0; // bytes received: the next byte's offset
  let knownLength = 0;
  let closed = false; // all of a closed stream is here
  let wasClosed = false; // the stream was closed when the page started
  let following = true;
  let pendingLine = null; // a #L permalink waiting for its line
  let hlEl = null;

  const nlQueue = []; // offsets after each "\n" received but not yet parsed
  let nlHead = 0;
  const term = new Term((l) => {
    model.lines.push(l);
    model.ends.push(nlQueue[nlHead++]);
    if (nlHead > 4096) { nlQueue.splice(0, nlHead); nlHead = 0; }
  });
  let decoder = new TextDecoder('utf-8', { fatal: false });
  const textQueue = [];
  let queued = 0; // characters in textQueue
  let pumping = false;

  function feed(bytes, at) {
    for (let p = bytes.indexOf(10); p >= 0; p = bytes.indexOf(10, p + 1)) nlQueue.push(at + p + 1);
    offset = at + bytes.length;
    knownLength = Math.max(knownLength, offset);
    const s = decoder.decode(bytes, { stream: true });
    if (s) { textQueue.push(s); queued += s.length; }
    pump();
  }
  function finish() {
    closed = true;
    const s = decoder.decode();
    if (s) { textQueue.push(s); queued += s.length; }
    setState('closed', 'closed');
    pump();
  }
  // pump parses queued text in slices, yielding to the browser between them.
  function pump() {
    if (pumping) return;
    pumping = true;
    setTimeout(function step() {
      const t0 = performance.now();
      while (textQueue.length && performance.now() - t0 < BUDGET_MS) {
        let s = textQueue[0];
        if (s.length > 65536) { textQueue[0] = s.slice(65536); s = s.slice(0, 65536); }
        else textQueue.shift();
        queued -= s.length;
        term.write(s);
      }
      curDirty = true;
      schedule();
      if (textQueue.length) setTimeout(step, 0);
      else pumping = false;
    }, 0);
  }

  let scheduled = false;
  function schedule() {
    if (scheduled) return;
    scheduled = true;
    if (document.hidden) setTimeout(frame, 16); else requestAnimationFrame(frame);
  }
  function frame() {
    scheduled = false;
    const t0 = performance.now();
    const lines = model.lines;
    if (following && queued > BACKLOG_CHARS) return; // much more to parse: the pump schedules the next frame
    if (following && lines.length - renderedEnd > SKIP_AHEAD) {
      // Far behind (a large stream just loaded, or a flood): show the end now; what
      // comes before is rendered from memory on scrolling up or "load earlier".
      clearWindow(lines.length - SHOW_LINES);
    }
    // Not following, the window stops growing at DOM_CAP lines: the rest waits in
    // memory until the user scrolls to the bottom or jumps to the end.
    const limit = following ? lines.length : Math.min(lines.length, domStart + DOM_CAP);
    renderTo(limit, t0);
    curEl.hidden = renderedEnd < lines.length;
    if (curDirty && renderedEnd === lines.length) {
      fill(curEl, term.line());
      if (model.base != null) curEl.dataset.n = model.base + lines.length + 1;
      curEl.classList.toggle('eof', closed && textQueue.length === 0 && term.len === 0);
      curDirty = false;
    }
    trim();
    if (following) scroller.scrollTop = scroller.scrollHeight;
    showPermalink();
    status();
    if (renderedEnd < limit || curDirty) schedule();
  }
  // renderTo appends lines to the DOM up to limit, within the frame's budget if t0 is
  // given.
  function renderTo(limit, t0) {
    let k = renderedEnd;
    while (k < limit) {
      if (!tailChunk || tailChunk.childElementCount >= CHUNK) {
        tailChunk = newChunk();
        log.insertBefore(tailChunk, curEl);
      }
      const el = lineEl(model.lines[k], k);
      tailChunk.appendChild(el);
      els.push(el);
      k++;
      if (t0 != null && (k - renderedEnd >= FRAME_LINES || ((k & 63) === 0 && performance.now() - t0 > BUDGET_MS))) break;
    }
    renderedEnd = k;
  }
  // clearWindow empties the DOM; rendering then starts at line index at.
  function clearWindow(at) {
    for (const c of Array.from(log.querySelectorAll('.chunk'))) c.remove();
    els = [];
    tailChunk = null;
    domStart = renderedEnd = Math.max(0, at);
  }
  // reveal returns the element of line index idx, rendering it (and a window around
  // it) if it is not rendered. It stops following.
  function reveal(idx) {
    following = false;
    jump.hidden = false;
    if (idx < domStart && domStart - idx <= EARLIER_LINES) renderEarlier(domStart - idx);
    else if (idx < domStart || idx >= renderedEnd) {
      clearWindow(idx - 100);
      renderTo(Math.min(model.lines.length, idx + 100));
      schedule();
    }
    return els[idx - domStart];
  }
  // trim keeps the DOM and memory bounded, dropping the oldest lines.
  function trim() {
    const excess = renderedEnd - domStart - DOM_CAP;
    if (excess > 0 && following) {
      const h0 = scroller.scrollHeight;
      for (let i = 0; i < excess; i++) {
        const c = els[i].parentNode;
        c.removeChild(els[i]);
        if (!c.firstChild) { log.removeChild(c); if (c === tailChunk) tailChunk = null; }
      }
      els = els.slice(excess);
      domStart += excess;
      if (!following) scroller.scrollTop -= h0 - scroller.scrollHeight;
    }
    const drop = Math.min(domStart, model.lines.length - MEM_CAP);
    if (drop > 0) {
      model.startOff = model.ends[drop - 1];
      model.lines.splice(0, drop);
      model.ends.splice(0, drop);
      if (model.base != null) model.base += drop;
      domStart -= drop;
      renderedEnd -= drop;
      search.reset();
    }
    earlier.hidden = !(domStart > 0 || model.startOff > 0);
  }

  // ---- header ----
  function setState(cls, text) {
    stateEl.className = 'state ' + cls;
    stateEl.textContent = text;
  }
  function fmtBytes(n) {
    if (n < 1024) return n + ' B';
    const u = ['KiB', 'MiB', 'GiB', 'TiB'];
    let i = -1;
    do { n /= 1024; i++; } while (n >= 1024 && i < u.length - 1);
    return n.toFixed(n < 10 ? 1 : 0) + ' ' + u[i];
  }
  function status() {
    const loaded = offset - model.startOff;
    let t = fmtBytes(knownLength);
    if (loaded < knownLength) t = fmtBytes(loaded) + ' of ' + t + ' loaded';
    sizeEl.textContent = t;
    sizeEl.title = knownLength + ' bytes';
  }

  // ---- follow mode ----
  scroller.addEventListener('scroll', () => {
    const atEnd = scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - 4;
    if (atEnd !== following) {
      following = atEnd;
      jump.hidden = following;
    }
    if (scroller.scrollTop < 400 && domStart > 0 && !following) renderEarlier(EARLIER_LINES); // from memory
  }, { passive: true });
  jump.addEventListener('click', () => {
    following = true;
    jump.hidden = true;
    scroller.scrollTop = scroller.scrollHeight;
    schedule();
  });
  $('wrap').addEventListener('change', (e) => document.body.classList.toggle('wrap', e.target.checked));

  // ---- permalinks ----
  function hashLine() {
    const m = /^#L(\d+)$/.exec(location.hash);
    return m ? parseInt(m[1], 10) : null;
  }
  function showPermalink() {
    if (pendingLine == null || model.base == null) return;
    const idx = pendingLine - 1 - model.base;
    let el = null;
    if (idx === model.lines.length && closed && textQueue.length === 0) el = curEl;
    else if (idx >= 0 && idx < model.lines.length) el = reveal(idx);
    if (!el) return;
    if (hlEl) hlEl.classList.remove('hl');
    hlEl = el;
    el.classList.add('hl');
    following = false;
    jump.hidden = false;
    el.scrollIntoView({ block: 'center' });
    pendingLine = null;
  }
  window.addEventListener('hashchange', () => { pendingLine = hashLine(); schedule(); });
  log.addEventListener('click', (e) => {
    const el = e.target.closest('.ln');
    if (!el || !el.dataset.n || e.clientX - el.getBoundingClientRect().left > 80) return;
    history.replaceState(null, '', '#L' + el.dataset.n);
    pendingLine = parseInt(el.dataset.n, 10);
    schedule();
  });

  // ---- earlier parts ----
  function renderEarlier(count) {
    count = Math.min(count, domStart);
    if (count <= 0) return;
    const frag = document.createDocumentFragment();
    const added = [];
    let c = null;
    for (let k = domStart - count; k < domStart; k++) {
      if (!c || c.childElementCount >= CHUNK) { c = newChunk(); frag.appendChild(c); }
      const el = lineEl(model.lines[k], k);
      c.appendChild(el);
      added.push(el);
    }
    const h0 = scroller.scrollHeight;
    log.insertBefore(frag, log.firstChild);
    scroller.scrollTop += scroller.scrollHeight - h0;
    els = added.concat(els);
    domStart -= count;
  }
  const tick = () => new Promise((r) => setTimeout(r, 0));
  let loadingEarlier = false;
  earlier.addEventListener('click', async () => {
    if (domStart > 0) { renderEarlier(EARLIER_LINES); trim(); return; }
    if (loadingEarlier || model.startOff === 0) return;
    loadingEarlier = true;
    earlier.textContent = 'loading…';
    try {
      const end = model.startOff;
      const from = Math.max(0, end - EARLIER_BYTES);
      const buf = await rangeGet(from, end - 1);
      if (end !== model.startOff) return;
      let skip = 0;
      if (from > 0) { const p = buf.indexOf(10); skip = p < 0 ? 0 : p + 1; }
      const lines = [], ends = [];
      for (let p = buf.indexOf(10, skip); p >= 0; p = buf.indexOf(10, p + 1)) ends.push(from + p + 1);
      const t = new Term((l) => lines.push(l));
      const dec = new TextDecoder('utf-8', { fatal: false });
      const text = dec.decode(buf.subarray(skip));
      for (let i = 0; i < text.length; i += 65536) {
        t.write(text.slice(i, i + 65536));
        await tick();
      }
      if (t.len > 0) { lines.push(t.line()); ends.push(end); } // no "\n" before end: one long line
      if (end !== model.startOff) return; // memory was trimmed meanwhile: try again
      model.lines = lines.concat(model.lines);
      model.ends = ends.concat(model.ends);
      model.startOff = from + skip;
      if (model.base != null) model.base -= lines.length;
      else if (model.startOff === 0) { model.base = 0; renumber(lines.length); }
      domStart += lines.length;
      renderedEnd += lines.length;
      search.reset();
      renderEarlier(Math.min(lines.length, EARLIER_LINES));
      trim();
      schedule();
    } catch (e) {
      setState('error', 'load failed: ' + e.message);
    } finally {
      loadingEarlier = false;
      earlier.textContent = 'load earlier';
    }
  });
  function renumber(shift) {
    let n = model.base + domStart + shift + 1;
    for (const el of els) el.dataset.n = n++;
    curEl.dataset.n = model.base + model.lines.length + 1;
  }

  // ---- search ----
  const search = {
    q: '', hits: [], at: -1,
    reset() { this.q = ''; this.hits = []; this.at = -1; },
  };
  let matchEl = null;
  $('search').addEventListener('submit', (e) => {
    e.preventDefault();
    const q = $('q').value.toLowerCase();
    if (!q) { hitsEl.textContent = ''; return; }
    if (q !== search.q) {
      search.q = q;
      search.hits = [];
      search.at = -1;
      const lines = model.lines;
      for (let k = 0; k < lines.length && search.hits.length < 100000; k++) {
        if (lineText(lines[k]).toLowerCase().includes(q)) search.hits.push(k);
      }
    }
    if (!search.hits.length) { hitsEl.textContent = 'no match'; return; }
    search.at = (search.at + 1) % search.hits.length;
    const idx = search.hits[search.at];
    if (matchEl) matchEl.classList.remove('match');
    matchEl = reveal(idx);
    matchEl.classList.add('match');
    matchEl.scrollIntoView({ block: 'center' });
    hitsEl.textContent = (search.at + 1) + '/' + search.hits.length;
  });

  // ---- network ----
  async function head() {
    const r = await fetch(path + '?format=raw', { method: 'HEAD', headers: auth, cache: 'no-store' });
    if (r.status === 404) return null;
    if (!r.ok) throw new Error('HEAD ' + r.status);
    return { length: Number(r.headers.get('Stream-Length')), closed: r.headers.get('Stream-Closed') === 'true' };
  }
  async function rangeGet(a, b) {
    const r = await fetch(path + '?format=raw&follow=false', { headers: { ...auth, Range: 'bytes=' + a + '-' + b }, cache: 'no-store' });
    if (!r.ok) throw new Error('GET ' + r.status);
    return new Uint8Array(await r.arrayBuffer());
  }
  function b64(s) {
    const bin = atob(s);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  const encoder = new TextEncoder();
  let es = null;
  function connect(from) {
    es = new EventSource(path + '?format=sse' + (from > 0 ? '&offset=' + from : '') +
      (token ? '&token=' + encodeURIComponent(token) : ''));
    const got = (bytes, id) => {
      const end = Number(id);
      if (end - bytes.length !== offset) {
        // never expected: the server resumes from Last-Event-ID, our offset
        console.warn('sluice: event at', end - bytes.length, 'expected', offset);
        if (end <= offset) return;
        bytes = bytes.subarray(bytes.length - (end - offset));
      }
      feed(bytes, offset);
    };
    es.onopen = () => { if (!closed && !wasClosed) setState('live', 'live'); };
    es.onmessage = (e) => got(encoder.encode(e.data), e.lastEventId);
    es.addEventListener('base64', (e) => got(b64(e.data), e.lastEventId));
    es.addEventListener('end', () => { es.close(); finish(); });
    es.onerror = () => {
      if (closed) return;
      if (es.readyState === EventSource.CONNECTING) { setState('reconnecting', 'reconnecting…'); return; }
      recheck(); // closed for good: a 204 (we have it all), a 404, or another status
    };
  }
  async function recheck() {
    setState('reconnecting', 'reconnecting…');
    try {
      const info = await head();
      if (!info) { setState('error', 'stream not found'); return; }
      knownLength = Math.max(knownLength, info.length);
      if (info.closed && offset >= info.length) { finish(); return; }
    } catch (e) { /* the server is away: try again */ }
    setTimeout(() => connect(offset), 2000);
  }

  async function start() {
    pendingLine = hashLine();
    let info;
    try {
      info = await head();
    } catch (e) {
      setState('error', 'unreachable');
      setTimeout(start, 2000);
      return;
    }
    if (!info) { setState('error', 'stream not found'); return; }
    knownLength = info.length;
    wasClosed = info.closed;
    if (wasClosed) setState('loading', 'loading…');
    status();
    if (info.length > TAIL_THRESHOLD && pendingLine == null) {
      // A large stream: show its end first; "load earlier" reads what came before.
      const from = info.length - TAIL_BYTES;
      let buf;
      try {
        buf = await rangeGet(from, info.length - 1);
      } catch (e) {
        setState('reconnecting', 'reconnecting…'); // nothing shown yet: start again
        setTimeout(start, 2000);
        return;
      }
      const p = buf.indexOf(10);
      const skip = p < 0 ? 0 : p + 1; // no "\n" at all: show the long line's end
      model.base = null;
      model.startOff = from + skip;
      feed(buf.subarray(skip), from + skip);
    }
    if (info.closed && offset >= info.length) finish();
    else connect(offset);
  }
  start();
})();
