/**
 * lazy.js — work done only when it is worth doing: after the input rests, or once on screen.
 */

/** later(fn, ms): a function that runs fn once, `ms` after the last call (the newest args win).
 * `.cancel()` drops a pending call (for a view's unmount). */
export function later(fn, ms = 60) {
  let timer = null;
  const call = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  call.cancel = () => clearTimeout(timer);
  return call;
}

/**
 * onScreen(node, margin): {visible, whenVisible(fn), stop()}. `visible` says whether `node` is on
 * screen (or within `margin`); `whenVisible(fn)` runs fn now if it is, else once it scrolls in
 * (the last fn asked for wins). For views whose data cost a request or a large download.
 */
export function onScreen(node, margin = "300px 0px") {
  let pending = null;
  const watch = {
    visible: false,
    whenVisible(fn) {
      if (watch.visible) {
        pending = null;
        fn();
      } else {
        pending = fn;
      }
    },
    stop() {
      observer.disconnect();
      pending = null;
    },
  };
  const observer = new IntersectionObserver((entries) => {
    watch.visible = entries.some((e) => e.isIntersecting);
    if (watch.visible && pending) {
      const fn = pending;
      pending = null;
      fn();
    }
  }, { rootMargin: margin });
  observer.observe(node);
  return watch;
}
