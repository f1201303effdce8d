// esgkit ui: one page over the JSON API of ui/app.py. No framework: the page's elements have ids the
// browser test (tests/ui/test_browser.py) drives.
"use strict";
const $ = (id) => document.getElementById(id);
const state = { picture: null, options: null, last: null };

async function api(path, body) {
  const init = body instanceof FormData ? { method: "POST", body }
    : body ? { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) } : {};
  let response;
  try { response = await fetch(path, init); } catch (e) { throw new Error("the esgkit server does not answer: is `esgkit ui` still running?"); }
  const data = await response.json().catch(() => ({ error: `the server answered ${response.status} without a message` }));
  if (!response.ok || data.error) throw new Error(data.error || `error ${response.status}`);
  return data;
}

function busy(message) { $("status").textContent = message; $("status").className = "busy"; $("error").hidden = true;
  for (const b of document.querySelectorAll("button")) b.disabled = true; }
function idle(message = "") { $("status").textContent = message; $("status").className = "";
  for (const b of document.querySelectorAll("button")) b.disabled = false; }
function fail(error) { idle(); $("error").textContent = error.message; $("error").hidden = false; }
function mode() { return document.querySelector("input[name=mode]:checked").value; }
function segmenters() { return [$("segmenter").value, $("segmenter-b").value].filter((s) => s); }

function option(select, value, label = value) {
  const o = document.createElement("option"); o.value = value; o.textContent = label; select.appendChild(o);
}

async function init() {
  const o = state.options = await api("/api/options");
  $("config-line").textContent = `GELLA: ${o.config} · uploads up to ${o.max_side} px a side, ${o.max_upload_mb} MB`;
  for (const s of o.segmenters) { option($("segmenter"), s); option($("segmenter-b"), s); }
  $("segmenter").value = o.default_segmenter;
  for (const s of o.referring) option($("system"), s);
  for (const s of o.scene_sizes) option($("scene-size"), s);
  $("scene-size").value = "512x512";
  syncMode();
}

function syncMode() {
  $("system").disabled = mode() !== "refer" || !state.options.referring.length;
  $("text").disabled = mode() === "describe";
}

function figure(src, caption, id) {
  const f = document.createElement("figure");
  const img = document.createElement("img"); img.src = src; img.alt = caption; if (id) img.id = id;
  const c = document.createElement("figcaption"); c.textContent = caption;
  f.append(img, c); return f;
}

async function setPicture(info) {
  state.picture = info; state.last = null;
  $("picture-box").hidden = false; $("results").replaceChildren();
  $("picture-name").textContent = `${info.name} · ${info.width}×${info.height}`;
  $("scene-caption").textContent = info.caption ? `scene narrative: ${info.caption}` : "";
  const gt = [...$("segmenter").options].find((o) => o.value === state.options.ground_truth);
  if (gt) gt.disabled = !info.has_masks;
  if (!info.has_masks && $("segmenter").value === state.options.ground_truth) $("segmenter").value = state.options.segmenters[1] || "";
  await showEntities();
}

async function showEntities() {
  const pictures = $("entity-pictures");
  pictures.replaceChildren(figure(state.picture.image, "image"));
  for (const s of segmenters()) {
    busy(`segmenting with ${s}… (the first time loads the model)`);
    const e = await api("/api/segment", { picture: state.picture.picture, segmenter: s });
    const f = figure(e.image, `${e.entities} entities from ${s}`); f.dataset.segmenter = s; f.classList.add("entities");
    pictures.appendChild(f);
    if (e.warning) { $("error").textContent = e.warning; $("error").hidden = false; }
  }
  idle(`${segmenters().join(" and ")}: entities shown; type a caption and press Ground`);
}

function phraseText(p) {
  const box = document.createElement("div"); box.className = "text";
  let at = 0;
  for (const ph of [...p.phrases].sort((a, b) => a.start - b.start)) {
    if (ph.start < at) continue;
    box.append(document.createTextNode(p.text.slice(at, ph.start)));
    const span = document.createElement("span");
    span.className = "phrase" + (ph.entities.length ? "" : " empty");
    span.textContent = p.text.slice(ph.start, ph.end);
    span.style.borderBottomColor = ph.color; span.style.backgroundColor = ph.color + "40";
    span.dataset.index = ph.index; span.dataset.color = ph.color;
    span.title = ph.entities.length ? `entities ${ph.entities.join(", ")} · score ${ph.score}` : "not grounded";
    box.append(span); at = ph.end;
  }
  box.append(document.createTextNode(p.text.slice(at)));
  return box;
}

function phraseTable(p) {
  const t = document.createElement("table");
  t.innerHTML = "<thead><tr><th>phrase</th><th>entities</th><th>score</th></tr></thead>";
  const body = document.createElement("tbody");
  for (const ph of p.phrases) {
    const tr = document.createElement("tr");
    const name = document.createElement("td");
    const sw = document.createElement("span"); sw.className = "swatch"; sw.style.backgroundColor = ph.color;
    name.append(sw, document.createTextNode(ph.text));
    const ids = document.createElement("td"); ids.textContent = ph.entities.join(", ") || "–";
    const score = document.createElement("td"); score.textContent = ph.score === null ? "–" : ph.score.toFixed(2);
    tr.append(name, ids, score); body.appendChild(tr);
  }
  t.appendChild(body); return t;
}

function renderPanel(p, started) {
  const div = document.createElement("div"); div.className = "panel"; div.dataset.outcome = p.outcome;
  div.dataset.segmenter = p.segmenter;
  const h = document.createElement("h3");
  h.textContent = `${p.system} on ${p.segmenter}'s ${p.entities} entities · ${p.seconds.toFixed(2)} s`;
  const text = phraseText(p);
  const fig = figure(p.overlay, "grounding (click a phrase to show only its mask)");
  const img = fig.querySelector("img"); img.className = "overlay";
  img.addEventListener("load", () => { if (!div.dataset.ms) div.dataset.ms = Math.round(performance.now() - started); }, { once: true });
  text.addEventListener("click", (ev) => {
    const span = ev.target.closest(".phrase"); if (!span) return;
    const on = !span.classList.contains("active");
    for (const s of text.querySelectorAll(".phrase")) s.classList.remove("active");
    if (on) span.classList.add("active");
    img.src = `/api/outcome/${p.outcome}/overlay.png` + (on ? `?only=${span.dataset.index}` : "");
  });
  const links = document.createElement("p"); links.className = "downloads";
  links.innerHTML = `<a href="/api/outcome/${p.outcome}/grounding.json" download>grounding.json</a>` +
    `<a href="/api/outcome/${p.outcome}/overlay.png?download=1" download>overlay.png</a>`;
  div.append(h, text, fig, phraseTable(p), links);
  if (p.warnings.length) { const w = document.createElement("p"); w.className = "warnings"; w.textContent = p.warnings.join("\n"); div.appendChild(w); }
  return div;
}

async function ground() {
  if (!state.picture) throw new Error("upload an image or generate a scene first");
  const started = performance.now();
  const m = mode();
  const body = { picture: state.picture.picture, segmenters: segmenters(), mode: m, text: $("text").value,
                 threshold: parseFloat($("threshold").value), system: m === "refer" ? $("system").value : undefined };
  if (m === "caption" && !body.text.trim()) throw new Error("type a caption first (or choose “describe the image”)");
  if (m === "refer" && !body.text.trim()) throw new Error("type a referring expression first");
  const shown = new Set([...document.querySelectorAll("figure.entities")].map((f) => f.dataset.segmenter));
  if (!segmenters().every((s) => shown.has(s))) await showEntities();
  busy(m === "describe" ? "describing and grounding…" : "grounding…");
  const r = await api("/api/ground", body);
  state.last = body;
  const results = $("results");
  const row = document.createElement("div"); row.className = "pictures";
  for (const p of r.panels) row.appendChild(renderPanel(p, started));
  results.replaceChildren(row);
  idle(`grounded on ${r.panels.map((p) => p.segmenter).join(" and ")} in ${((performance.now() - started) / 1000).toFixed(2)} s`);
}

function guard(fn) { return (...args) => fn(...args).catch(fail); }

$("upload").addEventListener("change", guard(async () => {
  const file = $("upload").files[0]; if (!file) return;
  busy(`uploading ${file.name}…`);
  const form = new FormData(); form.append("image", file);
  await setPicture(await api("/api/upload", form));
}));
$("scene-button").addEventListener("click", guard(async () => {
  busy("generating a ShapesWorld scene…");
  await setPicture(await api("/api/scene", { seed: parseInt($("scene-seed").value || "0", 10), size: $("scene-size").value }));
}));
for (const id of ["segmenter", "segmenter-b"]) $(id).addEventListener("change", guard(async () => { if (state.picture) await showEntities(); }));
for (const r of document.querySelectorAll("input[name=mode]")) r.addEventListener("change", syncMode);
$("threshold").addEventListener("input", () => { $("threshold-value").textContent = parseFloat($("threshold").value).toFixed(2); });
$("threshold").addEventListener("change", guard(async () => { if (state.last) await ground(); }));
$("ground-button").addEventListener("click", guard(ground));
init().catch(fail);
