/**
 * language.js — the language switch (#lang-switch, in the header): the page is rendered by the
 * server in one language, so choosing another loads the page again with ?lang=, in the same view,
 * which lives in the URL (url.js on the main page, compare.js on /compare). The server remembers
 * the choice in a cookie. Text typed in a prompt box but not analyzed yet is not in the URL: it
 * crosses the reload in sessionStorage.
 *
 *   mountLanguageSwitch(beforeLeave)   beforeLeave(): write any view change still pending to the URL
 *   restoreDrafts()                    put the typed text back, once the page's first runs are shown
 */
const DRAFTS = "explainer.drafts";

export function mountLanguageSwitch(beforeLeave = () => {}) {
  const select = document.getElementById("lang-switch");
  if (!select) return;
  select.addEventListener("change", () => {
    beforeLeave();
    saveDrafts();
    const q = new URLSearchParams(location.search);
    q.set("lang", select.value);
    location.assign(`${location.pathname}?${q.toString()}${location.hash}`);
  });
}

function saveDrafts() {
  const drafts = {};
  for (const box of document.querySelectorAll("textarea[data-testid=prompt-input]")) drafts[box.id] = box.value;
  try {
    sessionStorage.setItem(DRAFTS, JSON.stringify(drafts));
  } catch (_) {
    // Storage refused (private mode, quota): the URL's view still crosses.
  }
}

export function restoreDrafts() {
  let drafts = null;
  try {
    drafts = JSON.parse(sessionStorage.getItem(DRAFTS) || "null");
    sessionStorage.removeItem(DRAFTS);
  } catch (_) {
    return;
  }
  for (const [id, text] of Object.entries(drafts || {})) {
    const box = document.getElementById(id);
    if (box && typeof text === "string" && box.value !== text) {
      box.value = text;
      box.dispatchEvent(new Event("input", { bubbles: true })); // the box fits its new text
    }
  }
}
