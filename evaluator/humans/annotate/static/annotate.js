// Keyboard shortcuts for the annotation page. A key clicks the control whose data-key names it
// (labels 1-9, s skip, u undo) and focuses the field whose data-focus-key names it (t: the note);
// Escape leaves a field. Without this script every control is a plain link or button, and the
// key hints stay hidden (the stylesheet shows them once the script marks the page with "keys").
"use strict";

document.documentElement.classList.add("keys");

let submitting = false;
document.addEventListener("submit", () => { submitting = true; });

document.addEventListener("keydown", (event) => {
  if (submitting || event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
  const target = event.target instanceof Element ? event.target : document.body;
  if (target.closest("input, textarea, select")) {
    if (event.key === "Escape") target.blur();
    return;
  }
  const key = CSS.escape(event.key);
  const field = document.querySelector(`[data-focus-key="${key}"]`);
  if (field) {
    event.preventDefault();
    field.focus();
    return;
  }
  const control = document.querySelector(`[data-key="${key}"]`);
  if (control && !control.disabled) {
    event.preventDefault();
    control.click();
  }
});
