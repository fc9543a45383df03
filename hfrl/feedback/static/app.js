// hfrl labelling page: plain JavaScript, no build step.
// Marks live in the page (and localStorage, so a reload keeps them) until Enter submits them; the
// server answers only once the labels are committed to disk. The labeler's identity is a session the
// server issued for the name (kept in localStorage, sent as X-Hfrl-Session), never a name in a request.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const LABELER_RE = /^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}$/;
  const STORE_KEY = "hfrl-marks";
  const SESSIONS_KEY = "hfrl-sessions"; // {labeler name: session token issued by this server}

  const MODES = {
    single: {
      title: "Good or bad?",
      hint: "Is the output a clean version of the noisy input?",
      buttons: [["good", "Good", "g"], ["bad", "Bad", "b"], ["skip", "Skip", "s"]],
    },
    hero: {
      title: "Mark the good ones, pick the best",
      hint: "Mark every output good or bad, then pick the single best one.",
      buttons: [["good", "Good", "g"], ["bad", "Bad", "b"], ["skip", "Skip", "s"]],
    },
    pair: {
      title: "Which output is better?",
      hint: "Both outputs come from the same noisy input.",
      buttons: [["left", "◀ Left", "a"], ["tie", "Tie", "t"], ["right", "Right ▶", "d"]],
    },
  };
  const KEYS = {
    single: { g: "good", 1: "good", b: "bad", 2: "bad", s: "skip" },
    hero: { g: "good", 1: "good", b: "bad", 2: "bad", s: "skip" },
    pair: { a: "left", 1: "left", d: "right", 2: "right", t: "tie", 3: "tie", s: "tie" },
  };
  const SYMBOL = { good: "✓ good", bad: "✗ bad", skip: "– skip", left: "◀ left", right: "right ▶", tie: "= tie" };

  const params = new URLSearchParams(location.search);
  if (params.has("token")) {
    sessionStorage.setItem("hfrl-token", params.get("token"));
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : ""));
  }
  const token = sessionStorage.getItem("hfrl-token");

  const state = {
    labeler: "",
    session: null, // token of the labeler's session
    leaseSeconds: 60,
    renewTimer: null,
    kind: null,
    note: null, // the trainer's note on the batch's query (e.g. what makes a sample good)
    items: [],
    marks: new Map(), // item id -> {value, best, ms}
    history: [], // [{id, prev}] local marks in the order made, for undo
    cursor: 0,
    lastMarkAt: performance.now(),
    busy: false,
    confirmNoBest: false,
    pollTimer: null,
  };

  // ---------------------------------------------------------------------------------------- server

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (token) headers.Authorization = "Bearer " + token;
    if (state.session) headers["X-Hfrl-Session"] = state.session;
    const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    let data = null;
    try { data = await resp.json(); } catch (_) { /* non-JSON error page */ }
    if (!resp.ok) {
      let detail = data && data.detail;
      if (Array.isArray(detail)) detail = detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
      const err = new Error(detail || resp.status + " " + resp.statusText);
      err.status = resp.status;
      throw err;
    }
    return data;
  }

  // ------------------------------------------------------------------------------------- sessions

  function savedSessions() {
    try { return JSON.parse(localStorage.getItem(SESSIONS_KEY) || "{}"); } catch (_) { return {}; }
  }

  // Become `name`: reuse this browser's session for it if the server still knows it, else claim the
  // name. Returns false when the name belongs to someone else.
  async function useName(name) {
    const sessions = savedSessions();
    state.session = sessions[name] || null;
    if (state.session) {
      try {
        const who = await api("GET", "/api/session");
        if (who.labeler === name) { state.leaseSeconds = who.lease_seconds; return true; }
      } catch (e) {
        if (e.status !== 401) throw e;
      }
    }
    state.session = null;
    try {
      const s = await api("POST", "/api/session", { labeler: name });
      state.session = s.session;
      state.leaseSeconds = s.lease_seconds;
      sessions[name] = s.session;
      localStorage.setItem(SESSIONS_KEY, JSON.stringify(sessions));
      return true;
    } catch (e) {
      if (e.status === 409) return false;
      throw e;
    }
  }

  function startRenewing() {
    clearInterval(state.renewTimer);
    // Leases lapse lease_seconds after the last renewal: renewing at a third of that keeps the page's
    // items while it is open, and lets them go soon after it is closed.
    const every = Math.max(200, (1000 * state.leaseSeconds) / 3);
    state.renewTimer = setInterval(() => {
      if (state.session && state.items.length) api("POST", "/api/renew").catch(() => {});
    }, every);
  }

  // -------------------------------------------------------------------------------------- marks

  function savedMarks() {
    try { return JSON.parse(localStorage.getItem(STORE_KEY) || "{}"); } catch (_) { return {}; }
  }
  function persistMarks() {
    const all = savedMarks();
    for (const it of state.items) {
      const m = state.marks.get(it.id);
      if (m) all[it.id] = m; else delete all[it.id];
    }
    localStorage.setItem(STORE_KEY, JSON.stringify(all));
  }
  function forgetMarks(ids) {
    const all = savedMarks();
    for (const id of ids) delete all[id];
    localStorage.setItem(STORE_KEY, JSON.stringify(all));
  }

  function setMark(index, value, best) {
    const it = state.items[index];
    if (!it) return;
    const prev = state.marks.get(it.id) || null;
    const now = performance.now();
    const ms = Math.round(now - state.lastMarkAt);
    state.lastMarkAt = now;
    const prevBest = state.kind === "hero" && best ? bestIndex() : -1;
    state.history.push({ id: it.id, prev, prevBestId: prevBest >= 0 ? state.items[prevBest].id : null });
    if (best && prevBest >= 0 && prevBest !== index) {
      const other = state.marks.get(state.items[prevBest].id);
      state.marks.set(state.items[prevBest].id, { ...other, best: false });
      renderTile(prevBest);
    }
    state.marks.set(it.id, { value, best: !!best, ms: prev ? prev.ms + ms : ms });
    state.confirmNoBest = false;
    persistMarks();
    renderTile(index);
    updateCounts();
  }

  function bestIndex() {
    return state.items.findIndex((it) => (state.marks.get(it.id) || {}).best);
  }

  function markFocused(value) {
    const i = state.cursor;
    const cur = state.marks.get(state.items[i].id);
    // The best of a batch is one of the good ones: marking it bad or skip withdraws the pick.
    setMark(i, value, !!(cur && cur.best && value === "good"));
    advance();
  }

  function pickBest() {
    if (state.kind !== "hero") return;
    const i = state.cursor;
    setMark(i, "good", true);
    message(`Item ${i + 1} is the best of this batch.`, "ok");
  }

  function advance() {
    const n = state.items.length;
    for (let step = 1; step <= n; step++) {
      const j = (state.cursor + step) % n;
      if (!state.marks.has(state.items[j].id)) { focus(j); return; }
    }
  }

  // ------------------------------------------------------------------------------------ rendering

  function columns() {
    const tiles = $("grid").children;
    if (!tiles.length) return 1;
    const top = tiles[0].offsetTop;
    let n = 0;
    while (n < tiles.length && tiles[n].offsetTop === top) n++;
    return Math.max(n, 1);
  }

  function focus(index) {
    const n = state.items.length;
    if (!n) return;
    state.cursor = Math.max(0, Math.min(n - 1, index));
    const tiles = $("grid").children;
    for (let i = 0; i < tiles.length; i++) {
      const on = i === state.cursor;
      tiles[i].classList.toggle("focused", on);
      tiles[i].tabIndex = on ? 0 : -1;
      tiles[i].setAttribute("aria-selected", on ? "true" : "false");
    }
    const tile = tiles[state.cursor];
    if (tile) {
      tile.focus({ preventScroll: true });
      tile.scrollIntoView({ block: "nearest", inline: "nearest" });
    }
  }

  function figure(src, caption, cls) {
    const fig = document.createElement("figure");
    if (cls) fig.className = cls;
    const img = document.createElement("img");
    img.src = src;
    img.alt = caption;
    img.draggable = false;
    const cap = document.createElement("figcaption");
    cap.textContent = caption;
    fig.append(img, cap);
    return fig;
  }

  function buildTile(it, index) {
    const tile = document.createElement("div");
    tile.className = "tile";
    tile.setAttribute("role", "gridcell");
    tile.dataset.id = it.id;
    tile.dataset.index = index;

    const head = document.createElement("div");
    head.className = "tile-head";
    const num = document.createElement("span");
    num.className = "num";
    num.textContent = index + 1;
    const badge = document.createElement("span");
    badge.className = "badge";
    head.append(num, badge);
    if (state.kind === "hero") {
      const b = document.createElement("button");
      b.type = "button";
      b.tabIndex = -1;
      b.className = "best-btn";
      b.title = "Best of this batch (x)";
      b.innerHTML = "★ best <kbd>x</kbd>";
      b.addEventListener("click", (e) => { e.stopPropagation(); focus(index); pickBest(); });
      head.append(b);
    }

    const imgs = document.createElement("div");
    imgs.className = "imgs";
    if (state.kind === "pair") {
      const left = figure(it.left, "left", "choice");
      const right = figure(it.right, "right", "choice");
      left.addEventListener("click", (e) => { e.stopPropagation(); focus(index); markFocused("left"); });
      right.addEventListener("click", (e) => { e.stopPropagation(); focus(index); markFocused("right"); });
      if (it.input) imgs.append(figure(it.input, "input", "input"));
      imgs.append(left, right);
    } else if (it.input) {
      const arrow = document.createElement("span");
      arrow.className = "arrow";
      arrow.textContent = "→";
      imgs.append(figure(it.input, "input", "input"), arrow, figure(it.output, "output"));
    } else {
      imgs.append(figure(it.output, "sample")); // a generated sample: no input to compare with
    }

    const btns = document.createElement("div");
    btns.className = "btns";
    for (const [value, text, key] of MODES[state.kind].buttons) {
      const b = document.createElement("button");
      b.type = "button";
      b.tabIndex = -1;
      b.dataset.value = value;
      b.innerHTML = `${text} <kbd>${key}</kbd>`;
      b.addEventListener("click", (e) => { e.stopPropagation(); focus(index); markFocused(value); });
      btns.append(b);
    }
    tile.append(head, imgs, btns);
    tile.addEventListener("click", () => focus(index));
    return tile;
  }

  function renderTile(index) {
    const it = state.items[index];
    const tile = $("grid").children[index];
    if (!it || !tile) return;
    const m = state.marks.get(it.id);
    tile.dataset.value = m ? m.value : "";
    tile.classList.toggle("is-best", !!(m && m.best));
    tile.querySelector(".badge").textContent = m ? SYMBOL[m.value] : "";
    for (const b of tile.querySelectorAll(".btns button[data-value]")) {
      b.classList.toggle("on", !!m && b.dataset.value === m.value);
      b.setAttribute("aria-pressed", !!m && b.dataset.value === m.value ? "true" : "false");
    }
  }

  function render() {
    const grid = $("grid");
    grid.replaceChildren();
    grid.dataset.kind = state.kind || "";
    const mode = $("mode");
    mode.dataset.kind = state.kind || "";
    if (!state.items.length) {
      $("empty").hidden = false;
      grid.hidden = true;
      mode.textContent = "waiting for items";
      $("keys").replaceChildren();
      updateCounts();
      return;
    }
    $("empty").hidden = true;
    grid.hidden = false;
    const info = MODES[state.kind];
    mode.textContent = info.title;
    renderKeys(info);
    state.items.forEach((it, i) => grid.append(buildTile(it, i)));
    state.items.forEach((_, i) => renderTile(i));
    const first = state.items.findIndex((it) => !state.marks.has(it.id));
    focus(first >= 0 ? first : 0);
    updateCounts();
  }

  function renderKeys(info) {
    const parts = ['<span class="hint"></span>', '<span class="note"></span>'];
    for (const [, text, key] of info.buttons) parts.push(`<span><kbd>${key}</kbd> ${text.replace(/[◀▶]/g, "").trim()}</span>`);
    if (state.kind === "hero") parts.push("<span><kbd>x</kbd> best</span>");
    parts.push("<span><kbd>←↑↓→</kbd>/<kbd>hjkl</kbd> move</span>", "<span><kbd>u</kbd> undo</span>",
      "<span><kbd>Enter</kbd> submit</span>", "<span><kbd>?</kbd> help</span>");
    $("keys").innerHTML = parts.join("");
    $("keys").querySelector(".hint").textContent = info.hint;
    // The trainer's note on the batch (e.g. what makes a sample good): free text, so never HTML.
    $("keys").querySelector(".note").textContent = state.note || "";
  }

  function updateCounts() {
    const n = state.items.length;
    const done = state.items.filter((it) => state.marks.has(it.id)).length;
    $("page-count").textContent = `${done} / ${n} marked`;
    $("bar-fill").style.width = n ? `${(100 * done) / n}%` : "0";
    $("submit-btn").disabled = state.busy || done === 0;
    $("submit-btn").classList.toggle("ready", n > 0 && done === n);
  }

  function message(text, level) {
    const el = $("message");
    el.textContent = text;
    el.className = "message " + (level || "");
  }

  async function refreshProgress() {
    if (!state.labeler) return;
    try {
      const p = await api("GET", "/api/progress?labeler=" + encodeURIComponent(state.labeler));
      $("stat-mine").textContent = p.labelled;
      $("stat-rate").textContent = p.labels_per_minute.toFixed(1);
      $("stat-pending").textContent = p.pending_items;
      $("stat-total").textContent = p.labels_total;
    } catch (_) { /* progress is cosmetic; the next refresh will try again */ }
  }

  // --------------------------------------------------------------------------------------- actions

  async function loadNext() {
    clearTimeout(state.pollTimer);
    if (!state.labeler || !state.session) return;
    let batch;
    try {
      batch = await api("GET", "/api/next");
    } catch (e) {
      message("Cannot reach the server: " + e.message, "error");
      state.pollTimer = setTimeout(loadNext, 3000);
      return;
    }
    state.kind = batch.kind;
    state.items = batch.items;
    state.note = batch.note || null;
    state.history = [];
    state.confirmNoBest = false;
    const saved = savedMarks();
    state.marks = new Map();
    for (const it of state.items) if (saved[it.id]) state.marks.set(it.id, saved[it.id]);
    state.lastMarkAt = performance.now();
    render();
    if (!state.items.length) state.pollTimer = setTimeout(loadNext, 2000);
  }

  async function submit() {
    if (state.busy) return;
    const marked = state.items.filter((it) => state.marks.has(it.id));
    if (!marked.length) {
      message("Nothing marked yet: use the keys shown above, then Enter.", "warn");
      return;
    }
    if (state.kind === "hero" && marked.length < state.items.length) {
      // A best-of-batch pick only means something once the whole batch has been judged.
      const left = state.items.length - marked.length;
      message(`Mark all ${state.items.length} outputs first (${left} left), then pick the best with x.`, "warn");
      focus(state.items.findIndex((it) => !state.marks.has(it.id)));
      return;
    }
    if (state.kind === "hero" && bestIndex() < 0 && !state.confirmNoBest) {
      state.confirmNoBest = true;
      message("No best picked: press x on the best output, or Enter again to submit without one.", "warn");
      return;
    }
    const labels = marked.map((it) => {
      const m = state.marks.get(it.id);
      return { item_id: it.id, value: m.value, best: !!m.best, response_ms: Math.max(0, m.ms || 0) };
    });
    state.busy = true;
    updateCounts();
    message(`Saving ${labels.length} labels…`);
    try {
      const r = await api("POST", "/api/labels", { labels });
      forgetMarks(marked.map((it) => it.id));
      message(`Saved ${r.acknowledged} labels ✓`, "ok");
      state.busy = false;
      await loadNext();
      refreshProgress();
    } catch (e) {
      message(`Not saved: ${e.message}. Your marks are kept; press Enter to try again.`, "error");
    } finally {
      state.busy = false;
      updateCounts();
    }
  }

  async function undo() {
    if (state.busy) return;
    const h = state.history.pop();
    if (h) {
      if (h.prev) state.marks.set(h.id, h.prev); else state.marks.delete(h.id);
      if (h.prevBestId !== null && h.prevBestId !== h.id && state.marks.has(h.prevBestId)) {
        state.marks.set(h.prevBestId, { ...state.marks.get(h.prevBestId), best: true });
      }
      persistMarks();
      const index = state.items.findIndex((it) => it.id === h.id);
      state.items.forEach((_, i) => renderTile(i));
      focus(index);
      updateCounts();
      message(`Undid the mark on item ${index + 1}.`);
      return;
    }
    try {
      const r = await api("POST", "/api/undo");
      if (!r.undone) { message("Nothing to undo."); return; }
      message(`Undid your saved label “${r.undone.value}” (item #${r.undone.item_id}); it is pending again.`, "ok");
      await loadNext();
      refreshProgress();
    } catch (e) {
      message("Undo failed: " + e.message, "error");
    }
  }

  function move(dx, dy) {
    const cols = columns();
    focus(state.cursor + dx + dy * cols);
  }

  function onKey(e) {
    if (e.target instanceof HTMLInputElement || e.metaKey || e.ctrlKey || e.altKey) return;
    const help = $("help");
    if (help.open) return;
    const k = e.key;
    let handled = true;
    if (k === "?") help.showModal();
    else if (k === "Enter") submit();
    else if (k === "u" || k === "U") undo();
    else if (!state.items.length) handled = false;
    else if (k === "ArrowLeft" || k === "h") move(-1, 0);
    else if (k === "ArrowRight" || k === "l") move(1, 0);
    else if (k === "ArrowUp" || k === "k") move(0, -1);
    else if (k === "ArrowDown" || k === "j") move(0, 1);
    else if ((k === "x" || k === "3") && state.kind === "hero") pickBest();
    else if (KEYS[state.kind] && KEYS[state.kind][k]) markFocused(KEYS[state.kind][k]);
    else handled = false;
    if (handled) e.preventDefault();
  }

  // ---------------------------------------------------------------------------------------- start

  function setLabeler(name) {
    state.labeler = name;
    localStorage.setItem("hfrl-labeler", name);
    $("labeler").value = name;
  }

  function randomName() {
    return "person-" + Math.random().toString(16).slice(2, 8);
  }

  async function start() {
    let name = params.get("labeler") || localStorage.getItem("hfrl-labeler");
    const chosen = !!name && LABELER_RE.test(name);
    if (!chosen) name = randomName();
    try {
      let ok = await useName(name);
      // A made-up name that happens to be taken: make up another.
      for (let tries = 0; !ok && !chosen && tries < 5; tries++) ok = await useName((name = randomName()));
      if (ok) setLabeler(name);
      else {
        $("labeler").value = name;
        message(`The name “${name}” is taken by another labeler: type another name.`, "error");
      }
    } catch (e) {
      message("Cannot reach the server: " + e.message, "error");
    }
    $("labeler").addEventListener("change", async (e) => {
      const v = e.target.value.trim();
      if (!LABELER_RE.test(v)) {
        message("Labeler names use letters, digits and _ . @ + - (up to 64).", "error");
        e.target.value = state.labeler;
        return;
      }
      e.target.blur();
      const previous = { labeler: state.labeler, session: state.session };
      let ok = false;
      try { ok = await useName(v); } catch (err) { message("Cannot reach the server: " + err.message, "error"); }
      if (!ok) {
        if (previous.session) Object.assign(state, previous);
        e.target.value = state.labeler;
        message(`The name “${v}” is taken by another labeler: choose another.`, "error");
        return;
      }
      setLabeler(v);
      loadNext();
      refreshProgress();
    });
    $("labeler").addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === "Escape") e.target.blur(); });
    $("submit-btn").addEventListener("click", submit);
    $("undo-btn").addEventListener("click", undo);
    $("help-btn").addEventListener("click", () => $("help").showModal());
    document.addEventListener("keydown", onKey);
    window.addEventListener("resize", () => focus(state.cursor));
    setInterval(refreshProgress, 10000);
    startRenewing();
    loadNext().then(refreshProgress);
  }

  start();
})();
