// Live pages (src/web/live.rs): the page's #live element names an event
// stream (data-events) and the ids of the parts to refresh (data-swap).
// On each event the page is fetched again and those parts are replaced; an
// `end` event closes the stream. Without this script the page is the same,
// just not live. After a refresh, `trainlens:refreshed` is dispatched on
// `document` (detail: the ids replaced) for scripts that bind to them.
(function () {
  'use strict';
  var marker = document.getElementById('live');
  if (!marker || !window.EventSource || !window.fetch || !window.DOMParser) return;
  var url = marker.getAttribute('data-events');
  var ids = (marker.getAttribute('data-swap') || '').split(/\s+/).filter(Boolean);
  if (!url || !ids.length) return;

  var source = new EventSource(url);
  var busy = false;
  var again = false;

  // The indicator is the current #live (a refresh may replace or drop it).
  function show(state) {
    var m = document.getElementById('live');
    if (!m) return;
    m.hidden = state === 'off';
    m.classList.toggle('paused', state === 'paused');
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
        // A replaced indicator comes hidden, as the server draws it.
        show(source.readyState === EventSource.OPEN ? 'on' : source.readyState === EventSource.CLOSED ? 'off' : 'paused');
        if (again) { again = false; refresh(); }
      });
  }

  source.addEventListener('open', function () { show('on'); });
  source.addEventListener('run', refresh);
  source.addEventListener('runs', refresh);
  source.addEventListener('end', function () {
    source.close();
    refresh();
    show('off');
  });
  // The browser reconnects by itself (sending the last event's id); a
  // refused stream (503: too many open) stays closed.
  source.addEventListener('error', function () {
    show(source.readyState === EventSource.CLOSED ? 'off' : 'paused');
  });
})();
