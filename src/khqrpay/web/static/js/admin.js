// The staff console: live regions, buttons that answer inline, dialogs. Pages describe what they
// need with data- attributes; the server renders every piece of HTML (this script only swaps it in).
//   data-live="URL"        a region the server re-renders and streams (khqrpay.follow)
//   data-keep (with id)    a part of a live region kept across swaps (a button's result)
//   form[data-inline]      sent with fetch; the answer's html goes to data-result="#selector",
//                          with data-loading="text" shown meanwhile; in a <dialog>, closes it
//   [data-dialog="id"]     opens that <dialog>;  [data-close] closes the dialog it is in
"use strict";

(() => {
  const signedOut = () => {
    const notice = document.getElementById("signed-out");
    if (notice) notice.classList.remove("hidden");
  };

  function notice(kind, text, extraClass) {
    const p = document.createElement("p");
    p.className = `notice ${kind}${extraClass ? ` ${extraClass}` : ""}`;
    p.textContent = text;
    return p;
  }

  /** Put the server's new rendering of a live region in place, keeping its data-keep parts and
   *  marking rows whose status changed (data-order / data-status). */
  function swap(region, html) {
    const kept = new Map();
    region.querySelectorAll("[data-keep][id]").forEach((el) => kept.set(el.id, el));
    const before = new Map();
    region.querySelectorAll("[data-order]").forEach((row) => before.set(row.dataset.order, row.dataset.status));
    region.innerHTML = html;
    kept.forEach((el, id) => {
      const fresh = document.getElementById(id);
      if (fresh && region.contains(fresh)) fresh.replaceWith(el);
    });
    if (before.size) {
      region.querySelectorAll("[data-order]").forEach((row) => {
        if (before.get(row.dataset.order) !== row.dataset.status) row.classList.add("changed");
      });
    }
  }

  document.querySelectorAll("[data-live]").forEach((region) => {
    const apply = (data) => swap(region, data.html);
    khqrpay.follow({
      streamUrl: region.dataset.live,
      pollUrl: region.dataset.live,
      onEvent: apply,
      onPoll: apply,
      onRefused: signedOut,
    });
  });

  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("form[data-inline]");
    if (!form) return;
    event.preventDefault();
    const button = event.submitter || form.querySelector("[type=submit]");
    const target = form.dataset.result ? document.querySelector(form.dataset.result) : null;
    const dialog = form.closest("dialog");
    const errorBox = form.querySelector("[data-error]");
    if (errorBox) errorBox.classList.add("hidden");
    if (target && form.dataset.loading) {
      target.replaceChildren(notice("info", form.dataset.loading, "loading"));
    }
    try {
      const body = await khqrpay.busy(button, () => khqrpay.send(form));
      if (dialog) {
        dialog.close();
        form.reset();
      }
      if (target) {
        if (body.html) target.innerHTML = body.html;
        else target.replaceChildren(notice("ok", body.message));
        target.scrollIntoView({ block: "nearest", behavior: "smooth" });
      }
    } catch (error) {
      if (error.status === 401) signedOut();
      if (errorBox) {
        errorBox.textContent = error.message;
        errorBox.classList.remove("hidden");
      } else if (target) {
        target.replaceChildren(notice("bad", error.message));
      }
    }
  });

  document.addEventListener("click", (event) => {
    const opener = event.target.closest("[data-dialog]");
    if (opener) {
      const dialog = document.getElementById(opener.dataset.dialog);
      if (dialog) {
        const errorBox = dialog.querySelector("[data-error]");
        if (errorBox) errorBox.classList.add("hidden");
        dialog.showModal();
        const first = dialog.querySelector("textarea, input:not([type=hidden])");
        if (first) first.focus();
      }
      return;
    }
    const closer = event.target.closest("[data-close]");
    if (closer) {
      const dialog = closer.closest("dialog");
      if (dialog) dialog.close();
    }
  });
})();
