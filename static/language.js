/**
 * language.js — the language switch (#lang-switch, in the header): the page is rendered by the
 * server in one language, so choosing another loads the page again with ?lang=, in the same view,
 * which lives in the URL (url.js on the main page, compare.js on /compare). The choice is kept in
 * the `lang` cookie, which the server reads for the pages opened without ?lang= (a link between
 * the pages, a room's /r/CODE): a link with ?lang= shows that language without changing it. Text typed in a prompt box but not analyzed yet is not in the URL: it
 * crosses the reload in sessionStorage.
 *
 *   mountLanguageSwitch(beforeLeave)   beforeLeave(): write any view change still pending to the URL
 *   restoreDrafts()                    put the typed text back, once the page's first runs are shown
 */
const DRAFTS = "explainer.drafts";
const BOXES = "textarea[data-testid=prompt-input]";
let drafts = null; // {box id: text} from the page before the switch, taken at mount
const typed = new WeakSet(); // boxes typed in since this page loaded: their text wins over a draft

export function mountLanguageSwitch(beforeLeave = () => {}) {
  drafts = takeDrafts();
  for (const box of document.querySelectorAll(BOXES)) {
    box.addEventListener("input", (event) => event.isTrusted && typed.add(box));
  }
  const select = document.getElementById("lang-switch");
  if (!select) return;
  select.addEventListener("change", () => {
    beforeLeave();
    saveDrafts();
    document.cookie = `lang=${encodeURIComponent(select.value)}; path=/; max-age=${365 * 24 * 3600}; samesite=lax`;
    const q = new URLSearchParams(location.search);
    q.set("lang", select.value);
    location.assign(`${location.pathname}?${q.toString()}${location.hash}`);
  });
}

function saveDrafts() {
  const boxes = Object.fromEntries([...document.querySelectorAll(BOXES)].map((box) => [box.id, box.value]));
  try {
    sessionStorage.setItem(DRAFTS, JSON.stringify(boxes));
  } catch (_) {
    // Storage refused (private mode, quota): the URL's view still crosses.
  }
}

/** The drafts the page before left, removed from storage at once (a later load must not see them). */
function takeDrafts() {
  try {
    const found = JSON.parse(sessionStorage.getItem(DRAFTS) || "null");
    sessionStorage.removeItem(DRAFTS);
    return found && typeof found === "object" ? found : null;
  } catch (_) {
    return null;
  }
}

export function restoreDrafts() {
  for (const [id, text] of Object.entries(drafts || {})) {
    const box = document.getElementById(id);
    if (box && !typed.has(box) && typeof text === "string" && box.value !== text) {
      box.value = text;
      box.dispatchEvent(new Event("input", { bubbles: true })); // the box fits its new text
    }
  }
  drafts = null;
}
