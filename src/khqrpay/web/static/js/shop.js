// The shop's pages: add to cart without leaving the catalogue, "I have paid", and the live order
// page and order list, redrawn from the server when an event arrives (app.js follows the stream,
// or polls when a stream cannot be kept). Every form still works without this script.
"use strict";

(() => {
  const { follow, send, busy } = window.khqrpay;

  function toast(kind, message) {
    document.querySelectorAll(".toast").forEach((old) => old.remove());
    const note = document.createElement("p");
    note.className = `notice ${kind} toast`;
    note.setAttribute("role", "status");
    note.textContent = message;
    document.body.append(note);
    setTimeout(() => note.remove(), 3500);
  }

  function showCartCount(count) {
    document.querySelectorAll("[data-cart-count]").forEach((element) => { element.textContent = count; });
    document.querySelectorAll(".cart-link .count, [data-cart-bar]").forEach((element) => {
      element.classList.toggle("hidden", count === 0);
    });
  }

  document.querySelectorAll("form[data-add-to-cart]").forEach((form) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = form.querySelector("button");
      try {
        const answer = await busy(button, () => send(form));
        showCartCount(answer.cart_count);
        const inCart = document.querySelector(`[data-in-cart="${CSS.escape(answer.sku)}"]`);
        if (inCart) {
          inCart.querySelector("[data-in-cart-count]").textContent = answer.in_cart;
          inCart.classList.remove("hidden");
        }
        toast("ok", answer.message);
      } catch (error) {
        toast("bad", error.message);
      }
    });
  });

  /** Redraw `panel` from `url`; coalesces a burst of events into one redraw at a time. */
  function redrawer(panel, url, onDrawn) {
    let running = false;
    let again = false;
    const draw = async () => {
      if (running) { again = true; return; }
      running = true;
      try {
        do {
          again = false;
          const response = await fetch(url, { headers: { accept: "text/html" }, credentials: "same-origin" });
          if (response.ok) {
            panel.innerHTML = await response.text();
            onDrawn();
          }
        } while (again);
      } catch (error) { /* offline for a moment: the next event or poll redraws */ }
      finally { running = false; }
    };
    return draw;
  }

  /** "12 minutes left" and the like, counted down each second once under an hour. */
  function countDown(root) {
    root.querySelectorAll("[data-expires-ms][data-left-label]").forEach((element) => {
      const expires = Number(element.dataset.expiresMs);
      const tick = () => {
        const left = Math.max(0, Math.floor((expires - Date.now()) / 1000));
        if (left >= 3600) return false;
        const minutes = String(Math.floor(left / 60)).padStart(2, "0");
        const seconds = String(left % 60).padStart(2, "0");
        element.textContent = element.dataset.leftLabel.replace("{time}", `${minutes}:${seconds}`);
        return left > 0;
      };
      if (tick()) {
        const timer = setInterval(() => { if (!element.isConnected || !tick()) clearInterval(timer); }, 1000);
      }
    });
  }

  // The payment page: the panel follows the order; "I have paid" asks Bakong now.
  const live = document.querySelector("[data-live-order]");
  if (live) {
    const panel = live.querySelector("[data-order-panel]");
    const redraw = redrawer(panel, live.dataset.panelUrl, () => {
      const drawn = panel.querySelector("[data-status]");
      if (drawn && drawn.dataset.status !== live.dataset.status) {
        live.dataset.status = drawn.dataset.status;
        live.dataset.changedAt = String(Date.now());
        panel.querySelector("h1")?.setAttribute("tabindex", "-1");
        panel.querySelector("h1")?.focus({ preventScroll: false });
      }
      countDown(panel);
    });
    countDown(panel);
    follow({
      streamUrl: live.dataset.streamUrl,
      pollUrl: live.dataset.pollUrl,
      onEvent: () => redraw(),
      onPoll: (state) => { if (state.status !== live.dataset.status) redraw(); },
    });

    live.addEventListener("submit", async (event) => {
      const form = event.target.closest("form[data-i-have-paid]");
      if (!form) return;
      event.preventDefault();
      const button = form.querySelector("button");
      const place = panel.querySelector("[data-paid-answer]");
      let kind = "warn";
      let message;
      try {
        const answer = await busy(button, () => send(form));
        kind = answer.kind;
        message = answer.message;
      } catch (error) {
        message = error.message;
      }
      if (place) {
        place.innerHTML = "";
        const note = document.createElement("p");
        note.className = `notice ${kind}`;
        note.textContent = message;
        place.append(note);
      }
      redraw();
    });
  }

  // My orders: the list follows this browser's orders.
  const list = document.querySelector("[data-live-list]");
  if (list) {
    const panel = list.querySelector("[data-orders-panel]");
    const redraw = redrawer(panel, list.dataset.panelUrl, () => {});
    let seen = null;
    follow({
      streamUrl: list.dataset.streamUrl,
      pollUrl: list.dataset.pollUrl,
      onEvent: () => redraw(),
      onPoll: (state) => {
        const now = JSON.stringify(state.statuses);
        if (seen !== null && now !== seen) redraw();
        seen = now;
      },
    });
  }
})();
