/**
 * room.js — follow the teacher (issue 13), on a classroom network (issue 23).
 *
 * Teacher: "Open a room" in the header asks the server for a room (POST /api/rooms): a short
 * code, shown large in a panel with the students' link (students_url: the server's public or LAN
 * address, never 127.0.0.1 while students can reach it) and its QR code, and a secret that only
 * this tab holds (sessionStorage, so a reload keeps the room). On a server only this computer can
 * reach (reachable false) the room still opens, to try it here, and the panel says in large text
 * that students' laptops cannot open it, and which command makes it reachable (GET /api/classroom
 * `command`, shown as code to copy), instead of a QR code no phone could open.
 * Where only the teacher may open rooms and this browser is not the teacher's (GET /api/classroom
 * says teacher false: a student on a classroom server), the header says so in place of the button:
 * the teacher opens the teacher URL the terminal printed. A refusal (403 teacher_only, 429
 * client_limit, 403 cross_site) shows the server's own sentence beside the button.
 * From then on the page publishes what it shows (PUT /api/rooms/CODE/state, X-Room-Secret):
 * the prompt, the stage card scrolled to, layer, head, pinned token, temperature, the scene
 * step (store.state.scene) and what is switched off (store.state.interventions), when something
 * changed: at once, and at most every 150 ms while changes keep coming; and the same state again
 * now and then, which keeps an idle room open.
 * "Close room" ends it on the server (DELETE /api/rooms/CODE): the students' pages say so at once.
 *
 * Student (/r/CODE): a bar "Following the teacher (room CODE)" with "Explore on my own" /
 * "Follow again". The page listens to the room's event stream (EventSource on
 * /api/rooms/CODE/events) and, while following, applies each state: layer, head, temperature
 * and the scene through the store, the prompt analyzed (prompt.js) only when it differs, with
 * the teacher's interventions (the same run, the same numbers), the pinned token once the run is
 * shown, the stage card scrolled into view when it changes.
 * The student's first change of their own (a layer, head, pin, temperature, prompt, scene, a part
 * switched off, Generate, or scrolling to another stage card) switches the bar to "Exploring on
 * your own" at once: a change is theirs when it is made by their own input (a trusted event
 * outside the bar) and leaves the page other than the teacher's; a scene opened, moved or closed
 * other than the teacher's is theirs however it came. Exploring keeps listening but applies
 * nothing; following again applies the latest state (what the student switched off meanwhile
 * becomes the teacher's list again). A student publishes nothing. An unknown or closed room, and
 * a stream the server refuses (429 client_limit: too many tabs of one computer follow), are said
 * on the page; a server that stops ends the stream with `stopping`, and the page follows again
 * when it is back (if the room still is).
 *
 *   mount(root, store, runKey) -> unmount     root: the page's header. Everything the room shows goes
 *       into it (the teacher's button and panel, the student's bar: fixed over the page by room.css);
 *       the stage the page is at, and scrolling to the teacher's, go through the store (actions.js goToStage).
 *
 * window.explainer.room (the browser tests read it): {role: "teacher" | "student", code,
 *   following, version (the last state received or published), applied (the last applied), ended (the
 *   error code when the room is unknown or has closed), sentAt / receivedAt (Date.now() of the last
 *   publish sent, of the last state received), classroom (the teacher's page: GET /api/classroom's
 *   answer once known), explored (the student's page: what made it explore, e.g. "layer", "scroll")}.
 */
import { analyzeIds, analyzeText, analyzeWith, goToStage } from "./actions.js";
import { checkRoomEvents, closeRoom, getClassroom, openRoom, publishRoom, roomEventsUrl, roomQrUrl, roomSnapshot } from "./api.js";
import { el, listen, withData } from "./dom.js";
import { isHook, parseHook } from "./hooks.js";
import { t } from "./i18n.js";
import { sameIds, sameInterventions, selectRun } from "./store.js";

const PUBLISH_DELAY_MS = 150;
const KEEPALIVE_MAX_MS = 5 * 60 * 1000;
const SAVED = "explainer.room"; // sessionStorage: the room this tab opened {code, secret, studentsUrl, reachable}
const FOLLOW_PATH = /^\/r\/([A-Za-z0-9]{1,16})\/?$/;
const WATCHED = ["shown", "layer", "head", "pinned", "temperature", "scene", "interventions"];

/** The stage card the reader is at (the page keeps it in the store as it scrolls). */
const currentStage = (store) => store.state.stage ?? "prompt";

export function mount(root, store, runKey) {
  const followed = FOLLOW_PATH.exec(location.pathname);
  const info = (window.explainer = window.explainer || {}).room = {};
  return followed ? student(root, store, runKey, followed[1].toUpperCase(), info) : teacher(root, store, runKey, info);
}

// ------------------------------------------------------------------ teacher

function teacher(root, store, runKey, info) {
  const off = [];
  info.role = "teacher";
  // Shown once GET /api/classroom says this browser may open rooms (or cannot say).
  const openButton = el("button", { type: "button", class: "ghost", "data-testid": "room-open", hidden: true,
    title: t("room.open_title"), text: t("room.open") });
  const teacherOnly = el("p", { class: "room-teacher-only", hidden: true, "data-testid": "room-teacher-only",
    text: t("room.teacher_only") });
  const openError = el("p", { class: "room-error room-open-error", role: "alert", hidden: true, "data-testid": "room-open-error" });
  root.append(openButton, teacherOnly, openError);

  const title = el("h2", { id: "room-title", text: t("room.title") });
  const code = el("p", { class: "room-code", translate: "no", "data-testid": "room-code", "aria-label": t("room.code_label") });
  const qr = el("img", { class: "room-qr", alt: t("room.qr_alt"), "data-testid": "room-qr", width: "160", height: "160" });
  const url = el("a", { translate: "no", "data-testid": "room-url", target: "_blank", rel: "noopener" });
  const whereLabel = el("span", { class: "room-url-label" });
  const where = el("p", { class: "room-url" }, whereLabel, " ", url);
  // A server only this computer can reach: what students would meet, and the command that fixes it.
  const command = el("code", { class: "room-command", translate: "no", "data-testid": "room-command" });
  const copy = el("button", { type: "button", class: "ghost", "data-testid": "room-copy", text: t("room.copy") });
  const fix = el("div", { class: "room-fix" }, el("p", { text: t("room.unreachable_fix") }),
    el("div", { class: "room-command-row" }, command, copy));
  const local = el("div", { class: "room-unreachable", hidden: true, "data-testid": "room-unreachable" },
    el("p", { class: "room-unreachable-lead", text: t("room.unreachable") }), fix);
  const error = el("p", { class: "room-error", role: "alert", hidden: true });
  const hide = el("button", { type: "button", class: "ghost", "aria-expanded": "true", "data-testid": "room-hide", text: t("room.hide") });
  const close = el("button", { type: "button", class: "ghost", "data-testid": "room-close", title: t("room.close_title"), text: t("room.close") });
  const body = el("div", { class: "room-body" }, local, where);
  const panel = el("section", { class: "room-panel", "data-testid": "room-panel", "aria-labelledby": "room-title", hidden: true },
    qr, el("div", { class: "room-side" }, title, code, body, error, el("div", { class: "room-buttons" }, hide, close)));
  root.append(panel);

  let room = null; // {code, secret, keepaliveMs, studentsUrl, reachable}
  let classroom = null; // GET /api/classroom's answer, once known
  let sent = null; // the JSON of the last state the server has
  let timer = null;
  let lastPublish = -Infinity;
  let keepalive = null;
  let sending = false;
  let again = false;
  let stage = currentStage(store);

  function state() {
    const s = store.state;
    const run = selectRun(s, runKey);
    if (!run) return null;
    return {
      text: run.text,
      // A run asked for by ids (a generation's) is those ids: its text may tokenize to others.
      ids: run.byIds ? run.ids : null,
      stage,
      layer: s.layer,
      head: s.head,
      pinned: s.pinned != null && s.pinned < run.tokens.length ? s.pinned : null,
      temperature: s.temperature,
      scene: s.scene ? { id: s.scene.id, step: s.scene.step } : null,
      interventions: s.interventions,
    };
  }

  /** At most one publish per PUBLISH_DELAY_MS: a lone change goes at once (once the code that
   * made it has run, so that changes made together go together, and before the views' next frame
   * is drawn), a stream of them (the temperature slider dragged) every 150 ms, the last one always. */
  function schedule() {
    if (!room || timer) return;
    const wait = lastPublish + PUBLISH_DELAY_MS - performance.now();
    const go = () => {
      timer = null;
      lastPublish = performance.now();
      publish();
    };
    if (wait > 0) {
      timer = setTimeout(go, wait);
    } else {
      timer = true;
      queueMicrotask(go);
    }
  }

  /** Send the state if it changed (or `force`: the same again, to keep the room open); one request at a time. */
  async function publish(force = false) {
    if (!room) return;
    if (sending) {
      again = true;
      return;
    }
    const now = state();
    const json = JSON.stringify(now);
    if (!now || (json === sent && !force)) return;
    const mine = room;
    sending = true;
    info.sentAt = Date.now();
    try {
      const answer = await publishRoom(mine.code, mine.secret, now);
      if (room !== mine) return;
      sent = json;
      info.version = answer.version;
      error.hidden = true;
    } catch (e) {
      if (room !== mine) return;
      if (e.code === "room_expired" || e.code === "unknown_room" || e.code === "not_teacher") {
        forget();
        error.textContent = t("room.closed");
      } else {
        error.textContent = t("room.publish_failed", { error: e.message });
      }
      error.hidden = false;
      panel.hidden = false;
    } finally {
      sending = false;
      if (again) {
        again = false;
        schedule();
      }
    }
  }

  /** The button, or the sentence saying only the teacher opens rooms here (no room open). */
  function renderAccess() {
    const mayOpen = !classroom || classroom.teacher;
    openButton.hidden = !!room || !mayOpen;
    teacherOnly.hidden = !!room || mayOpen;
  }

  /** Where students go: the room's students_url, with its QR code when their laptops can reach it;
   * else the link for this computer, and the command that serves a reachable classroom. */
  function renderWhere() {
    url.href = room.studentsUrl;
    url.textContent = room.studentsUrl;
    whereLabel.textContent = room.reachable ? t("room.students_open") : t("room.try_here");
    qr.hidden = panel.classList.contains("collapsed") || !room.reachable;
    const src = room.reachable ? roomQrUrl(room.code) : null;
    if (src && qr.getAttribute("src") !== src) qr.src = src;
    else if (!src) qr.removeAttribute("src");
    local.hidden = room.reachable;
    command.textContent = classroom ? classroom.command : "";
    fix.hidden = !classroom;
    panel.classList.toggle("unreachable", !room.reachable);
  }

  function show(opened) {
    room = opened;
    sent = null;
    info.code = opened.code;
    code.textContent = opened.code;
    error.hidden = true;
    openError.hidden = true;
    panel.hidden = false;
    setCollapsed(false);
    stage = currentStage(store);
    renderAccess();
    clearInterval(keepalive);
    keepalive = setInterval(() => publish(true), opened.keepaliveMs);
    publish();
  }

  function forget() {
    room = null;
    info.code = null;
    if (timer !== true) clearTimeout(timer);
    timer = null;
    clearInterval(keepalive);
    sessionStorage.removeItem(SAVED);
    renderAccess();
  }

  /** Shown: a card over the page's bottom left, for the whole class to read. Hidden: only the code,
   * in the header (nothing covers the page, nor the scene player). */
  function setCollapsed(collapsed) {
    const focused = panel.contains(document.activeElement) ? document.activeElement : null;
    if (collapsed) openButton.after(panel);
    else root.append(panel); // fixed over the page's bottom left (room.css)
    focused?.focus();
    panel.classList.toggle("collapsed", collapsed);
    body.hidden = collapsed;
    if (room) renderWhere();
    hide.textContent = collapsed ? t("room.show") : t("room.hide");
    hide.setAttribute("aria-expanded", collapsed ? "false" : "true");
  }

  async function open() {
    openButton.disabled = true;
    openButton.textContent = t("room.opening");
    openError.hidden = true;
    try {
      const opened = await openRoom();
      const saved = { code: opened.code, secret: opened.secret, keepaliveMs: keepaliveMs(opened.expires_in),
        studentsUrl: opened.students_url, reachable: opened.reachable };
      sessionStorage.setItem(SAVED, JSON.stringify(saved));
      show(saved);
      hide.focus(); // the button that was pressed is gone: keep the keyboard in the panel
    } catch (e) {
      // The server's own sentence: only the teacher may (403 teacher_only), this computer has its
      // rooms open already (429 client_limit), another site sent it (403 cross_site)...
      openError.textContent = t("room.open_failed", { error: e.message });
      openError.hidden = false;
      if (e.code === "teacher_only") {
        classroom = { ...(classroom || {}), teacher: false };
        info.classroom = classroom;
      }
    } finally {
      openButton.disabled = false;
      openButton.textContent = t("room.open");
      renderAccess();
    }
  }

  async function endRoom() {
    const ending = room;
    forget();
    panel.hidden = true;
    if (!openButton.hidden) openButton.focus();
    if (!ending) return;
    try {
      await closeRoom(ending.code, ending.secret); // the students' pages say so at once
    } catch (e) {
      // Gone already (expired, or the server restarted): nothing left to close. Refused (403
      // teacher_only: the teacher cookie is gone): the server's sentence.
      if (e && e.name === "ApiError" && (e.status === 404 || e.status === 410)) return;
      openError.textContent = t("room.close_failed", { error: e.message });
      openError.hidden = false;
      if (e.name !== "ApiError") console.error(e);
    }
  }

  /** The command to the clipboard; where the page may not write it there, selected, for Ctrl+C. */
  async function copyCommand() {
    try {
      await navigator.clipboard.writeText(command.textContent);
      copy.textContent = t("room.copied");
    } catch (_) {
      getSelection().selectAllChildren(command);
    }
  }

  /** A room this tab opened before a reload: shown again if the server still has it. */
  async function resume() {
    let saved = null;
    try {
      saved = JSON.parse(sessionStorage.getItem(SAVED) || "null");
    } catch (_) { /* not ours */ }
    if (!saved || typeof saved.code !== "string" || typeof saved.secret !== "string" ||
        typeof saved.studentsUrl !== "string") return;
    try {
      await roomSnapshot(saved.code);
      show({ keepaliveMs: KEEPALIVE_MAX_MS, ...saved });
    } catch (_) {
      sessionStorage.removeItem(SAVED); // closed while the page was away
    }
  }

  /** The reader scrolled to another stage card: published (if a room is open). */
  function onStage() {
    const now = currentStage(store);
    if (now === stage) return;
    stage = now;
    if (room) schedule();
  }

  off.push(listen(openButton, "click", open));
  off.push(listen(close, "click", endRoom));
  off.push(listen(copy, "click", copyCommand));
  off.push(listen(hide, "click", () => setCollapsed(!panel.classList.contains("collapsed"))));
  off.push(store.subscribe(["stage"], onStage));
  off.push(store.subscribe(WATCHED, schedule));
  let gone = false;
  getClassroom().then((answer) => {
    classroom = answer;
  }, () => { /* the button stays: opening a room says what is wrong */ }).then(() => {
    if (gone) return;
    info.classroom = classroom;
    renderAccess();
    if (room) renderWhere();
  });
  resume();

  return () => {
    gone = true;
    for (const f of off) f();
    clearTimeout(timer);
    clearInterval(keepalive);
    room = null;
    openButton.remove();
    teacherOnly.remove();
    openError.remove();
    panel.remove();
  };
}

/** Re-publish often enough that an idle room never closes while the page is open. */
function keepaliveMs(expiresIn) {
  return Math.max(1000, Math.min(KEEPALIVE_MAX_MS, (Number(expiresIn) || 600) * 1000 / 3));
}

// ------------------------------------------------------------------ student

/** What the store's scene is, as a comparable string. */
const sceneKey = (scene) => JSON.stringify(scene ? { id: scene.id, step: scene.step } : null);

/** The teacher's interventions as this page's store holds them: no null fields, and only what this
 * model has (a layer or head past its shape is left out, as scenes.js does). */
function switchedOff(state, model) {
  return (state.interventions || [])
    .map((x) => Object.fromEntries(Object.entries(x).filter(([, v]) => v != null)))
    .filter((x) => isHook(x.hook, model.n_layers) && !(x.head >= model.n_heads));
}

/** Keys a student changes by exploring; "scene" counts however it changed (see below). */
const LOCAL = ["layer", "head", "pinned", "temperature", "interventions", "analysis", "generation", "scene"];
/** Input that is the reader's own doing. Scrolling: the keys and gestures that scroll the page. */
const INPUT = ["pointerdown", "click", "keydown", "input", "change", "submit"];
const SCROLL_KEYS = new Set(["PageDown", "PageUp", "Home", "End", "ArrowDown", "ArrowUp", " "]);
const CONTROLS = "input, textarea, select, button, a, [tabindex], [contenteditable]"; // they take those keys themselves

function student(root, store, runKey, code, info) {
  const off = [];
  Object.assign(info, { role: "student", code, following: true, version: null, applied: null, explored: null });

  const status = el("p", { class: "room-status", "data-testid": "room-status", "aria-live": "polite" });
  const toggle = el("button", { type: "button", "aria-pressed": "true", "data-testid": "room-follow-toggle" });
  const error = el("p", { class: "room-error", role: "alert", hidden: true, "data-testid": "room-error" });
  const bar = el("section", { class: "room-bar", "data-testid": "room-bar", "aria-label": t("room.bar_label") },
    status, toggle, error);
  root.append(bar); // fixed over the page's bottom (room.css)

  let source = null;
  let latest = null; // {version, state} last received
  let target = null; // the state being applied: {...state, scrolled: the stage last scrolled to}
  let ready = false; // the model is known and the page's first analysis has started
  let lost = false; // the event stream dropped, and EventSource is connecting again
  let reopened = 0; // streams opened again since the last state received (a refused stream, checked)
  let applying = 0; // > 0 while the room itself changes the store
  let ownInput = false; // true from a trusted input event of the reader's until the task after it
  let inputDone = null;
  let restStage = null; // the stage card the page rests at, as the room (or the last scroll) left it
  let readerScrolling = false; // from the reader's own scrolling gesture to the end of that scroll

  /** Run `f` as the room's own change of the store: not the student's exploring. */
  function asRoom(f) {
    applying++;
    try {
      return f();
    } finally {
      applying--;
    }
  }

  function render() {
    if (info.ended) return;
    const key = info.following ? "room.following" : "room.exploring";
    status.replaceChildren(...withData(t(key), { code }));
    if (lost && source) status.append(" ", t("room.reconnecting"));
    else if (info.following && latest && !latest.state) status.append(" ", t("room.waiting"));
    toggle.textContent = info.following ? t("room.explore") : t("room.follow");
    toggle.setAttribute("aria-pressed", info.following ? "true" : "false");
    toggle.hidden = false;
    bar.dataset.following = info.following ? "1" : "0";
  }

  function fail(e) {
    const words = e && e.code === "unknown_room" ? t("room.unknown")
      : e && e.code === "room_expired" ? t("room.expired")
        : t("room.failed", { error: (e && e.message) || String(e) });
    error.replaceChildren(...withData(words, { code }));
    error.hidden = false;
    error.dataset.code = (e && e.code) || "error";
    toggle.hidden = true;
    status.hidden = true;
    bar.dataset.following = "0";
    info.following = false;
    info.ended = (e && e.code) || "error";
    stopListening();
  }

  function stopListening() {
    if (source) source.close();
    source = null;
  }

  /** Stop following: the reader's own change (`why`), or the bar's button. */
  function explore(why) {
    if (!info.following) return;
    info.following = false;
    info.explored = why;
    target = null;
    readerScrolling = false;
    render();
  }

  /** Whether the store, in the keys `changed`, shows other than the teacher's state. */
  function differs(s, changed, want) {
    const { n_layers: L, n_heads: H } = s.model;
    const run = selectRun(s, runKey);
    const asked = s.analysis[runKey];
    const pinnedWanted = run && want.pinned != null && want.pinned < run.tokens.length ? want.pinned : null;
    const checks = {
      layer: () => s.layer !== Math.min(want.layer, L - 1),
      head: () => s.head !== Math.min(want.head, H - 1),
      temperature: () => s.temperature !== want.temperature,
      interventions: () => !sameInterventions(s.interventions, switchedOff(want, s.model)),
      scene: () => sceneKey(s.scene) !== sceneKey(want.scene),
      generation: () => !!s.generation[runKey], // Generate pressed: the teacher's run is not shown any more
      analysis: () => !!asked && !isPrompt(asked, want),
      pinned: () => isPrompt(run, want) && s.pinned !== pinnedWanted,
    };
    return [...changed].find((key) => checks[key]?.()) ?? null;
  }

  /** A change of the store the room did not make: the reader's own, when it came from their input
   * (a scene opened, moved or closed by anyone but the room is theirs however it came: a scene
   * opened from the menu arrives after its file does) and leaves the page other than the teacher's. */
  function onStore(s, changed) {
    if (!info.following || applying || !ready || info.ended || !latest || !latest.state) return;
    const theirs = ownInput ? changed : new Set([...changed].filter((key) => key === "scene"));
    const why = theirs.size ? differs(s, theirs, latest.state) : null;
    if (why) explore(why);
  }

  function onInput(event) {
    if (!event.isTrusted || bar.contains(event.target)) return;
    ownInput = true;
    clearTimeout(inputDone);
    inputDone = setTimeout(() => {
      ownInput = false;
    }, 0);
  }

  /** The reader's own scrolling begins (wheel, touch, the keys that scroll, the scrollbar). The
   * browser may have scrolled already when the event arrives: what counts is the stage the page
   * rested at before. */
  function onScrollGesture(event) {
    if (!event.isTrusted || !info.following || bar.contains(event.target)) return;
    if (event.type === "keydown" && (!SCROLL_KEYS.has(event.key) || event.target.closest?.(CONTROLS))) return;
    if (event.type === "pointerdown" && event.target !== document.documentElement) return; // the page's scrollbar
    readerScrolling = true;
  }

  /** Scrolled by the reader to another stage card than the one they were at: exploring. */
  function checkScroll() {
    if (readerScrolling && info.following && latest?.state?.stage && restStage && currentStage(store) !== restStage) explore("scroll");
  }

  let frame = 0;
  function onScroll() {
    if (!readerScrolling || frame) return;
    frame = requestAnimationFrame(() => {
      frame = 0;
      checkScroll();
    });
  }

  /** Whether `thing` (a run, or an analysis asked for: {text, ids}) is the teacher's prompt: the
   * same ids when the teacher's run was asked for by ids, else the same text. */
  function isPrompt(thing, want) {
    if (!thing) return false;
    const byIds = "byIds" in thing ? thing.byIds : thing.ids != null;
    return want.ids ? byIds && sameIds(thing.ids, want.ids) : !byIds && thing.text === want.text;
  }

  /** Apply the latest state (force: even if this version was applied already). */
  function apply(force = false) {
    if (!info.following || !ready || !latest || !latest.state) return;
    if (!force && info.applied === latest.version) return;
    const state = latest.state;
    const before = target;
    // A new scene step brings its own prompt and parts switched off (scenes.js): the room leaves them to it this time.
    const sceneChanged = sceneKey(state.scene) !== sceneKey(store.state.scene);
    target = { ...state, scrolled: !force && before && before.stage === state.stage ? before.scrolled : null };
    info.applied = latest.version;
    asRoom(() => {
      const { n_layers: L, n_heads: H } = store.state.model;
      store.set({ layer: Math.min(state.layer, L - 1), head: Math.min(state.head, H - 1), temperature: state.temperature });
      if (sceneChanged) store.set({ scene: state.scene ? { ...state.scene } : null });
      if (sceneChanged && state.scene) return;
      const wanted = switchedOff(state, store.state.model);
      const analysis = store.state.analysis[runKey];
      const coming = analysis && analysis.status === "running" && isPrompt(analysis, target);
      if (!sameInterventions(store.state.interventions, wanted)) {
        // The teacher's prompt, with what the teacher switched off: the same run, the same numbers.
        analyzeWith(store, runKey, target.ids ? { ids: target.ids, text: target.text } : target.text, wanted);
      } else if (!isPrompt(selectRun(store.state, runKey), target) && !coming) {
        showTarget({ pinned: target.pinned });
      }
    });
    settle();
  }

  function showTarget(after) {
    if (target.ids) return analyzeIds(store, runKey, target.ids, { ...after, text: target.text });
    return analyzeText(store, runKey, target.text, after);
  }

  /** Once the teacher's prompt is shown: its pinned token, and its stage scrolled into view. */
  function settle() {
    if (!info.following || !target) return;
    const s = store.state;
    const run = selectRun(s, runKey);
    if (!isPrompt(run, target)) return;
    const pinned = target.pinned != null && target.pinned < run.tokens.length ? target.pinned : null;
    if (s.pinned !== pinned) asRoom(() => store.set({ pinned }));
    if (target.stage && target.scrolled !== target.stage) {
      target.scrolled = target.stage;
      const wanted = target;
      // Two frames on: the token bar has its new prompt's height (the scroll padding).
      requestAnimationFrame(() => requestAnimationFrame(() => {
        if (target !== wanted || !info.following) return;
        readerScrolling = false;
        goToStage(store, wanted.stage); // the page scrolls to it, and its stage is the store's
        restStage = currentStage(store);
      }));
    }
  }

  function receive(message) {
    let data;
    try {
      data = JSON.parse(message.data);
    } catch (_) {
      return;
    }
    latest = data;
    info.version = data.version;
    info.receivedAt = Date.now();
    lost = false;
    reopened = 0;
    render();
    apply();
  }

  function listenToRoom() {
    source = new EventSource(roomEventsUrl(code));
    source.onopen = () => {
      lost = false;
      render();
    };
    source.onmessage = receive;
    source.addEventListener("end", (event) => {
      let body = {};
      try {
        body = JSON.parse(event.data);
      } catch (_) { /* said below */ }
      if (body.code === "stopping") {
        // The server is stopping: the EventSource connects again by itself, and says when it is back.
        lost = true;
        render();
        return;
      }
      fail({ code: body.code, message: body.detail });
    });
    source.onerror = () => {
      if (!source) return;
      lost = true;
      if (source.readyState === EventSource.CLOSED) {
        // Refused: the room closed while the connection was down (the snapshot says so), or the
        // stream itself was (this computer follows in too many tabs): asked again, the server says why.
        stopListening();
        roomSnapshot(code)
          .then(() => checkRoomEvents(code))
          .then(() => {
            if (++reopened > 3) throw new Error(t("room.refused"));
            listenToRoom();
          })
          .catch(fail);
      }
      render();
    };
  }

  toggle.addEventListener("click", () => {
    if (info.following) {
      explore("button");
      return;
    }
    info.following = true;
    info.explored = null;
    render();
    apply(true);
  });

  const isReady = (s) => s.model && s.analysis[runKey];
  function whenReady() {
    ready = true;
    restStage = currentStage(store);
    apply(true);
  }
  if (isReady(store.state)) setTimeout(whenReady, 0);
  else {
    const stop = store.subscribe(["model", "analysis"], (s) => {
      if (!isReady(s)) return;
      stop();
      setTimeout(whenReady, 0); // after main.js has asked for its first analysis: the room's comes later, and wins
    });
    off.push(stop);
  }
  off.push(store.subscribe(["shown"], settle));
  off.push(store.subscribe(LOCAL, onStore));
  for (const type of INPUT) off.push(listen(window, type, onInput, { capture: true }));
  for (const type of ["wheel", "touchmove", "keydown", "pointerdown"]) {
    off.push(listen(window, type, onScrollGesture, { capture: true, passive: true }));
  }
  off.push(listen(window, "scroll", onScroll, { passive: true }));
  off.push(listen(window, "scrollend", () => {
    checkScroll();
    readerScrolling = false;
    restStage = currentStage(store);
  }));

  render();
  roomSnapshot(code).then((snapshot) => {
    if (!latest) latest = snapshot;
    info.version = latest.version;
    render();
    apply();
    listenToRoom();
  }, fail);

  return () => {
    for (const f of off) f();
    clearTimeout(inputDone);
    cancelAnimationFrame(frame);
    stopListening();
    bar.remove();
  };
}
