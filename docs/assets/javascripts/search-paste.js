/*
 * Pasted errors in Material's search box.
 *
 * Material hands the query to Lunr, which reads `word:` as a field name, a leading `-` as "must not contain",
 * `~` `^` `*` `+` as modifiers and quotes as phrases: a pasted `nvidia-container-cli: initialization error`
 * raises a QueryParseError and the box shows no results. Loaded before Material's bundle (as a polyfill, so
 * it also wraps the file:// iframe-worker shim), this wraps the search worker:
 * - outgoing queries lose the characters Lunr treats as syntax (the site's search separator splits on all of
 *   them anyway, so no word is lost), and runs of non-ASCII characters become spaces: the pages are English,
 *   and a report written in another language ("...其他pod把gpu资源占满了...") has its English words glued to its
 *   own, which the separator does not split, so Lunr would find nothing at all;
 * - when `gpu-runbook explain` (explain.js, same index) finds a known error string or signature in the query,
 *   the articles of its pages go first, in its order; the rest keep Lunr's order. A query of plain words
 *   ("MIG", "persistence mode") is left to Lunr.
 */
(function () {
  "use strict";
  var Base = window.Worker;
  if (!Base) return;
  var QUERY = 2, RESULT = 3;  // Material's SearchMessageType (SETUP 0, READY 1)
  var SYNTAX = /[:^~+\-*\\"]+/g;
  var NON_ASCII = /[^\x00-\x7f]+/g;
  var lastQuery = "";

  function pageOf(location) {
    return String(location || "").split("#")[0].split("?")[0].replace(/^\.?\//, "");
  }

  function rerank(data, query) {
    var explainer = window.gpuRunbookExplain;
    if (!explainer || !query.trim() || !data || !data.items || !data.items.length) return Promise.resolve(data);
    return explainer.rank(query, 6).then(function (ranked) {
      if (!ranked.some(function (r) { return r.level === "match"; })) return data;
      var index = window.__gpuRunbookExplainIndex;
      var order = ranked.map(function (r) { return index.titles[r.page].path; });
      var position = function (items) {
        var at = order.indexOf(pageOf(items[0] && items[0].location));
        return at < 0 ? order.length : at;
      };
      var items = data.items.map(function (group, i) { return { group: group, i: i, at: position(group) }; });
      items.sort(function (a, b) { return a.at - b.at || a.i - b.i; });
      var out = {};
      for (var key in data) if (Object.prototype.hasOwnProperty.call(data, key)) out[key] = data[key];
      out.items = items.map(function (x) { return x.group; });
      return out;
    }, function () { return data; });
  }

  function Wrapped(url, options) {
    var worker = new Base(url, options);
    var send = worker.postMessage.bind(worker);
    worker.postMessage = function (message, transfer) {
      if (message && message.type === QUERY && typeof message.data === "string") {
        lastQuery = message.data;
        message = { type: QUERY, data: message.data.replace(SYNTAX, " ").replace(NON_ASCII, " ").replace(/\s+/g, " ").trim() };
      }
      return transfer === undefined ? send(message) : send(message, transfer);
    };
    var listen = worker.addEventListener.bind(worker);
    var chain = Promise.resolve();
    worker.addEventListener = function (type, listener, options) {
      if (type !== "message" || typeof listener !== "function") return listen(type, listener, options);
      return listen(type, function (event) {
        var message = event && event.data;
        if (!message || message.type !== RESULT) { listener(event); return; }
        var query = lastQuery;
        // Results stay in the order they arrived, even while the explain index loads.
        chain = chain.then(function () { return rerank(message.data, query); }).then(function (data) {
          listener({ data: { type: RESULT, data: data }, target: event.target });
        });
      }, options);
    };
    return worker;
  }
  Wrapped.prototype = Base.prototype;
  window.Worker = Wrapped;
})();
