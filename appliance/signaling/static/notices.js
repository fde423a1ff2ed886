// wallmesh browser client: short notices over the call ("bob joined", "bob left").
//
// They go into one aria-live="polite" region that is in the page from the start, so screen
// readers announce each one without interrupting; a notice fades after a few seconds and is
// removed, and only the last few are kept when many arrive at once.

const SHOWN_MS = 4000;
const FADE_MS = 600;     // matches the .notice transition in style.css
const KEPT = 4;

export function notify(text) {
  const region = document.getElementById("notices");
  const el = document.createElement("div");
  el.className = "notice";
  el.textContent = text;
  region.appendChild(el);
  while (region.children.length > KEPT) region.firstElementChild.remove();
  setTimeout(() => el.classList.add("fading"), SHOWN_MS);
  setTimeout(() => el.remove(), SHOWN_MS + FADE_MS);
}
