/*
 * "Paste an error" box: the ranking of `gpu-runbook explain`, run in the browser, offline.
 *
 * The specification is snippets/gpu_runbook/explain.py; this file follows it step by step and reads the
 * same index (assets/javascripts/explain-index.js, written by the build from explain_index.json). A browser
 * test compares the top three pages of both for every held-out real report. Keep the arithmetic in the same
 * order as the Python code: the scores are then the same floats.
 */
(function () {
  "use strict";

  var WORD = /[a-z0-9]+/g;
  var HEXISH = /^[0-9a-f]{8,}$/;
  var DIGITS = /^[0-9]+$/;
  var HAS_DIGIT = /[0-9]/;
  var LINE = /\r\n|\r|\n/;
  var QUOTES = { "\u2018": "'", "\u2019": "'", "\u201c": "\"", "\u201d": "\"", "\u00a0": " " };
  // unfoldPaste: the same rules as unfold_paste in explain.py.
  var ANSI = /\x1b\[[0-9;]*[A-Za-z]/g;
  var ESCAPED_BREAK = /\\+(?:r\\+n|n(?!vidia)|r)/g;
  var ESCAPED_TAB = /\\+t/g;
  var ESCAPED_QUOTE = /\\+"/g;
  var WINDOWS_PATH = /[A-Za-z]:\\/;
  var MATCH = "match", LIKELY = "likely", POSSIBLE = "possible";

  function prepare(index) {
    if (index._ready) return index;
    index._stop = new Set(index.tokenizer.stop);
    var glossary = index.tokenizer.glossary || {};
    var keys = Object.keys(glossary).sort(function (a, b) { return b.length - a.length || (a < b ? -1 : a > b ? 1 : 0); });
    index._glossary = keys.length ? new RegExp(keys.map(function (k) {
      return k.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    }).join("|"), "g") : null;
    index._postings = new Map(Object.entries(index.postings));
    index._idf = new Map(Object.entries(index.idf));
    index._signatures = index.signatures.map(function (s) {
      return { entry: s, re: new RegExp(s.pattern, s.flags.indexOf("i") >= 0 ? "i" : "") };
    });
    index._ready = true;
    return index;
  }

  function words(line, index) {
    if (index._glossary && /[^\x00-\x7f]/.test(line)) {
      line = line.replace(index._glossary, function (m) { return " " + index.tokenizer.glossary[m] + " "; });
    }
    var out = [];
    var found = line.toLowerCase().match(WORD) || [];
    for (var i = 0; i < found.length; i++) {
      var word = found[i];
      if (word.length < 2 || word.length > index.tokenizer.max_len || DIGITS.test(word) ||
          (HEXISH.test(word) && HAS_DIGIT.test(word)) || index._stop.has(word)) continue;
      if (word.length > 4 && word.endsWith("s") && !word.endsWith("ss")) word = word.slice(0, -1);
      out.push(word);
    }
    return out;
  }

  function lineTerms(lineWords) {
    var out = lineWords.slice();
    for (var i = 0; i + 1 < lineWords.length; i++) out.push(lineWords[i] + "_" + lineWords[i + 1]);
    return out;
  }

  function unfoldPaste(text) {
    text = text.replace(/[\u2018\u2019\u201c\u201d\u00a0]/g, function (c) { return QUOTES[c]; });
    if (text.indexOf("\x1b") >= 0) text = text.replace(ANSI, "");
    if (text.indexOf("\\") >= 0 && !WINDOWS_PATH.test(text)) {
      text = text.replace(ESCAPED_BREAK, "\n").replace(ESCAPED_TAB, " ").replace(ESCAPED_QUOTE, "\"");
    }
    return text;
  }

  function parseQuery(text, index) {
    text = unfoldPaste(text);
    var seen = new Set();
    var terms = [];
    var lines = text.split(LINE);
    for (var l = 0; l < lines.length; l++) {
      var lt = lineTerms(words(lines[l], index));
      for (var t = 0; t < lt.length; t++) {
        if (!seen.has(lt[t])) { seen.add(lt[t]); terms.push(lt[t]); }
      }
    }
    return { raw: text, terms: terms, keys: seen };
  }

  function coverage(keys, query) {
    if (!keys.length) return 0;
    var hits = 0;
    for (var i = 0; i < keys.length; i++) if (query.keys.has(keys[i])) hits += 1;
    return hits / keys.length;
  }

  function firstLine(text, start) {
    var begin = text.lastIndexOf("\n", start - 1) + 1;
    var end = text.indexOf("\n", start);
    var line = text.slice(begin, end >= 0 ? end : text.length).trim();
    return line.length <= 160 ? line : line.slice(0, 157) + "...";
  }

  function scorePages(query, index) {
    var params = index.params, weights = params.weights;
    var rows = index.pages.map(function (p) {
      return { page: p, string: 0, signature: 0, words: 0, reports: 0, why: [], matched: null, strong: false };
    });

    index.strings.forEach(function (entry) {
      var cov = coverage(entry.keys, query);
      if (cov < params.min_coverage) return;
      var row = rows[entry.page];
      var value = cov * entry.weight;
      if (value > row.string) { row.string = value; row.matched = entry.text; }
      if (cov >= params.match_coverage && (entry.words >= 2 || entry.keys[0].length >= 12)) row.strong = true;
      row.why.push("known error '" + entry.text + "' (" + Math.round(cov * 100) + "% of it)");
    });

    var lower = query.raw.toLowerCase();
    var rawLines = null, lowerLines = null;
    var candidates = new Map();
    index._signatures.forEach(function (sig) {
      var entry = sig.entry;
      var literals = entry.literals;
      var key = literals.join("\u0000");
      if (!candidates.has(key)) {
        var any = literals.some(function (l) { return lower.indexOf(l) >= 0; });
        if (!any) candidates.set(key, "");
        else {
          if (rawLines === null) { rawLines = query.raw.split("\n"); lowerLines = lower.split("\n"); }
          var kept = [];
          for (var i = 0; i < lowerLines.length; i++) {
            var line = lowerLines[i];
            if (literals.some(function (l) { return line.indexOf(l) >= 0; })) kept.push(rawLines[i]);
          }
          candidates.set(key, kept.join("\n"));
        }
      }
      var text = candidates.get(key);
      var found = text ? sig.re.exec(text) : null;
      if (!found) return;
      var row = rows[entry.page];
      if (entry.weight > row.signature) {
        row.signature = entry.weight;
        if (row.matched === null || !row.strong) row.matched = entry.why;
      }
      if (entry.strong) row.strong = true;
      row.why.push(entry.why + ": " + firstLine(text, found.index));
    });

    var k1 = params.k1, b = params.b, avgdl = index.avgdl;
    var norms = index.doclen.map(function (dl) { return k1 * (1 - b + b * dl / avgdl); });
    var bm25 = index.pages.map(function () { return 0; });
    var contributions = index.pages.map(function () { return []; });
    query.terms.forEach(function (term) {
      var posting = index._postings.get(term);
      if (!posting) return;
      var idf = index._idf.get(term);
      posting.forEach(function (pair) {
        var p = pair[0], tf = pair[1];
        var gain = idf * tf * (k1 + 1) / (tf + norms[p]);
        bm25[p] += gain;
        contributions[p].push([gain, term]);
      });
    });
    var best = bm25.length ? Math.max.apply(null, bm25) : 0;
    if (best > 0) {
      rows.forEach(function (row, i) {
        row.words = bm25[i] / best;
        var top = contributions[i].slice().sort(function (x, y) {
          return y[0] - x[0] || (x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0);
        }).slice(0, 6);
        if (top.length && row.words >= 0.5)
          row.why.push("words: " + top.map(function (c) { return c[1].replace(/_/g, " "); }).join(", "));
      });
    }

    var qnormSq = 0;
    query.terms.forEach(function (term) {
      var idf = index._idf.get(term);
      if (idf !== undefined) qnormSq += idf * idf;
    });
    if (qnormSq > 0) {
      var qnorm = Math.sqrt(qnormSq);
      index.reports.forEach(function (report) {
        var dot = 0;
        for (var i = 0; i < report.terms.length; i++) {
          var term = report.terms[i];
          if (query.keys.has(term)) { var idf = index._idf.get(term); dot += idf * idf; }
        }
        if (dot <= 0) return;
        var sim = dot / (qnorm * report.norm);
        var row = rows[report.page];
        if (sim > row.reports) { row.reports = sim; row.similar = report.source; }
      });
    }
    rows.forEach(function (row) {
      if (row.reports >= 0.2 && row.similar)
        row.why.push("similar report (" + Math.round(row.reports * 100) + "%): " + row.similar);
      row.score = weights.string * row.string + weights.signature * row.signature +
        weights.words * row.words + weights.reports * row.reports;
    });
    return rows;
  }

  function rank(text, index, limit) {
    prepare(index);
    limit = limit || 3;
    var rows = scorePages(parseQuery(text, index), index);
    var order = rows.map(function (_, i) { return i; });
    order.sort(function (a, b) { return rows[b].score - rows[a].score || a - b; });
    var margin = order.length > 1 ? rows[order[0]].score - rows[order[1]].score : 0;
    var likely = margin >= index.params.likely_margin;
    var out = [];
    for (var position = 0; position < order.length; position++) {
      var row = rows[order[position]];
      if (row.score <= 0) break;
      if (position >= limit && !row.strong) continue;
      var level = row.strong ? MATCH : (position === 0 && likely ? LIKELY : POSSIBLE);
      out.push({ page: row.page, score: Math.round(row.score * 10000) / 10000, level: level,
                 why: row.why.slice(0, 6), matched: row.matched });
    }
    return out;
  }

  /* ---- the box ---------------------------------------------------------------------------------- */

  var script = document.currentScript;
  var siteRoot = script ? script.src.replace(/assets\/javascripts\/explain\.js(\?.*)?$/, "") : "";
  var loading = null;

  function loadIndex() {
    if (window.__gpuRunbookExplainIndex) return Promise.resolve(window.__gpuRunbookExplainIndex);
    if (!loading) {
      loading = new Promise(function (resolve, reject) {
        var tag = document.createElement("script");
        tag.src = siteRoot + "assets/javascripts/explain-index.js";
        tag.onload = function () { resolve(window.__gpuRunbookExplainIndex); };
        tag.onerror = function () { reject(new Error("the explain index could not be loaded")); };
        document.head.appendChild(tag);
      });
    }
    return loading;
  }

  function element(tag, className, text) {
    var el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function render(box, results, index) {
    var list = box.querySelector(".gpu-explain__results");
    list.textContent = "";
    if (!results.length) {
      list.appendChild(element("p", "gpu-explain__none",
        "No runbook page matches this text. Try the search box, or run `gpu-runbook check` on the host."));
      return;
    }
    results.forEach(function (r) {
      var item = element("li", "gpu-explain__item gpu-explain__item--" + r.level);
      item.setAttribute("data-page", r.page);
      item.appendChild(element("span", "gpu-explain__level", r.level));
      var meta = index.titles[r.page];
      var link = element("a", "gpu-explain__link", meta.title);
      link.href = siteRoot + meta.path;
      item.appendChild(link);
      var why = element("ul", "gpu-explain__why");
      r.why.slice(0, 3).forEach(function (w) { why.appendChild(element("li", null, w)); });
      item.appendChild(why);
      list.appendChild(item);
    });
    if (!results.some(function (r) { return r.level === MATCH; }))
      list.appendChild(element("p", "gpu-explain__none",
        "No known error string or signature matched: these pages are guesses from the words."));
  }

  function mount(box) {
    var input = box.querySelector("textarea");
    var button = box.querySelector("button");
    var timer = null;
    function run() {
      var text = input.value;
      if (!text.trim()) { box.querySelector(".gpu-explain__results").textContent = ""; return; }
      loadIndex().then(function (index) { render(box, rank(text, index), index); }, function (err) {
        box.querySelector(".gpu-explain__results").textContent = String(err.message || err);
      });
    }
    button.addEventListener("click", run);
    input.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(run, 250); });
  }

  window.gpuRunbookExplain = {
    rank: function (text, limit) {
      return loadIndex().then(function (index) { return rank(text, index, limit); });
    },
    rankMany: function (texts, limit) {
      return loadIndex().then(function (index) {
        return texts.map(function (t) { return rank(t, index, limit); });
      });
    }
  };

  function start() {
    var boxes = document.querySelectorAll("[data-gpu-explain]");
    for (var i = 0; i < boxes.length; i++) mount(boxes[i]);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
