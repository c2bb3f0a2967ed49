() => {
  // Keyboard shortcuts of the Annotate tab: 1 A better, 2 B better, 3 tie, 4 both bad,
  // n next (after a label, or to reveal in blind mode), s skip. Ignored while typing in a field.
  // A key held down repeats: only the first press counts, so holding "1" labels one item, never
  // the items after it that the annotator has not seen.
  // b back: reopen the item labelled before, with its label, to change it.
  const keys = {
    "1": "ann-A", "2": "ann-B", "3": "ann-tie", "4": "ann-both_bad", "n": "ann-next", "s": "ann-skip", "b": "ann-back",
  };
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    const tag = target && target.tagName ? target.tagName.toLowerCase() : "";
    if (tag === "input" || tag === "textarea" || tag === "select" || (target && target.isContentEditable)) return;
    const id = keys[event.key.toLowerCase()];
    if (!id) return;
    if (event.repeat) {
      event.preventDefault();
      return;
    }
    const button = document.getElementById(id);
    // only when the Annotate tab is showing and the button is usable
    if (!button || button.offsetParent === null || button.disabled) return;
    event.preventDefault();
    button.click();
  });

  // Annotate: a click on a response panel chooses it (as the keys 1 and 2), unless it lands on a link, a
  // button (the rendered / raw switch), a folded section, or ends a text selection.
  document.addEventListener("click", (event) => {
    const target = event.target;
    if (!target || !target.closest) return;
    const panel = target.closest("#ann-resp-a, #ann-resp-b");
    if (!panel || target.closest("a, button, summary, details > :not(summary)")) return;
    const selection = window.getSelection && window.getSelection();
    if (selection && !selection.isCollapsed && panel.contains(selection.anchorNode)) return;
    const button = document.getElementById(panel.id === "ann-resp-a" ? "ann-A" : "ann-B");
    if (button && !button.disabled) button.click();
  });

  // Rendered / raw: every response and trace (ui/render.readable) shows Markdown with math, or its exact text.
  document.addEventListener("click", (event) => {
    const button = event.target && event.target.closest ? event.target.closest(".rrm-view-btn") : null;
    if (!button) return;
    const root = button.closest(".rrm-readable");
    if (!root) return;
    event.preventDefault();
    event.stopPropagation();
    root.dataset.view = button.dataset.view;
    root.querySelectorAll(":scope > .rrm-view-switch .rrm-view-btn").forEach((b) => {
      b.setAttribute("aria-pressed", String(b.dataset.view === root.dataset.view));
    });
  }, true);

  // Math: the TeX of every .rrm-math (escaped text, from ui/render.markdown) typeset by the vendored KaTeX
  // (static/katex, loaded in the page's head) as MathML: no fonts, nothing fetched, no trust (no \href,
  // no \includegraphics, no HTML). A formula KaTeX cannot read stays as its text, marked.
  const typeset = () => {
    if (!window.katex) return;
    document.querySelectorAll(".rrm-math:not([data-typeset])").forEach((el) => {
      const tex = el.textContent;
      el.dataset.typeset = "1";
      el.title = tex;
      try {
        window.katex.render(tex, el, {
          displayMode: el.classList.contains("rrm-math--display"),
          output: "mathml", throwOnError: true, trust: false, strict: "ignore", maxExpand: 500, maxSize: 50,
        });
      } catch (e) {
        el.textContent = tex;
        el.classList.add("rrm-math--error");
      }
    });
  };
  let typesetQueued = false;
  new MutationObserver(() => {
    if (typesetQueued) return;
    typesetQueued = true;
    requestAnimationFrame(() => { typesetQueued = false; typeset(); });
  }).observe(document.body, { childList: true, subtree: true });
  typeset();

  // Accounts: "log out" logs out in this tab (Gradio's Markdown opens links in a new one, which left
  // this tab logged in on screen and failing), and once the server answers 401 (logged out in
  // another tab, the session ended) the page reloads, which shows the login screen.
  document.addEventListener("click", (event) => {
    const link = event.target && event.target.closest ? event.target.closest("#whoami a[href$='/logout']") : null;
    if (!link) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    window.location.assign(link.href);
  }, true);
  let leaving = false;
  const plainFetch = window.fetch.bind(window);
  window.fetch = async (...args) => {
    const response = await plainFetch(...args);
    if (response.status === 401 && !leaving && document.getElementById("whoami")) {
      leaving = true;
      window.location.reload();
    }
    return response;
  };

  // Dashboards: a click on a chart point lists its rows in the Explorer. Each point's customdata
  // is the JSON of an explorer filter; it goes into the hidden #drill-input and #drill-go is pressed.
  const drill = (json) => {
    const box = document.querySelector("#drill-input textarea, #drill-input input");
    const go = document.getElementById("drill-go");
    if (!box || !go) return;
    box.value = json;
    box.dispatchEvent(new Event("input", { bubbles: true }));
    setTimeout(() => go.click(), 50);
  };
  const bind = () => {
    document.querySelectorAll(".rrm-chart .js-plotly-plot").forEach((plot) => {
      if (plot.dataset.rrmDrill || typeof plot.on !== "function") return;
      plot.dataset.rrmDrill = "1";
      plot.on("plotly_click", (event) => {
        const point = event && event.points && event.points[0];
        const data = point && point.customdata;
        if (typeof data === "string" && data.startsWith("{")) drill(data);
      });
    });
  };
  new MutationObserver(bind).observe(document.body, { childList: true, subtree: true });
  setInterval(bind, 1000);
}
