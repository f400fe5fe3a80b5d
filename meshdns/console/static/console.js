// Live pages: poll the registry revision; when it moves (or every 10 s, for ages and
// zone contacts), fetch this page again and swap its <main> in place. Without
// JavaScript the pages are complete as served.
(() => {
  const main = document.getElementById("main");
  const live = document.getElementById("live");
  if (!main || !window.fetch || !window.DOMParser) return;
  let revision = main.dataset.revision;
  let fetched = Date.now();
  async function refresh() {
    const page = await fetch(location.href, { cache: "no-store" });
    if (!page.ok) return;
    const fresh = new DOMParser().parseFromString(await page.text(), "text/html").getElementById("main");
    if (!fresh) return;
    main.replaceChildren(...fresh.childNodes);
    revision = fresh.dataset.revision;
    fetched = Date.now();
    document.querySelectorAll("[data-revision-text]").forEach((node) => { node.textContent = revision; });
  }
  async function poll() {
    try {
      const answer = await fetch(main.dataset.versionUrl, { cache: "no-store" });
      const now = String((await answer.json()).revision);
      if (now !== revision || Date.now() - fetched > 10000) await refresh();
      live.textContent = "Live: updated " + new Date(fetched).toLocaleTimeString() + ".";
    } catch (error) {
      live.textContent = "Live updates paused: the server does not answer.";
    }
    setTimeout(poll, 500);
  }
  live.textContent = "Live.";
  setTimeout(poll, 500);
})();
