// prewarm's web page: the task list, the create form and a live task page, over prewarmd's REST API
// (docs/api.md, /openapi.json). Plain JavaScript, no build step, no outside resources (the page must
// work air-gapped, and the Content-Security-Policy allows only this origin). docs/web.md describes it.
//
// Live updates: the task page reads GET /api/v1/tasks/{id}/events (Server-Sent Events) with fetch()
// streaming, not EventSource, because EventSource cannot send the Authorization header and cannot
// tell a 404 (an older server without the endpoint) from a network error. When the endpoint answers
// 404 the page polls GET /api/v1/tasks/{id} and its nodes instead.
//
// Authentication: when the API answers 401 the page asks for a bearer token, keeps it in
// sessionStorage only (this tab, gone when it closes) and sends it as "Authorization: Bearer".
// Everything the server sends is inserted as text (textContent), never as HTML.
"use strict";

const TOKEN_KEY = "prewarm.token";
const THEME_KEY = "prewarm.theme";
const STATES = ["pending", "running", "succeeded", "failed", "skipped", "cancelled"];
const FINAL = new Set(["succeeded", "failed", "cancelled"]);
const POLL_MS = 1500;
const LIST_POLL_MS = 3000;
const NODES_REFRESH_MS = 3000; // with events: the running/pending states come from the nodes list
const PAGE = 5000;

const $ = (id) => document.getElementById(id);
const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    if (signal) signal.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
  });

// A node's name on the page: "cluster/node" for a node of a named cluster (docs/multicluster.md).
function nodeKey(n) {
  return n.cluster ? n.cluster + "/" + n.nodeName : n.nodeName;
}

// progress.clusters side by side: name, state, a bar and the counts of each cluster.
function renderClusters(list) {
  const box = document.getElementById("clusters");
  if (!box) return;
  box.hidden = list.length === 0;
  box.replaceChildren(...list.map((c) => {
    const done = (c.succeededNodes || 0) + (c.failedNodes || 0) + (c.skippedNodes || 0) + (c.cancelledNodes || 0);
    const pct = c.totalNodes ? Math.round((100 * done) / c.totalNodes) : 100;
    const fill = el("div", { class: "fill done-" + c.state });
    fill.style.width = pct + "%"; // CSSOM, not a style attribute: the page's CSP forbids inline styles
    return el("section", { class: "cluster", "aria-label": "cluster " + c.name },
      el("h3", { text: c.name + " · " + c.state }),
      el("div", { class: "bar" }, fill),
      el("p", { text: done + "/" + c.totalNodes + " nodes, " + (c.failedNodes || 0) + " failed" +
        (c.message ? " — " + c.message : "") }));
  }));
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

// ---- authentication and API calls ----

let tokenPrompt = null; // one dialog at a time; every 401 waits for the same answer

function token() { return sessionStorage.getItem(TOKEN_KEY); }

function askToken(why) {
  if (tokenPrompt) return tokenPrompt;
  const dlg = $("auth"), input = $("auth-token"), err = $("auth-err");
  err.hidden = !why;
  err.textContent = why || "";
  input.value = "";
  tokenPrompt = new Promise((resolve) => {
    const done = (ev) => {
      ev.preventDefault();
      const v = input.value.trim();
      if (!v) { err.hidden = false; err.textContent = "Enter a token."; input.focus(); return; }
      sessionStorage.setItem(TOKEN_KEY, v);
      $("auth-form").removeEventListener("submit", done);
      dlg.close();
      tokenPrompt = null;
      updateSignout();
      resolve();
    };
    $("auth-form").addEventListener("submit", done);
    // Escape would leave the page without a way to go on: keep the dialog until a token is given.
    dlg.addEventListener("cancel", (ev) => ev.preventDefault());
    dlg.showModal();
    input.focus();
  });
  return tokenPrompt;
}

function authHeaders(extra) {
  const h = Object.assign({}, extra || {});
  const t = token();
  if (t) h.Authorization = "Bearer " + t;
  return h;
}

// fetch() with the token; a 401 asks for one and retries. Returns {status, body, headers}; body is
// the parsed JSON (or null). Network errors throw.
async function api(method, path, body, signal) {
  for (let attempt = 0; ; attempt++) {
    const init = { method, headers: authHeaders({ Accept: "application/json" }), signal, cache: "no-store" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(path, init);
    if (resp.status === 401) {
      const had = token();
      if (had) sessionStorage.removeItem(TOKEN_KEY);
      await askToken(had ? "That token was not accepted." : "");
      continue;
    }
    let data = null;
    const text = await resp.text();
    if (text) { try { data = JSON.parse(text); } catch (_) { data = { message: text }; } }
    return { status: resp.status, body: data, headers: resp.headers };
  }
}

function updateSignout() { $("signout").hidden = !token(); }

// ---- small formatters ----

function fmtDuration(s) {
  if (!isFinite(s) || s < 0) return "–";
  s = Math.round(s);
  if (s < 60) return s + "s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + "m " + (s % 60) + "s";
  return Math.floor(m / 60) + "h " + (m % 60) + "m";
}

function fmtAgo(iso) {
  if (!iso) return "–";
  const s = (Date.now() - Date.parse(iso)) / 1000;
  return s < 5 ? "just now" : fmtDuration(s) + " ago";
}

function fmtPct(p) { return (Math.floor((p || 0) * 10) / 10).toFixed(p >= 100 ? 0 : 1) + "%"; }

function badge(status) { return el("span", { class: "badge st-" + status, text: status }); }

function banner(msg) {
  const b = $("banner");
  b.hidden = !msg;
  b.textContent = msg || "";
}

function errText(r) {
  const b = r.body || {};
  return (b.message || "HTTP " + r.status) + (b.reason ? " (" + b.reason + ")" : "");
}

// ---- theme ----

function systemDark() { return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches; }

function currentTheme() { return document.documentElement.dataset.theme || (systemDark() ? "dark" : "light"); }

function applyTheme(t) {
  if (t) document.documentElement.dataset.theme = t;
  const dark = currentTheme() === "dark";
  const b = $("theme");
  b.textContent = dark ? "Light theme" : "Dark theme";
  b.setAttribute("aria-pressed", String(dark));
  b.setAttribute("aria-label", dark ? "Switch to the light theme" : "Switch to the dark theme");
  document.dispatchEvent(new Event("themechange"));
}

// ---- views and routing ----

let current = null; // the active view: {stop()}

function show(id) {
  for (const v of ["view-list", "view-new", "view-task"]) $(v).hidden = v !== id;
}

function route(initial) {
  if (current) current.stop();
  current = null;
  banner("");
  const h = location.hash.replace(/^#/, "") || "/";
  let m;
  if (h === "/new") {
    show("view-new");
    current = newView();
  } else if ((m = h.match(/^\/tasks\/([^/]+)$/))) {
    show("view-task");
    current = taskView(decodeURIComponent(m[1]));
  } else {
    show("view-list");
    current = listView();
  }
  if (!initial) {
    const h1 = document.querySelector("section:not([hidden]) h1");
    if (h1) { h1.tabIndex = -1; h1.focus({ preventScroll: false }); }
  }
}

// ---- the task list ----

function listView() {
  const ac = new AbortController();
  const rows = $("task-rows");
  const filter = $("filter");
  const render = (items) => {
    rows.replaceChildren();
    for (const t of items) {
      const p = t.progress || {};
      const imgs = t.images || [];
      const fill = el("div", { class: "fill" + (FINAL.has(t.status) ? " done-" + t.status : "") });
      fill.style.width = Math.min(100, p.percentage || 0) + "%";
      const bar = el("div", { class: "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
        "aria-valuenow": String(Math.round(p.percentage || 0)), "aria-label": "Progress of " + t.id }, fill);
      rows.append(el("tr", { "data-id": t.id },
        el("td", {}, el("a", { href: "#/tasks/" + encodeURIComponent(t.id), class: "mono", text: t.id })),
        el("td", {}, badge(t.status)),
        el("td", { class: "imgs mono", title: imgs.join("\n"),
          text: (imgs[0] || "") + (imgs.length > 1 ? " +" + (imgs.length - 1) : "") }),
        el("td", {}, el("div", { class: "mini" }, bar, el("span", { text: fmtPct(p.percentage) }))),
        el("td", { class: "num", text: String(p.totalNodes || 0) }),
        el("td", { class: "num", text: String(p.failedNodes || 0) }),
        el("td", { title: t.createdAt || "", text: fmtAgo(t.createdAt) })));
    }
    $("list-empty").hidden = items.length > 0;
  };
  const load = async () => {
    const q = filter.value ? "&status=" + encodeURIComponent(filter.value) : "";
    const r = await api("GET", "/api/v1/tasks?limit=100" + q, undefined, ac.signal);
    if (r.status !== 200) { banner("Could not list the tasks: " + errText(r)); return; }
    banner("");
    render(r.body.items || []);
  };
  const onFilter = () => load().catch(() => {});
  filter.addEventListener("change", onFilter);
  (async () => {
    while (!ac.signal.aborted) {
      try { await load(); } catch (e) { if (!ac.signal.aborted) banner("prewarmd is not reachable: " + e.message); }
      await sleep(LIST_POLL_MS, ac.signal);
    }
  })();
  return { stop() { ac.abort(); filter.removeEventListener("change", onFilter); } };
}

// ---- the create form ----

const FORM_FIELDS = ["images", "nodeSelector", "labelSelector", "batchSize", "strategy", "mode"];

function clearErrors() {
  for (const f of FORM_FIELDS) {
    $("f-" + f).removeAttribute("aria-invalid");
    $("e-" + f).hidden = true;
    $("e-" + f).textContent = "";
  }
  $("e-form").hidden = true;
}

// Shows each {field, message} at its input ("images[1]" belongs to images); returns the first input.
function showErrors(details, fallback) {
  let first = null;
  const rest = [];
  for (const d of details) {
    const base = String(d.field || "").split(/[[.]/)[0];
    const input = FORM_FIELDS.includes(base) ? $("f-" + base) : null;
    if (!input) { rest.push((d.field ? d.field + ": " : "") + d.message); continue; }
    const e = $("e-" + base);
    const line = (d.field !== base ? d.field + ": " : "") + d.message;
    e.textContent = e.textContent ? e.textContent + " · " + line : line;
    e.hidden = false;
    input.setAttribute("aria-invalid", "true");
    if (!first) first = input;
  }
  if (rest.length || (!first && fallback)) {
    $("e-form").textContent = rest.length ? rest.join(" · ") : fallback;
    $("e-form").hidden = false;
  }
  return first;
}

function parseSelector(text) {
  const out = {};
  for (const part of text.split(",").map((s) => s.trim()).filter(Boolean)) {
    const i = part.indexOf("=");
    if (i <= 0) return null;
    out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}

function buildRequest() {
  const body = {};
  const local = [];
  body.images = $("f-images").value.split(/\r?\n/).map((s) => s.trim()).filter(Boolean);
  const ns = $("f-nodeSelector").value.trim();
  if (ns) {
    const sel = parseSelector(ns);
    if (sel) body.nodeSelector = sel;
    else local.push({ field: "nodeSelector", message: "write key=value pairs separated by commas" });
  }
  const ls = $("f-labelSelector").value.trim();
  if (ls) body.labelSelector = ls;
  const bsInput = $("f-batchSize");
  const bs = bsInput.value.trim();
  if (bs) body.batchSize = /^-?\d+$/.test(bs) ? Number(bs) : bs; // the server says what is wrong
  else if (bsInput.validity && bsInput.validity.badInput) local.push({ field: "batchSize", message: "must be a whole number" });
  for (const f of ["strategy", "mode"]) if ($("f-" + f).value) body[f] = $("f-" + f).value;
  return { body, local };
}

function newView() {
  const form = $("create");
  const submit = $("submit");
  const onSubmit = async (ev) => {
    ev.preventDefault();
    clearErrors();
    const { body, local } = buildRequest();
    if (local.length) { showErrors(local).focus(); return; }
    submit.disabled = true;
    submit.textContent = "Creating…";
    try {
      const r = await api("POST", "/api/v1/tasks", body);
      if (r.status === 201) {
        form.reset();
        location.hash = "#/tasks/" + encodeURIComponent(r.body.id);
        return;
      }
      const b = r.body || {};
      const details = b.details || (b.field ? [{ field: b.field, message: b.message }] : []);
      const first = showErrors(details, errText(r));
      (first || $("f-images")).focus();
    } catch (e) {
      $("e-form").textContent = "prewarmd is not reachable: " + e.message;
      $("e-form").hidden = false;
    } finally {
      submit.disabled = false;
      submit.textContent = "Create task";
    }
  };
  form.addEventListener("submit", onSubmit);
  return { stop() { form.removeEventListener("submit", onSubmit); } };
}

// ---- Server-Sent Events over fetch() ----

// Reads the stream at path, calling onEvent(type, data) per event. Resolves "unsupported" when the
// server has no such endpoint (404, 405 or not an event stream), "end" after an end event, or
// "aborted". A dropped stream is resumed with Last-Event-ID after a second.
async function readEvents(path, onEvent, signal) {
  let lastId = null, connected = false;
  while (!signal.aborted) {
    const headers = authHeaders({ Accept: "text/event-stream" });
    if (lastId) headers["Last-Event-ID"] = lastId;
    let resp;
    try {
      resp = await fetch(path, { headers, signal, cache: "no-store" });
    } catch (e) {
      if (signal.aborted) return "aborted";
      await sleep(1000, signal);
      continue;
    }
    if (resp.status === 401) { sessionStorage.removeItem(TOKEN_KEY); await askToken("That token was not accepted."); continue; }
    const ct = resp.headers.get("Content-Type") || "";
    if (!resp.ok || !ct.startsWith("text/event-stream")) {
      if (resp.body) resp.body.cancel().catch(() => {});
      if (!connected && (resp.status === 404 || resp.status === 405 || resp.ok)) return "unsupported";
      await sleep(2000, signal);
      continue;
    }
    connected = true;
    const reader = resp.body.getReader();
    const dec = new TextDecoder();
    let buf = "", type = "", data = [], id = null;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let nl;
        while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + (buf[nl] === "\r" && buf[nl + 1] === "\n" ? 2 : 1));
          if (line === "") {
            if (id !== null) lastId = id;
            if (data.length) {
              const t = type || "message";
              let parsed = null;
              try { parsed = JSON.parse(data.join("\n")); } catch (_) { parsed = data.join("\n"); }
              onEvent(t, parsed);
              if (t === "end") { reader.cancel().catch(() => {}); return "end"; }
            } else if (type === "end") { reader.cancel().catch(() => {}); onEvent("end", null); return "end"; }
            type = ""; data = []; id = null;
            continue;
          }
          if (line[0] === ":") continue; // a comment (heartbeat)
          const c = line.indexOf(":");
          const field = c < 0 ? line : line.slice(0, c);
          let val = c < 0 ? "" : line.slice(c + 1);
          if (val[0] === " ") val = val.slice(1);
          if (field === "event") type = val;
          else if (field === "data") data.push(val);
          else if (field === "id") id = val;
        }
      }
    } catch (e) {
      if (signal.aborted) return "aborted";
    }
    await sleep(1000, signal);
  }
  return "aborted";
}

// ---- the node grid (a canvas: one square per node) ----

function makeGrid(canvas, tip) {
  const ctx = canvas.getContext("2d");
  let nodes = [];       // [{nodeName, state, ...}] in display order
  let colors = {};
  let cell = 10, gap = 1, cols = 1, cssW = 0;
  let hover = -1, focusIdx = -1, dirty = false;

  const readColors = () => {
    const cs = getComputedStyle(document.documentElement);
    for (const s of STATES) colors[s] = cs.getPropertyValue("--s-" + s).trim() || "#888";
    colors.focus = cs.getPropertyValue("--focus").trim();
    colors.fg = cs.getPropertyValue("--fg").trim();
  };
  readColors();

  const layout = () => {
    cssW = canvas.clientWidth || canvas.parentElement.clientWidth;
    const n = Math.max(1, nodes.length);
    cell = Math.max(4, Math.min(22, Math.floor(Math.sqrt((cssW * 420) / n))));
    gap = cell >= 8 ? 2 : 1;
    cols = Math.max(1, Math.floor((cssW + gap) / cell));
    const rows = Math.ceil(nodes.length / cols) || 1;
    const cssH = rows * cell - gap;
    const dpr = window.devicePixelRatio || 1;
    canvas.style.height = cssH + "px";
    canvas.width = Math.round(cssW * dpr);
    canvas.height = Math.round(cssH * dpr);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  };

  const draw = () => {
    dirty = false;
    layout();
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const sz = cell - gap;
    // one fillStyle change per state, not per node: 5,000 nodes draw in well under a frame
    for (const s of STATES) {
      ctx.fillStyle = colors[s];
      for (let i = 0; i < nodes.length; i++) {
        if (nodes[i].state !== s) continue;
        ctx.fillRect((i % cols) * cell, Math.floor(i / cols) * cell, sz, sz);
      }
    }
    for (const [i, c] of [[hover, colors.fg], [focusIdx, colors.focus]]) {
      if (i < 0 || i >= nodes.length) continue;
      ctx.strokeStyle = c;
      ctx.lineWidth = 2;
      ctx.strokeRect((i % cols) * cell - 1, Math.floor(i / cols) * cell - 1, sz + 2, sz + 2);
    }
  };

  const schedule = () => { if (!dirty) { dirty = true; requestAnimationFrame(draw); } };

  const showTip = (i) => {
    if (i < 0 || i >= nodes.length) { tip.hidden = true; return; }
    const n = nodes[i];
    const list = el("ul");
    for (const im of n.images || []) {
      list.append(el("li", { text: im.image + ": " + im.state + (im.reason ? " (" + im.reason + ")" : "") +
        (im.message && im.state === "failed" ? " " + im.message : "") }));
    }
    tip.replaceChildren(el("strong", { text: nodeKey(n) }),
      el("div", { text: n.state + (n.reason ? " · " + n.reason : "") }),
      n.message && n.state !== "succeeded" ? el("div", { class: "muted", text: n.message }) : null,
      (n.images || []).length ? list : null);
    tip.hidden = false;
    const x = (i % cols) * cell + 10, y = Math.floor(i / cols) * cell + 10; // 10: the wrap's padding
    const tw = tip.offsetWidth, wrapW = canvas.parentElement.clientWidth;
    tip.style.left = Math.max(0, Math.min(x + cell + 6, wrapW - tw - 4)) + "px";
    tip.style.top = y + cell + 6 + "px";
  };

  const at = (ev) => {
    const r = canvas.getBoundingClientRect();
    const cx = ev.clientX - r.left, cy = ev.clientY - r.top;
    const c = Math.floor(cx / cell), row = Math.floor(cy / cell);
    if (c < 0 || c >= cols || row < 0) return -1;
    const i = row * cols + c;
    return i < nodes.length ? i : -1;
  };

  canvas.addEventListener("mousemove", (ev) => {
    const i = at(ev);
    if (i !== hover) { hover = i; showTip(i); schedule(); }
  });
  canvas.addEventListener("mouseleave", () => { hover = -1; showTip(focusIdx); schedule(); });
  canvas.addEventListener("keydown", (ev) => {
    if (!nodes.length) return;
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: cols, ArrowUp: -cols };
    let i = focusIdx < 0 ? 0 : focusIdx;
    if (ev.key in moves) i = focusIdx < 0 ? 0 : i + moves[ev.key];
    else if (ev.key === "Home") i = 0;
    else if (ev.key === "End") i = nodes.length - 1;
    else if (ev.key === "Escape") { focusIdx = -1; showTip(-1); schedule(); return; }
    else return;
    ev.preventDefault();
    focusIdx = Math.max(0, Math.min(nodes.length - 1, i));
    showTip(focusIdx);
    schedule();
  });
  canvas.addEventListener("blur", () => { focusIdx = -1; if (hover < 0) showTip(-1); schedule(); });
  const onTheme = () => { readColors(); schedule(); };
  document.addEventListener("themechange", onTheme);
  const mq = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;
  if (mq) mq.addEventListener("change", onTheme);
  const ro = new ResizeObserver(() => { if (canvas.clientWidth !== cssW) schedule(); });
  ro.observe(canvas.parentElement);

  return {
    set(list) {
      nodes = list;
      schedule();
      const cur = hover >= 0 ? hover : focusIdx;
      if (cur >= 0 && !tip.hidden) showTip(cur);
    },
    stop() {
      ro.disconnect();
      document.removeEventListener("themechange", onTheme);
      if (mq) mq.removeEventListener("change", onTheme);
      tip.hidden = true;
    },
  };
}

// ---- the task page ----

function failureOf(n) {
  const im = (n.images || []).find((x) => x.state === "failed");
  return {
    reason: (im && im.reason) || n.reason || "Unknown",
    message: (im && im.message) || n.message || "",
    image: im ? im.image : "",
  };
}

function renderFailures(box, failed) {
  if (!failed.length) { box.replaceChildren(el("p", { class: "muted", text: "None." })); return; }
  const groups = new Map();
  for (const f of failed) {
    if (!groups.has(f.reason)) groups.set(f.reason, { count: 0, messages: new Map() });
    const g = groups.get(f.reason);
    g.count++;
    const key = f.message;
    if (!g.messages.has(key)) g.messages.set(key, { image: f.image, nodes: [] });
    g.messages.get(key).nodes.push(f.nodeName);
  }
  const out = [];
  for (const [reason, g] of [...groups].sort((a, b) => b[1].count - a[1].count)) {
    const sec = el("section", { class: "fgroup", "aria-label": reason },
      el("h3", { text: reason + " · " + g.count + (g.count === 1 ? " node" : " nodes") }));
    let shown = 0;
    for (const [msg, m] of g.messages) {
      if (shown++ === 5) { sec.append(el("p", { class: "muted", text: (g.messages.size - 5) + " more messages" })); break; }
      if (m.image) sec.append(el("div", { class: "mono small", text: m.image }));
      sec.append(el("p", { class: "msg", text: msg || "(no message)" }));
      const names = m.nodes.slice(0, 12).join(", ") + (m.nodes.length > 12 ? " and " + (m.nodes.length - 12) + " more" : "");
      sec.append(el("p", { class: "nodes", text: "on " + names }));
    }
    out.push(sec);
  }
  box.replaceChildren(...out);
}

function taskView(id) {
  const ac = new AbortController();
  const grid = makeGrid($("grid"), $("tip"));
  const byName = new Map(); // nodeName -> node result
  let order = [];           // node names, sorted
  let task = null;
  let samples = [];         // [ms, finished nodes] for the rate
  let lastSpoken = -1, lastStatus = "";
  let failSig = "";
  let mode = "";

  $("task-h").textContent = id;
  $("task-status").replaceChildren();
  $("task-images").textContent = "";
  $("task-message").textContent = "";
  $("counts").replaceChildren();
  $("failures").replaceChildren(el("p", { class: "muted", text: "None." }));
  $("live").textContent = "";

  const setLive = (text) => { $("live").textContent = text; };

  const renderNodes = () => {
    grid.set(order.map((n) => byName.get(n)));
    const failed = [];
    for (const n of order) {
      const r = byName.get(n);
      if (r.state === "failed") failed.push(Object.assign({ nodeName: n }, failureOf(r)));
    }
    if (!order.length && task && task.failedNodes) {
      for (const f of task.failedNodes) failed.push({ nodeName: f.nodeName, reason: f.reason, message: f.message, image: f.image });
    }
    const sig = failed.length + ":" + failed.map((f) => f.nodeName).join(",").length;
    if (sig !== failSig) { failSig = sig; renderFailures($("failures"), failed); }
    const st = {};
    for (const s of STATES) st[s] = 0;
    for (const n of order) st[byName.get(n).state]++;
    $("grid-summary").textContent = order.length + " nodes: " + STATES.map((s) => st[s] + " " + s).join(", ");
  };

  let nodesQueued = false; // node events arrive by the thousand: draw once per frame
  const queueNodes = () => {
    if (nodesQueued) return;
    nodesQueued = true;
    requestAnimationFrame(() => { nodesQueued = false; renderNodes(); });
  };

  const setNodes = (items) => {
    for (const n of items) byName.set(nodeKey(n), n);
    if (items.length || byName.size !== order.length)
      order = [...byName.keys()].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
    queueNodes();
  };

  const renderTask = (t) => {
    task = t;
    const p = t.progress || {};
    const finished = (p.succeededNodes || 0) + (p.failedNodes || 0) + (p.skippedNodes || 0) + (p.cancelledNodes || 0);
    const total = p.totalNodes || 0;
    $("task-status").replaceChildren(badge(t.status));
    $("task-images").textContent = (t.images || []).join("  ·  ");
    const pct = Math.min(100, p.percentage || 0);
    const fill = $("bar-fill");
    fill.style.width = pct + "%";
    fill.className = "fill" + (FINAL.has(t.status) ? " done-" + t.status : "");
    $("bar").setAttribute("aria-valuenow", String(Math.round(pct)));
    $("bar").setAttribute("aria-valuetext", fmtPct(pct) + ", " + finished + " of " + total + " nodes finished");
    $("pct").textContent = fmtPct(pct);
    const now = Date.now();
    samples.push([now, finished]);
    samples = samples.filter((s) => now - s[0] <= 15000);
    const start = t.startedAt ? Date.parse(t.startedAt) : null;
    const end = t.finishedAt ? Date.parse(t.finishedAt) : now;
    let rate = NaN;
    if (FINAL.has(t.status) && start) rate = finished / Math.max(0.001, (end - start) / 1000);
    else if (samples.length > 1 && now - samples[0][0] > 1500) rate = (finished - samples[0][1]) / ((now - samples[0][0]) / 1000);
    else if (start && finished) rate = finished / Math.max(0.001, (now - start) / 1000);
    $("rate").textContent = isFinite(rate) ? (rate >= 10 ? rate.toFixed(0) : rate.toFixed(1)) + " nodes/s" : "–";
    $("eta").textContent = FINAL.has(t.status) ? "done" : rate > 0 ? fmtDuration((total - finished) / rate) : "–";
    $("elapsed").textContent = start ? fmtDuration((end - start) / 1000) : "–";
    const counts = $("counts");
    counts.replaceChildren(...STATES.map((s) => el("li", {}, el("span", { class: "sw sw-" + s, "aria-hidden": "true" }),
      el("span", { text: s + " " + (p[s + "Nodes"] || 0) }))));
    renderClusters(p.clusters || []);
    $("task-message").textContent = t.message || "";
    $("cancel").hidden = FINAL.has(t.status);
    // the screen-reader line: at each 10 % step and on a status change, not at every event
    const step = Math.floor(pct / 10);
    if (step !== lastSpoken || t.status !== lastStatus) {
      lastSpoken = step;
      lastStatus = t.status;
      $("progress-text").textContent = "Task " + t.status + ", " + fmtPct(pct) + ": " + finished + " of " + total +
        " nodes finished, " + (p.failedNodes || 0) + " failed.";
    }
    if (!order.length) queueNodes();
  };

  const loadNodes = async () => {
    const items = [];
    let cont = "";
    for (let guard = 0; guard < 100; guard++) {
      const r = await api("GET", "/api/v1/tasks/" + encodeURIComponent(id) + "/nodes?limit=" + PAGE +
        (cont ? "&continue=" + encodeURIComponent(cont) : ""), undefined, ac.signal);
      if (r.status !== 200) return false;
      items.push(...(r.body.items || []));
      cont = r.body.continue;
      if (!cont) break;
    }
    setNodes(items);
    return true;
  };

  const loadTask = async () => {
    const r = await api("GET", "/api/v1/tasks/" + encodeURIComponent(id), undefined, ac.signal);
    if (r.status === 404) { banner("Task " + id + " not found."); return null; }
    if (r.status !== 200) { banner("Could not read the task: " + errText(r)); return null; }
    banner("");
    renderTask(r.body);
    return r.body;
  };

  const poll = async () => {
    mode = "polling";
    while (!ac.signal.aborted) {
      try {
        const t = await loadTask();
        if (t && (t.progress.totalNodes || 0) > 0) await loadNodes();
        if (t && FINAL.has(t.status)) { setLive("finished"); return; }
        setLive("live: polling every " + POLL_MS / 1000 + " s");
      } catch (e) {
        if (ac.signal.aborted) return;
        banner("prewarmd is not reachable: " + e.message);
      }
      await sleep(POLL_MS, ac.signal);
    }
  };

  const refreshNodesWhileStreaming = async () => {
    while (!ac.signal.aborted && task && !FINAL.has(task.status)) {
      await sleep(NODES_REFRESH_MS, ac.signal);
      try { if (task && task.progress.totalNodes > 0) await loadNodes(); } catch (_) { /* the stream goes on */ }
    }
  };

  const onCancel = async () => {
    const b = $("cancel");
    b.disabled = true;
    try {
      const r = await api("DELETE", "/api/v1/tasks/" + encodeURIComponent(id));
      if (r.status === 200) renderTask(r.body);
      else banner("Could not cancel: " + errText(r));
      await loadNodes();
    } catch (e) {
      banner("prewarmd is not reachable: " + e.message);
    } finally {
      b.disabled = false;
    }
  };
  $("cancel").addEventListener("click", onCancel);

  (async () => {
    try {
      const t = await loadTask();
      if (!t) return;
      if (t.progress.totalNodes > 0) await loadNodes();
      if (FINAL.has(t.status)) { setLive("finished"); return; }
      setLive("live: connecting…");
      const how = await readEvents("/api/v1/tasks/" + encodeURIComponent(id) + "/events", (type, data) => {
        if (mode !== "events") { mode = "events"; setLive("live: server-sent events"); refreshNodesWhileStreaming(); }
        if (type === "task" && data && data.id) {
          const hadNodes = task && task.progress.totalNodes > 0;
          renderTask(data);
          if (!hadNodes && data.progress.totalNodes > 0) loadNodes().catch(() => {});
        } else if (type === "node" && data && data.nodeName) {
          byName.set(nodeKey(data), data);
          setNodes([]);
        }
      }, ac.signal);
      if (how === "unsupported") await poll();
      else if (how === "end") { await loadTask(); await loadNodes(); setLive("finished"); }
    } catch (e) {
      if (!ac.signal.aborted) banner("prewarmd is not reachable: " + e.message);
    }
  })();

  return {
    stop() {
      ac.abort();
      grid.stop();
      $("cancel").removeEventListener("click", onCancel);
    },
  };
}

// ---- start ----

function start() {
  let saved = null;
  try { saved = localStorage.getItem(THEME_KEY); } catch (_) { /* storage may be off */ }
  applyTheme(saved === "dark" || saved === "light" ? saved : null);
  $("theme").addEventListener("click", () => {
    const next = currentTheme() === "dark" ? "light" : "dark";
    try { localStorage.setItem(THEME_KEY, next); } catch (_) { /* the toggle still works for this page */ }
    applyTheme(next);
  });
  if (window.matchMedia) window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => applyTheme(null));
  $("signout").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); updateSignout(); route(false); });
  updateSignout();
  window.addEventListener("hashchange", () => route(false));
  route(true);
}

start();
