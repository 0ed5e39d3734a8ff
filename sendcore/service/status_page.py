"""The status page served at ``GET /``: one HTML document, no build step, refreshed from ``GET /v1/status``.

The page holds no data itself (it is served without a token); its script
reads the token from the URL fragment (``/#token=sc_...``, never sent to the
server nor logged), keeps it in ``sessionStorage`` and polls ``/v1/status``
every two seconds. Every count is an element with an ``id`` and a
``data-count`` attribute, so a test (or a scraper) can read what it shows.
"""

from __future__ import annotations

__all__ = ["PAGE"]

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sendcore status</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #222; }
  h1 { font-size: 1.3rem; margin: 0 0 .3rem; }
  h2 { font-size: 1rem; margin: 1.2rem 0 .4rem; }
  .cards { display: flex; gap: .8rem; flex-wrap: wrap; }
  .card { border: 1px solid #ccc; border-radius: 6px; padding: .5rem .9rem; min-width: 7rem; }
  .card b { display: block; font-size: 1.4rem; }
  table { border-collapse: collapse; }
  td, th { border-bottom: 1px solid #eee; padding: .2rem .7rem; text-align: left; }
  td.n { text-align: right; font-variant-numeric: tabular-nums; }
  #error { color: #b00; }
</style>
</head>
<body data-loaded="0">
<h1>sendcore</h1>
<div id="updated">loading...</div>
<div id="error"></div>
<h2>Pending by state</h2>
<div class="cards">
  <div class="card">total<b id="pending-total" data-count="">-</b></div>
  <div class="card">scheduled<b id="pending-scheduled" data-count="">-</b></div>
  <div class="card">queued<b id="pending-queued" data-count="">-</b></div>
  <div class="card">in flight<b id="pending-in_flight" data-count="">-</b></div>
</div>
<h2>Final outcomes</h2>
<div class="cards" id="final"></div>
<h2>Sends in the last minute, by channel</h2>
<table><thead><tr><th>channel</th><th>sent</th></tr></thead><tbody id="per-minute"></tbody></table>
<h2>Routes</h2>
<table><thead><tr><th>route</th><th>backlog</th><th>rate/s</th><th>held</th></tr></thead>
<tbody id="routes"></tbody></table>
<h2>Latest outcomes</h2>
<table><thead><tr><th>at</th><th>send</th><th>status</th><th>reason</th><th>channel</th></tr></thead>
<tbody id="latest"></tbody></table>
<script>
"use strict";
(function () {
  var m = /[#&]token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem("sendcore-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname);  // the token leaves the address bar
  }
  var token = sessionStorage.getItem("sendcore-token");
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  function counted(tag, n, id, cls) {
    var e = el(tag, n.toLocaleString("en"), cls);
    if (id) e.id = id;
    e.dataset.count = String(n);
    return e;
  }
  function count(id, n) {
    var e = document.getElementById(id);
    e.textContent = n.toLocaleString("en");
    e.dataset.count = String(n);
  }
  function rows(id, list, cells) {
    var body = document.getElementById(id);
    body.replaceChildren();
    list.forEach(function (item) {
      var tr = document.createElement("tr");
      cells(item).forEach(function (c) { tr.appendChild(c); });
      body.appendChild(tr);
    });
  }
  function render(s) {
    ["total", "scheduled", "queued", "in_flight"].forEach(function (k) { count("pending-" + k, s.pending[k]); });
    var final = document.getElementById("final");
    final.replaceChildren();
    Object.keys(s.final).sort().forEach(function (k) {
      var card = el("div", k, "card");
      card.appendChild(counted("b", s.final[k], "final-" + k));
      final.appendChild(card);
    });
    rows("per-minute", Object.keys(s.per_minute).sort(), function (ch) {
      return [el("td", ch), counted("td", s.per_minute[ch], "per-minute-" + ch, "n")];
    });
    rows("routes", s.routes, function (r) {
      var n = counted("td", r.queued, null, "n");
      n.dataset.route = r.route;
      return [el("td", r.route), n, el("td", r.rate ? r.rate.toFixed(1) : "unlimited", "n"),
              el("td", r.blocked ? "yes" : "")];
    });
    rows("latest", s.latest, function (o) {
      return [el("td", new Date(o.at * 1000).toISOString().slice(11, 23)), el("td", o.send_id),
              el("td", o.status), el("td", o.reason), el("td", o.channel)];
    });
    document.getElementById("updated").textContent =
      "updated " + new Date().toISOString() + ", outcome log at seq " + s.outcome_seq;
    document.getElementById("error").textContent = "";
    document.body.dataset.loaded = "1";
  }
  function refresh() {
    var headers = token ? { "Authorization": "Bearer " + token } : {};
    fetch("/v1/status", { headers: headers, cache: "no-store" })
      .then(function (r) {
        if (!r.ok) return r.json().then(function (p) { throw new Error(p.detail || r.status); });
        return r.json();
      })
      .then(render)
      .catch(function (e) {
        document.getElementById("error").textContent = "cannot read /v1/status: " + e.message;
        document.body.dataset.error = "1";
      });
  }
  refresh();
  setInterval(refresh, 2000);
})();
</script>
</body>
</html>
"""
