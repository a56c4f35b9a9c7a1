// khqrpay's own script: live updates over Server-Sent Events (with polling when a stream cannot
// be kept), and forms sent with fetch. No inline script anywhere: pages describe what they need
// with data- attributes.
"use strict";

const khqrpay = (() => {
  /** Follow a stream of events. EventSource reconnects by itself and sends Last-Event-ID, so no
   *  event is lost; if the stream keeps failing (a proxy that buffers), poll `pollUrl` instead.
   *  A stream the server refuses outright (EventSource gives up at once) also falls back to
   *  polling; a poll answered 401/403 (signed out) stops and calls `onRefused(status)`. */
  function follow({ streamUrl, pollUrl, onEvent, onPoll, onRefused, pollEveryMs = 3000 }) {
    let failures = 0;
    let polling = null;
    let source = null;
    const startPolling = () => {
      if (polling || !pollUrl) return;
      const tick = async () => {
        try {
          const response = await fetch(pollUrl, { headers: { accept: "application/json" }, credentials: "same-origin" });
          if (response.ok) onPoll(await response.json());
          else if ((response.status === 401 || response.status === 403) && onRefused) {
            clearInterval(polling);
            onRefused(response.status);
          }
        } catch (error) { /* offline for a moment: try again at the next tick */ }
      };
      tick();
      polling = setInterval(tick, pollEveryMs);
    };
    if (!("EventSource" in window) || !streamUrl) { startPolling(); return () => clearInterval(polling); }
    source = new EventSource(streamUrl, { withCredentials: true });
    source.addEventListener("open", () => { failures = 0; });
    source.addEventListener("error", () => {
      failures += 1;
      if (source.readyState === EventSource.CLOSED || failures >= 3) startPolling();
    });
    source.onmessage = (message) => onEvent(JSON.parse(message.data), message);
    return () => { source.close(); clearInterval(polling); };
  }

  /** The CSRF token the page carries for scripts (forms carry their own hidden field). */
  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  /** POST a form's fields with fetch; resolves to the JSON answer (or throws with its message
   *  and the HTTP `status`). */
  async function send(form) {
    const response = await fetch(form.action, {
      method: "POST",
      body: new URLSearchParams(new FormData(form)),
      headers: { accept: "application/json", "x-csrftoken": csrfToken() },
      credentials: "same-origin",
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const message = body.error ? body.error.message : response.statusText;
      throw Object.assign(new Error(message), { status: response.status });
    }
    return body;
  }

  /** Mark a button busy while `work` runs. */
  async function busy(button, work) {
    button.setAttribute("aria-busy", "true");
    button.disabled = true;
    try { return await work(); } finally {
      button.removeAttribute("aria-busy");
      button.disabled = false;
    }
  }

  return { follow, csrfToken, send, busy };
})();
window.khqrpay = khqrpay;
