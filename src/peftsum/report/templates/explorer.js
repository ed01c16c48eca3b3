"use strict";
// The explorer's behaviour: the data sits in the page as JSON (peftsum.explorer); this builds
// the table from it, keeps sort and filters in `state`, and fills the detail dialog.
const DATA = JSON.parse(document.getElementById("data").textContent);
const $ = (id) => document.getElementById(id);
const state = { measure: DATA.measures[0].key, sortKey: "index", descending: false, shown: [] };
// ROUGE scores per article show one decimal; lengths are whole numbers.
const ROUGE = new Set(DATA.measures.filter((m) => m.rouge).map((m) => m.key));

DATA.articles.forEach((article, index) => { article.index = index + 1; });

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "style") node.style.cssText = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function value(article, system, measure = state.measure) {
  const output = article.outputs[system];
  return output && output[measure] != null ? output[measure] : null;
}

function formatted(number, measure) {
  if (number == null) return "—";
  return ROUGE.has(measure) ? number.toFixed(1) : String(number);
}

// Columns: fixed ones, then one per system showing the chosen measure.
function columns() {
  const fixed = [
    { key: "index", header: "#", numeric: true, get: (a) => a.index },
    { key: "id", header: "Id", get: (a) => a.id },
    { key: "article", header: "Article", get: (a) => a.article },
    { key: "reference", header: "Reference", get: (a) => a.reference },
  ];
  const systems = DATA.systems.map((s) => ({
    key: "system:" + s.label, header: s.label, numeric: true, system: s, get: (a) => value(a, s.label),
  }));
  const delta = beats() ? [{
    key: "delta", header: `${beats().a} − ${beats().b}`, numeric: true,
    get: (a) => difference(a, beats()),
  }] : [];
  return [...fixed, ...delta, ...systems];
}

function beats() {
  const a = $("beats-a").value, b = $("beats-b").value;
  return a && b && a !== b ? { a, b, x: Number($("beats-x").value) || 0 } : null;
}

function difference(article, pair) {
  const x = value(article, pair.a), y = value(article, pair.b);
  return x == null || y == null ? null : x - y;
}

function matches(article) {
  const query = $("search").value.trim().toLowerCase();
  if (query) {
    const texts = [article.id, article.article, article.reference,
      ...Object.values(article.outputs).map((o) => (o ? o.text : ""))];
    if (!texts.some((t) => t.toLowerCase().includes(query))) return false;
  }
  const pair = beats();
  if (pair) {
    const diff = difference(article, pair);
    if (diff == null || !(diff > pair.x)) return false;
  }
  return true;
}

function compare(a, b, get) {
  const x = get(a), y = get(b);
  if (x == null && y == null) return 0;
  if (x == null) return 1;  // missing values last, whichever the direction
  if (y == null) return -1;
  const order = typeof x === "string" ? x.localeCompare(y, undefined, { numeric: true }) : x - y;
  return state.descending ? -order : order;
}

function renderHeader(cols) {
  const row = $("header");
  row.replaceChildren();
  for (const col of cols) {
    const sorted = state.sortKey === col.key;
    const th = el("th", {
      "data-key": col.key, class: col.numeric ? "num" : "", scope: "col",
      "aria-sort": sorted ? (state.descending ? "descending" : "ascending") : "none",
    });
    if (col.system) th.append(el("span", { class: "swatch", style: `background:${col.system.color}` }));
    th.append(col.header, el("span", { class: "arrow" }, sorted ? (state.descending ? " ▼" : " ▲") : ""));
    th.addEventListener("click", () => sortBy(col.key));
    row.append(th);
  }
}

function systemCell(article, col) {
  const output = article.outputs[col.system.label];
  const td = el("td", { class: "num system" });
  if (!output) return td.append("—"), td;
  td.append(el("span", { class: "score" }, formatted(output[state.measure], state.measure)));
  if (output.hit_max) td.append(el("span", { class: "cut", title: "cut off at max_new_tokens" }, " ✂"));
  if (output.gen_tokens != null && state.measure !== "gen_tokens") {
    td.append(el("span", { class: "len" }, `${output.gen_tokens} tok`));
  }
  td.append(el("span", { class: "text" }, output.text));
  return td;
}

function renderRows(cols) {
  const body = $("rows");
  body.replaceChildren();
  for (const article of state.shown) {
    const tr = el("tr", { "data-id": article.id, tabindex: "0" });
    for (const col of cols) {
      if (col.system) { tr.append(systemCell(article, col)); continue; }
      const text = col.key === "delta" ? formatted(col.get(article), state.measure) : String(col.get(article));
      // Long texts sit in a clamped box: a clamped cell itself would leave the table layout.
      const content = col.numeric || col.key === "id" ? text : el("div", { class: "clamp" }, text);
      tr.append(el("td", { class: col.numeric ? "num" : col.key }, content));
    }
    tr.addEventListener("click", () => openDetail(article.id));
    tr.addEventListener("keydown", (event) => { if (event.key === "Enter") openDetail(article.id); });
    body.append(tr);
  }
  $("count").value = `${state.shown.length} of ${DATA.articles.length} articles`;
}

function render() {
  state.measure = $("measure").value;
  const cols = columns();
  if (!cols.some((c) => c.key === state.sortKey)) state.sortKey = "index";
  const sortCol = cols.find((c) => c.key === state.sortKey);
  state.shown = DATA.articles.filter(matches).sort((a, b) => compare(a, b, sortCol.get) || a.index - b.index);
  document.body.classList.toggle("texts", $("texts").checked);
  renderHeader(cols);
  renderRows(cols);
}

function sortBy(key) {
  // A new column sorts scores best first, text and the index ascending.
  state.descending = state.sortKey === key ? !state.descending : key.startsWith("system:") || key === "delta";
  state.sortKey = key;
  render();
}

function openDetail(id) {
  const article = DATA.articles.find((a) => a.id === id);
  if (!article) return;
  state.detail = id;
  $("detail-title").textContent = `Article ${article.index} of ${DATA.articles.length}: ${article.id}`;
  $("detail-article").textContent = article.article;
  const cards = [el("div", { class: "card reference" }, el("h4", {}, "Reference"), el("p", {}, article.reference))];
  for (const system of DATA.systems) {
    const output = article.outputs[system.label];
    const head = el("h4", { style: `border-color:${system.color}` }, system.label);
    if (output && output.hit_max) head.append(el("span", { class: "cut", title: "cut off at max_new_tokens" }, " ✂ cut off"));
    const scores = el("dl", { class: "scores" });
    for (const m of DATA.measures) {
      scores.append(el("dt", {}, m.header), el("dd", {}, formatted(value(article, system.label, m.key), m.key)));
    }
    cards.push(el("div", { class: "card", "data-system": system.label }, head,
      el("p", {}, output ? output.text : "no output"), scores));
  }
  $("detail-systems").replaceChildren(...cards);
  if (!$("detail").open) $("detail").showModal();
  history.replaceState(null, "", "#id=" + encodeURIComponent(id));
}

function step(offset) {
  const ids = state.shown.map((a) => a.id);
  const at = ids.indexOf(state.detail);
  if (at >= 0 && ids[at + offset] !== undefined) openDetail(ids[at + offset]);
}

function setup() {
  for (const m of DATA.measures) $("measure").append(el("option", { value: m.key }, m.header));
  for (const s of DATA.systems) {
    $("beats-a").append(el("option", { value: s.label }, s.label));
    $("beats-b").append(el("option", { value: s.label }, s.label));
  }
  for (const id of ["measure", "search", "beats-a", "beats-b", "beats-x", "texts"]) {
    $(id).addEventListener("input", render);
  }
  $("close").addEventListener("click", () => $("detail").close());
  $("previous").addEventListener("click", () => step(-1));
  $("next").addEventListener("click", () => step(1));
  $("detail").addEventListener("keydown", (event) => {
    if (event.key === "ArrowLeft") step(-1);
    if (event.key === "ArrowRight") step(1);
  });
  $("detail").addEventListener("close", () => history.replaceState(null, "", location.pathname));
  window.addEventListener("hashchange", openLinked);
  render();
  openLinked();
}

// explorer.html#id=a3 (the report's examples link so) opens that article.
function openLinked() {
  const linked = new URLSearchParams(location.hash.slice(1)).get("id");
  if (linked) openDetail(linked);
}

setup();
