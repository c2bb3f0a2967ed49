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
}
