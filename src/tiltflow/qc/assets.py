"""Style sheet and script of the QC report (inlined into the one HTML file; no network access)."""

CSS = """
:root { --ok: #1b7f3b; --bad: #b00020; --warn: #a15c00; --line: #d0d4da; --muted: #5f6670;
        --bg-bad: #fdecee; --bg-warn: #fff4e0; --accent: #1f5fa8; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
       color: #1d2228; background: #fff; }
header.bar { position: sticky; top: 0; z-index: 5; display: flex; gap: 12px; align-items: center;
       flex-wrap: wrap; padding: 8px 16px; background: #f3f5f8; border-bottom: 1px solid var(--line); }
header.bar .brand { font-weight: 600; }
header.bar select { max-width: 16em; }
main { max-width: 1180px; margin: 0 auto; padding: 8px 16px 48px; }
h1 { font-size: 22px; margin: 16px 0 4px; }
h2 { font-size: 17px; margin: 26px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 3px; }
h3 { font-size: 15px; margin: 0 0 4px; }
a { color: var(--accent); }
.muted { color: var(--muted); }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px;
         font-weight: 600; color: #fff; background: var(--ok); vertical-align: middle; }
.badge.failed { background: var(--bad); }
.badge.flagged { background: var(--warn); }
.flag { display: inline-block; white-space: nowrap; margin: 1px 3px 1px 0; padding: 0 6px; border-radius: 8px;
        font-size: 12px; background: var(--bg-warn); color: #6b3d00; border: 1px solid #f0c98a; }
.flag.bad { background: var(--bg-bad); color: var(--bad); border-color: #f3b2bb; }
.attention { border: 1px solid #f0c98a; background: #fffaf0; border-radius: 6px; padding: 8px 14px; }
.attention li { margin: 3px 0; }
.allgood { border: 1px solid #a9d8b5; background: #f1faf3; border-radius: 6px; padding: 8px 14px; }
.controls { display: flex; gap: 14px; align-items: center; flex-wrap: wrap; margin: 6px 0 8px; }
.controls input[type=search] { width: 22em; padding: 4px 8px; }
table.data { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums;
             font-size: 13px; }
table.data th, table.data td { border-bottom: 1px solid var(--line); padding: 4px 6px;
        text-align: right; white-space: nowrap; }
table.data th:first-child, table.data td:first-child,
table.data th.text, table.data td.text { text-align: left; }
table.data td.wrap { white-space: normal; }
table.data thead th { position: sticky; top: 41px; background: #eef1f5; font-weight: 600;
        cursor: pointer; user-select: none; }
table.data thead th .unit { font-weight: 400; color: var(--muted); }
table.data thead th[aria-sort=ascending]::after { content: " \\25B2"; font-size: 10px; }
table.data thead th[aria-sort=descending]::after { content: " \\25BC"; font-size: 10px; }
table.data tbody tr:hover { background: #f6f8fb; }
table.data tr.failed td:first-child { border-left: 4px solid var(--bad); }
table.data tr.flagged td:first-child { border-left: 4px solid var(--warn); }
table.data tr.ok td:first-child { border-left: 4px solid transparent; }
table.kv { border-collapse: collapse; }
table.kv th { text-align: left; font-weight: 500; color: var(--muted); padding: 2px 14px 2px 0;
        white-space: nowrap;
        vertical-align: top; }
table.kv td { padding: 2px 14px 2px 0; font-variant-numeric: tabular-nums; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(330px, 1fr)); gap: 10px 26px; }
.sheet { display: grid; grid-template-columns: 1fr; gap: 22px; margin-top: 12px; }
.sheet.two { grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); }
figure { margin: 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eceef1; }
figcaption { color: var(--muted); font-size: 13px; max-width: 75em; margin-top: 3px; }
.na { color: var(--muted); border: 1px dashed var(--line); padding: 4px 14px; margin-top: 16px; }
.na p { margin: 6px 0; }
.pager { display: flex; gap: 12px; align-items: center; }
.reasons { margin: 6px 0 0 0; padding-left: 20px; }
.reasons li { color: var(--bad); }
.reasons li.warn { color: #7a4500; }
.hist { display: flex; flex-wrap: wrap; gap: 12px; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
@media print { header.bar { display: none; } }
"""

JS = r"""
(function () {
  "use strict";
  var overview = document.getElementById("overview");
  var page = document.getElementById("tomogram");
  var picker = document.getElementById("picker");
  var table = document.getElementById("tomograms");
  var names = JSON.parse(document.getElementById("names").textContent);
  var baseTitle = document.title;

  function show(name) {
    if (name && document.getElementById("tpl-" + name)) {
      var tpl = document.getElementById("tpl-" + name);
      page.innerHTML = "";
      page.appendChild(tpl.content.cloneNode(true));
      overview.hidden = true;
      page.hidden = false;
      picker.value = name;
      document.title = name + " \u2014 tiltflow QC";
      window.scrollTo(0, 0);
    } else {
      page.hidden = true;
      page.innerHTML = "";
      overview.hidden = false;
      picker.value = "";
      document.title = baseTitle;
    }
  }
  function route() {
    var h = decodeURIComponent((location.hash || "").replace(/^#/, ""));
    show(h.indexOf("t=") === 0 ? h.slice(2) : null);
  }
  function go(name) {
    var target = name ? "#t=" + encodeURIComponent(name) : "#overview";
    if (location.hash !== target) {
      try { location.hash = target; return; } catch (e) { /* no history: show directly */ }
    }
    show(name);
  }
  document.addEventListener("click", function (ev) {
    var a = ev.target.closest ? ev.target.closest("a[data-go]") : null;
    if (!a) return;
    ev.preventDefault();
    go(a.getAttribute("data-go"));
  });
  picker.addEventListener("change", function () { go(picker.value); });
  window.addEventListener("hashchange", route);

  // overview table: sort by a column (numbers numerically, missing values last), filter
  function key(td, type) {
    var v = td.getAttribute("data-sort");
    if (v === null) v = td.textContent.trim();
    if (type === "num") { var x = parseFloat(v); return isNaN(x) ? null : x; }
    return v.toLowerCase();
  }
  function sortBy(th) {
    var idx = Array.prototype.indexOf.call(th.parentNode.children, th);
    var type = th.getAttribute("data-type") || "text";
    var asc = th.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(th.parentNode.children, function (o) { o.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.forEach(function (r, i) { r._i = i; });
    rows.sort(function (a, b) {
      var x = key(a.cells[idx], type), y = key(b.cells[idx], type);
      if (x === y) return a._i - b._i;
      if (x === null) return 1;
      if (y === null) return -1;
      return (x < y ? -1 : 1) * (asc ? 1 : -1);
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
    th.setAttribute("tabindex", "0");
    th.addEventListener("click", function () { sortBy(th); });
    th.addEventListener("keydown", function (ev) { if (ev.key === "Enter") sortBy(th); });
  });
  var filter = document.getElementById("filter");
  var only = document.getElementById("only-attention");
  var count = document.getElementById("count");
  function applyFilter() {
    var q = filter.value.trim().toLowerCase();
    var shown = 0;
    Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
      var hit = (!q || r.getAttribute("data-search").indexOf(q) >= 0) &&
                (!only.checked || r.className !== "ok");
      r.hidden = !hit;
      if (hit) shown += 1;
    });
    count.textContent = shown + " of " + names.length + " shown";
  }
  filter.addEventListener("input", applyFilter);
  only.addEventListener("change", applyFilter);
  applyFilter();
  route();
})();
"""
