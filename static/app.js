() => {
  // Keyboard shortcuts of the Annotate tab: 1 A better, 2 B better, 3 tie, 4 both bad,
  // n next (after a label, or to reveal in blind mode), s skip. Ignored while typing in a field.
  const keys = { "1": "ann-A", "2": "ann-B", "3": "ann-tie", "4": "ann-both_bad", "n": "ann-next", "s": "ann-skip" };
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    const tag = target && target.tagName ? target.tagName.toLowerCase() : "";
    if (tag === "input" || tag === "textarea" || tag === "select" || (target && target.isContentEditable)) return;
    const id = keys[event.key.toLowerCase()];
    if (!id) return;
    const button = document.getElementById(id);
    // only when the Annotate tab is showing and the button is usable
    if (!button || button.offsetParent === null || button.disabled) return;
    event.preventDefault();
    button.click();
  });

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
