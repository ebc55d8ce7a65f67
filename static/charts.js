// The run page's chart controls without a reload: on a change, each line
// chart is fetched again from its SVG download with the new query and
// swapped in, the download links and the histogram links follow, and the
// address bar keeps the view. Without JavaScript the form's "apply" button
// reloads the page with the same query, so this is only a shortcut.
(() => {
  const form = document.querySelector("form.chart-controls");
  if (!form) return;
  const VIEW = ["smooth", "y", "x"];
  const button = form.querySelector("button[type=submit]");
  if (button) button.hidden = true;
  const viewQuery = () => {
    const all = new FormData(form);
    const q = new URLSearchParams();
    for (const name of VIEW) q.set(name, all.get(name) || "");
    return q;
  };
  const withView = (href, q) => {
    const url = new URL(href, location.href);
    for (const name of VIEW) url.searchParams.set(name, q.get(name));
    return url;
  };
  let generation = 0;
  form.addEventListener("change", async () => {
    const q = viewQuery();
    const mine = ++generation;
    form.setAttribute("aria-busy", "true");
    const figures = [...document.querySelectorAll("figure[data-src]")];
    await Promise.all(figures.map(async (figure) => {
      const src = figure.dataset.src;
      const res = await fetch(`${src}.svg?${q}`);
      if (!res.ok || mine !== generation) return;
      const template = document.createElement("template");
      template.innerHTML = await res.text();
      const svg = template.content.querySelector("svg");
      const old = figure.querySelector("svg");
      if (svg && old) old.replaceWith(svg);
      for (const a of figure.querySelectorAll("a[data-ext]")) {
        a.href = `${src}.${a.dataset.ext}?${q}`;
      }
    }));
    if (mine !== generation) return;
    form.removeAttribute("aria-busy");
    for (const a of document.querySelectorAll("nav.keys a")) {
      const url = withView(a.getAttribute("href"), q);
      a.setAttribute("href", url.search + url.hash);
    }
    const here = withView(location.href, q);
    history.replaceState(null, "", here.pathname + here.search + location.hash);
  });
})();
