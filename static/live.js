// Live pages (src/web/live.rs): the page's #live element names an event
// stream (data-events) and the ids of the parts to refresh (data-swap).
// On each event the page is fetched again and those parts are replaced; an
// `end` event closes the stream. Without this script the page is the same,
// just not live. After a refresh, `trainlens:refreshed` is dispatched on
// `document` (detail: the ids replaced) for scripts that bind to them.
//
// A stream is open only while the page is shown: a hidden tab (or a page
// left for another, kept in the back-forward cache) closes it, and showing
// the page again fetches it once and opens the stream the fetched page
// names. So background tabs neither poll the server nor hold one of the
// few connections a browser opens to a host.
(function () {
  'use strict';
  var marker = document.getElementById('live');
  if (!marker || !window.EventSource || !window.fetch || !window.DOMParser) return;
  var url = marker.getAttribute('data-events');
  var ids = (marker.getAttribute('data-swap') || '').split(/\s+/).filter(Boolean);
  if (!url || !ids.length) return;

  var source = null;
  var ended = false;
  var busy = false;
  var again = false;
  // Open the stream once the refresh under way is done.
  var reopen = false;

  // The indicator is the current #live (a refresh may replace or drop it).
  function show(state) {
    var m = document.getElementById('live');
    if (!m) return;
    m.hidden = state === 'off';
    m.classList.toggle('paused', state === 'paused');
  }

  function shown() {
    return source && source.readyState === EventSource.OPEN ? 'on'
      : source && source.readyState === EventSource.CONNECTING ? 'paused' : 'off';
  }

  // Which <details> of `el` are open, by position, to keep them open.
  function openDetails(el) {
    var open = [];
    el.querySelectorAll('details').forEach(function (d, i) { if (d.open) open.push(i); });
    return open;
  }

  // What the reader set in `el`'s checkboxes and radios (a selection of
  // runs, say), by name and value, to keep it across a refresh.
  function choices(el) {
    var set = {};
    el.querySelectorAll('input[type=checkbox], input[type=radio]').forEach(function (i) {
      set[i.name + '\u0000' + i.value] = i.checked;
    });
    return set;
  }

  function swap(html) {
    var doc = new DOMParser().parseFromString(html, 'text/html');
    // The stream the fresh page names, for the next time one is opened
    // (none: the run stopped, nothing more will come).
    var next = doc.getElementById('live');
    url = next ? next.getAttribute('data-events') : null;
    var done = [];
    ids.forEach(function (id) {
      var old = document.getElementById(id);
      var fresh = doc.getElementById(id);
      if (!old || !fresh || old.outerHTML === fresh.outerHTML) return;
      var open = openDetails(old);
      var set = choices(old);
      var node = document.importNode(fresh, true);
      var details = node.querySelectorAll('details');
      open.forEach(function (i) { if (details[i]) details[i].open = true; });
      node.querySelectorAll('input[type=checkbox], input[type=radio]').forEach(function (i) {
        var k = i.name + '\u0000' + i.value;
        if (k in set) i.checked = set[k];
      });
      old.replaceWith(node);
      done.push(id);
    });
    if (done.length) {
      document.dispatchEvent(new CustomEvent('trainlens:refreshed', { detail: { ids: done } }));
    }
  }

  // One fetch at a time; events during one cause one more after it.
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(location.href, { headers: { Accept: 'text/html' }, credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html) swap(html); })
      .catch(function () { /* the page stays as it is; the next event tries again */ })
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); return; }
        if (reopen) { reopen = false; connect(); }
        // A replaced indicator comes hidden, as the server draws it.
        show(shown());
      });
  }

  function connect() {
    if (source || ended || !url || document.hidden) return;
    source = new EventSource(url);
    source.addEventListener('open', function () { show('on'); });
    source.addEventListener('run', refresh);
    source.addEventListener('runs', refresh);
    source.addEventListener('end', function () {
      ended = true;
      disconnect();
      refresh();
    });
    // The browser reconnects by itself (sending the last event's id); a
    // refused stream (503: too many open) stays closed.
    source.addEventListener('error', function () { show(shown()); });
  }

  function disconnect() {
    if (source) source.close();
    source = null;
    show('off');
  }

  // Shown again: what changed meanwhile, then the stream of the fresh page.
  function resume() {
    if (source || ended) return;
    reopen = true;
    refresh();
  }

  document.addEventListener('visibilitychange', function () {
    if (document.hidden) disconnect(); else resume();
  });
  window.addEventListener('pagehide', disconnect);
  window.addEventListener('pageshow', function (e) { if (e.persisted) resume(); });
  connect();
})();
