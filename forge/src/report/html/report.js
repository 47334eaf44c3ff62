// forge report.html: renders the run's data (the JSON elements above) into
// the page. Text goes in with textContent only, never as HTML.
"use strict";
(function () {
  var PAGE = 50;
  var SVG = "http://www.w3.org/2000/svg";

  function el(tag, attrs, kids) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "cls") node.className = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (kids || []).forEach(function (kid) { if (kid) node.appendChild(kid); });
    return node;
  }
  function svg(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    return node;
  }
  function ms(v) { return v == null ? "" : v < 1 ? v.toFixed(3) + " ms" : v < 1000 ? v.toFixed(1) + " ms" : (v / 1000).toFixed(2) + " s"; }
  function usd(v) { return v == null ? "" : "$" + v.toFixed(6); }
  function pct(v) { return (100 * v).toFixed(1) + "%"; }
  function badge(status) { return el("span", { cls: "badge " + status, text: status }); }
  function stat(value, label) { return el("div", { cls: "stat" }, [el("b", { text: String(value) }), el("span", { text: label })]); }
  function cost(row) {
    var total = null;
    row.r.forEach(function (run) {
      [run.u, run.ju].forEach(function (s) { if (s && s.cost_usd != null) total = (total || 0) + s.cost_usd; });
    });
    return total;
  }
  function rowMs(row) { return row.r.reduce(function (t, run) { return t + run.ms; }, 0); }
  function answers(row) { return row.r.map(function (run) { return run.a; }).join(" | "); }

  // Word-level diff: the words of `a` and `b` outside their longest common
  // subsequence (compared case- and punctuation-insensitively).
  function words(text) { return text.split(/(\s+)/).filter(function (w) { return w !== ""; }); }
  function norm(w) { return w.toLowerCase().replace(/[^\p{L}\p{N}]+/gu, ""); }
  function diff(a, b) {
    var wa = words(a), wb = words(b);
    var ia = [], ib = [];
    wa.forEach(function (w, k) { if (!/^\s+$/.test(w)) ia.push(k); });
    wb.forEach(function (w, k) { if (!/^\s+$/.test(w)) ib.push(k); });
    var n = ia.length, m = ib.length;
    var keepA = new Uint8Array(wa.length), keepB = new Uint8Array(wb.length);
    if (n * m > 4000000) return null;
    var na = ia.map(function (k) { return norm(wa[k]); }), nb = ib.map(function (k) { return norm(wb[k]); });
    var dp = new Uint32Array((n + 1) * (m + 1));
    for (var i = n - 1; i >= 0; i--) for (var j = m - 1; j >= 0; j--)
      dp[i * (m + 1) + j] = na[i] === nb[j] ? dp[(i + 1) * (m + 1) + j + 1] + 1
        : Math.max(dp[(i + 1) * (m + 1) + j], dp[i * (m + 1) + j + 1]);
    for (i = 0, j = 0; i < n && j < m;) {
      if (na[i] === nb[j]) { keepA[ia[i++]] = 1; keepB[ib[j++]] = 1; }
      else if (dp[(i + 1) * (m + 1) + j] >= dp[i * (m + 1) + j + 1]) i++;
      else j++;
    }
    return [marked(wa, keepA, "diff-add"), marked(wb, keepB, "diff-del")];
  }
  function marked(ws, keep, cls) {
    var pre = el("pre");
    ws.forEach(function (w, k) {
      if (keep[k] || /^\s+$/.test(w)) pre.appendChild(document.createTextNode(w));
      else pre.appendChild(el("mark", { cls: cls, text: w }));
    });
    return pre;
  }

  function histogram(lat) {
    var W = 320, H = 90, n = lat.bins.length, top = Math.max.apply(null, lat.bins) || 1;
    var box = svg("svg", { "class": "hist", width: W, height: H + 16, viewBox: "0 0 " + W + " " + (H + 16), role: "img" });
    var step = (lat.max - lat.min) / n;
    lat.bins.forEach(function (count, k) {
      var h = Math.round((H - 4) * count / top), bar = svg("rect", { x: k * W / n + 1, y: H - h, width: W / n - 2, height: h });
      var title = svg("title", {});
      title.textContent = ms(lat.min + k * step) + " to " + ms(lat.min + (k + 1) * step) + ": " + count + " runs";
      bar.appendChild(title);
      box.appendChild(bar);
    });
    [[lat.min, 0, "start"], [lat.max, W, "end"]].forEach(function (t) {
      var text = svg("text", { x: t[1], y: H + 12, "text-anchor": t[2] });
      text.textContent = ms(t[0]);
      box.appendChild(text);
    });
    return box;
  }

  function suiteStats(s) {
    var box = el("div", { cls: "stats" }, [stat(s.passed, "passed"), stat(s.failed, "failed"), stat(s.skipped, "skipped")]);
    if (s.latency) {
      box.appendChild(stat(ms(s.latency.p50), "p50"));
      box.appendChild(stat(ms(s.latency.p95), "p95"));
      box.appendChild(stat(ms(s.latency.p99), "p99"));
      box.appendChild(el("div", { cls: "stat" }, [histogram(s.latency), el("span", { text: "latency of the runs" })]));
    }
    var u = s.usage || {};
    ["runner", "judge"].forEach(function (side) {
      if (u[side]) box.appendChild(stat(u[side].total_tokens, side + " tokens (" + u[side].prompt_tokens + " in, " + u[side].completion_tokens + " out)"));
    });
    if (u.cost_usd != null) box.appendChild(stat(usd(u.cost_usd), "cost"));
    return box;
  }

  function scoreboard(suites) {
    var head = ["system", "passed", "failed", "skipped", "pass rate", "p50", "p95", "p99", "tokens", "cost"];
    var table = el("table", { cls: "scoreboard" }, [el("tr", {}, head.map(function (h) { return el("th", { text: h }); }))]);
    suites.forEach(function (s) {
      var u = s.usage || {}, lat = s.latency || {}, run = s.passed + s.failed;
      var tokens = (u.runner ? u.runner.total_tokens : 0) + (u.judge ? u.judge.total_tokens : 0);
      var cells = [s.system, s.passed, s.failed, s.skipped, run ? pct(s.passed / run) : "", ms(lat.p50), ms(lat.p95), ms(lat.p99), tokens || "", usd(u.cost_usd)];
      table.appendChild(el("tr", {}, cells.map(function (c, k) { return el("td", { cls: k ? "num" : "", text: String(c) }); })));
    });
    return table;
  }

  function checksTable(checks, label) {
    var table = el("table", { cls: "checks" }, [el("tr", {}, ["check", "verdict", "score", "detail / reason"].map(function (h) { return el("th", { text: h }); }))]);
    checks.forEach(function (c) {
      var why = [c.detail, c.reason].filter(Boolean).join("\n");
      if (c.scores) why += (why ? "\n" : "") + JSON.stringify(c.scores);
      table.appendChild(el("tr", {}, [
        el("td", { text: c.check }), el("td", { cls: c.passed ? "ok" : "ko", text: c.passed ? "passed" : "failed" }),
        el("td", { cls: "num", text: c.score == null ? "" : String(+c.score.toFixed(4)) }), el("td", {}, [el("pre", { text: why })])]));
    });
    return el("div", {}, [el("h3", { text: label }), table]);
  }

  function spend(s) { return s.total_tokens + " tokens (" + s.prompt_tokens + " in, " + s.completion_tokens + " out)" + (s.cost_usd != null ? ", " + usd(s.cost_usd) : ""); }

  function runBlock(row, run, k) {
    var label = row.r.length > 1 ? "run " + (k + 1) + ": " : "";
    var parts = [el("h3", { text: label + (run.p ? "passed" : "failed") + ", " + ms(run.ms) })];
    var d = row.g != null ? diff(run.a, row.g) : null;
    var answer = d ? d[0] : el("pre", { text: run.a });
    var truth = d ? d[1] : el("pre", { cls: "muted", text: row.g == null ? "(none)" : row.g });
    parts.push(el("div", { cls: "pair" }, [el("div", { cls: "answer" }, [el("h4", { text: "answer" }), answer]),
      el("div", { cls: "truth" }, [el("h4", { text: "ground truth" }), truth])]));
    if (run.c && run.c.length) parts.push(checksTable(run.c, label + "checks"));
    if (run.u) parts.push(el("div", { cls: "muted", text: "runner: " + spend(run.u) }));
    if (run.ju) parts.push(el("div", { cls: "muted", text: "judge: " + spend(run.ju) }));
    if (run.ag) parts.push(el("div", {}, [el("h3", { text: label + "agentic data" }), el("pre", { text: JSON.stringify(run.ag, null, 2) })]));
    return el("div", { cls: "run" }, parts);
  }

  function detail(row, system) {
    var parts = [];
    if (system) parts.push(el("h3", { text: "system " + system + ": " + row.t }));
    if (row.l) parts.push(el("div", { cls: "muted", text: "at " + row.l }));
    parts.push(el("h3", { text: "query" }), el("pre", { cls: "query", text: row.q == null ? "(not in the report)" : row.q }));
    if (row.m) parts.push(el("h3", { text: "why it failed" }), el("pre", { cls: "error", text: row.m }));
    if (row.b) parts.push(el("h3", { text: "since baseline" }), el("pre", { text: row.b }));
    row.r.forEach(function (run, k) { parts.push(runBlock(row, run, k)); });
    if (row.c && row.c.length) parts.push(checksTable(row.c, "checks on the runs together"));
    if (row.rep) parts.push(el("div", { text: "repeats: " + row.rep.passes + " of " + row.rep.runs + " runs passed (" + pct(row.rep.pass_rate) + ", 95% CI " + pct(row.rep.pass_rate_ci_low) + " to " + pct(row.rep.pass_rate_ci_high) + ")" }));
    if (row.ga) parts.push(el("h3", { text: "expected agentic data" }), el("pre", { text: JSON.stringify(row.ga, null, 2) }));
    return el("div", { cls: "detail-body" }, parts);
  }

  // One table item: a batch, or with several systems the same batch of each.
  function items(suites) {
    var byKey = new Map(), list = [];
    suites.forEach(function (s, k) {
      var prefix = s.name + "::" + (s.system != null && suites.length > 1 ? s.system + "::" : "");
      s.batches.forEach(function (row) {
        var key = row.t.indexOf(prefix) === 0 ? row.t.slice(prefix.length) : row.t;
        var item = byKey.get(key);
        if (!item) { item = { key: key, cells: suites.map(function () { return null; }) }; byKey.set(key, item); list.push(item); }
        item.cells[k] = row;
      });
    });
    list.forEach(function (item) {
      var sts = item.cells.filter(Boolean).map(function (r) { return r.s; });
      item.st = sts.indexOf("fail") >= 0 ? "fail" : sts.every(function (s) { return s === "skip"; }) ? "skip" : "pass";
      item.base = item.cells.filter(Boolean).map(function (r) { return r.b || ""; }).filter(Boolean).join("; ");
    });
    return list;
  }
  function haystack(item) {
    if (item.hay == null) {
      item.hay = [item.key].concat(item.cells.filter(Boolean).map(function (r) { return [r.t, r.q || "", answers(r)].join("\n"); })).join("\n").toLowerCase();
    }
    return item.hay;
  }

  function batchTable(suites) {
    var all = items(suites), multi = suites.length > 1, open = new Set(), page = 0, shown = all;
    var hasBase = all.some(function (i) { return i.base; });
    var hasCost = suites.some(function (s) { return s.usage && s.usage.cost_usd != null; });
    var count = function (st) { return all.filter(function (i) { return i.st === st; }).length; };
    var filter = el("select", { cls: "filter-status", "aria-label": "show" }, [
      el("option", { value: "all", text: "all batches (" + all.length + ")" }), el("option", { value: "fail", text: "failed (" + count("fail") + ")" }),
      el("option", { value: "pass", text: "passed (" + count("pass") + ")" }), el("option", { value: "skip", text: "skipped (" + count("skip") + ")" })]);
    var search = el("input", { cls: "search", type: "search", placeholder: "search test name, query, answer", "aria-label": "search" });
    var prev = el("button", { cls: "prev", text: "previous" }), next = el("button", { cls: "next", text: "next" });
    var info = el("span", { cls: "page-info" });
    var table = el("table", { cls: multi ? "batches systems" : "batches" });
    var head = multi ? ["", "batch"].concat(suites.map(function (s) { return s.system; })) : ["", "test", "answer", "time"].concat(hasCost ? ["cost"] : []);
    if (hasBase) head.push("since baseline");
    var columns = head.length;
    function apply() {
      var st = filter.value, q = search.value.trim().toLowerCase();
      shown = all.filter(function (i) { return (st === "all" || i.st === st) && (!q || haystack(i).indexOf(q) >= 0); });
      page = 0;
      draw();
    }
    function cell(row) {
      if (!row) return el("td", { cls: "cell muted", text: "not run" });
      var c = cost(row);
      return el("td", { cls: "cell" }, [badge(row.s), el("span", { cls: "muted", text: " " + ms(rowMs(row)) + (c != null ? " " + usd(c) : "") }),
        el("div", { cls: "snip", text: answers(row).slice(0, 160) })]);
    }
    function line(item) {
      var row = item.cells[0], tr;
      if (multi) tr = el("tr", { cls: "batch" }, [el("td", {}, [badge(item.st)]), el("td", { text: item.key })].concat(item.cells.map(cell)));
      else tr = el("tr", { cls: "batch" }, [el("td", {}, [badge(row.s)]), el("td", { cls: "test", text: row.t }), el("td", { cls: "snip", text: answers(row).slice(0, 300) }),
        el("td", { cls: "num", text: ms(rowMs(row)) })].concat(hasCost ? [el("td", { cls: "num", text: usd(cost(row)) })] : []));
      if (hasBase) tr.appendChild(el("td", { cls: "since", text: item.base }));
      tr.setAttribute("data-status", item.st);
      tr.addEventListener("click", function () { if (open.has(item.key)) open.delete(item.key); else open.add(item.key); draw(); });
      return tr;
    }
    function draw() {
      while (table.firstChild) table.removeChild(table.firstChild);
      table.appendChild(el("tr", {}, head.map(function (h) { return el("th", { text: h }); })));
      var pages = Math.max(1, Math.ceil(shown.length / PAGE));
      shown.slice(page * PAGE, page * PAGE + PAGE).forEach(function (item) {
        table.appendChild(line(item));
        if (open.has(item.key)) {
          var body = item.cells.map(function (row, k) { return row ? detail(row, multi ? suites[k].system : null) : null; });
          table.appendChild(el("tr", { cls: "detail" }, [el("td", { colspan: columns }, body)]));
        }
      });
      info.textContent = shown.length ? (page * PAGE + 1) + "–" + Math.min(shown.length, page * PAGE + PAGE) + " of " + shown.length + " (page " + (page + 1) + " of " + pages + ")" : "no batch matches";
      prev.disabled = page === 0;
      next.disabled = page + 1 >= pages;
    }
    filter.addEventListener("change", apply);
    search.addEventListener("input", apply);
    prev.addEventListener("click", function () { if (page > 0) { page--; draw(); } });
    next.addEventListener("click", function () { if ((page + 1) * PAGE < shown.length) { page++; draw(); } });
    apply();
    return el("div", {}, [el("div", { cls: "controls" }, [filter, search, prev, info, next]), table]);
  }

  function section(name, suites) {
    var multi = suites.length > 1;
    var box = el("section", { cls: "suite" }, [el("h2", { text: name })]);
    if (multi) box.appendChild(scoreboard(suites));
    suites.forEach(function (s) {
      if (multi) box.appendChild(el("h3", { text: "system " + s.system }));
      if (s.error) box.appendChild(el("pre", { cls: "error", text: s.error }));
      box.appendChild(suiteStats(s));
    });
    box.appendChild(batchTable(suites));
    return box;
  }

  function render() {
    var data = Array.prototype.map.call(document.querySelectorAll("script.forge-suite"), function (e) { return JSON.parse(e.textContent); });
    var run = JSON.parse(document.getElementById("forge-run").textContent);
    var head = document.getElementById("run"), main = document.getElementById("suites");
    var total = function (k) { return data.reduce(function (t, s) { return t + s[k]; }, 0); };
    head.appendChild(el("div", { cls: "stats" }, [stat(total("passed"), "passed"), stat(total("failed"), "failed"), stat(total("skipped"), "skipped"),
      stat(data.length, "suite reports"), stat(run.forge_version, "forge")]));
    if (run.interrupted) head.appendChild(el("div", { cls: "banner", text: "The run was interrupted: its reports are partial." }));
    run.load_failures.forEach(function (f) { head.appendChild(el("pre", { cls: "error", text: f.message })); });
    while (main.firstChild) main.removeChild(main.firstChild);
    // Suites sharing a name, each about one named system, go side by side.
    var groups = new Map();
    data.forEach(function (s) {
      var key = s.system != null ? "n:" + s.name : "u:" + groups.size;
      if (!groups.has(key)) groups.set(key, { name: s.name, suites: [] });
      groups.get(key).suites.push(s);
    });
    groups.forEach(function (g) { main.appendChild(section(g.name, g.suites)); });
    if (!data.length) main.appendChild(el("p", { cls: "muted", text: "No suite was reported." }));
  }
  render();
})();
