// Paygress buyer page. No framework, no third-party requests.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);

  async function post(path, body) {
    const r = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), cache: "no-store" });
    let data = null;
    try { data = await r.json(); } catch (_) { /* not JSON */ }
    if (!r.ok) {
      const e = new Error((data && data.message) || ("HTTP " + r.status));
      e.data = data;
      throw e;
    }
    return data;
  }

  function copyText(text, button) {
    const done = () => { const t = button.textContent; button.textContent = "Copied"; setTimeout(() => { button.textContent = t; }, 1500); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, () => fallbackCopy(text, done));
    } else {
      fallbackCopy(text, done);
    }
  }
  function fallbackCopy(text, done) {
    const t = document.createElement("textarea");
    t.value = text; t.setAttribute("readonly", ""); t.style.position = "fixed"; t.style.opacity = "0";
    document.body.appendChild(t); t.select();
    try { document.execCommand("copy"); done(); } catch (_) { /* nothing to do */ }
    t.remove();
  }
  document.addEventListener("click", (ev) => {
    const b = ev.target.closest("button.copy");
    if (!b) return;
    if (b.hasAttribute("data-copy-href")) { copyText(location.href, b); return; }
    const el = $(b.getAttribute("data-copy"));
    if (el) copyText(el.value !== undefined && el.tagName === "TEXTAREA" ? el.value : el.textContent, b);
  });

  // ------------------------------------------------------------ offer page
  function offerPage() {
    const form = $("order-form");
    const price = () => {
      const tier = form.querySelector("input[name=tier]:checked");
      const minutes = parseInt($("duration").value, 10);
      if (!tier || !(minutes > 0)) { $("price").textContent = "–"; return; }
      const msat = Math.ceil(parseInt(tier.dataset.rateMsat, 10) * minutes / 60);
      $("price").textContent = Math.ceil(msat / 1000) + " sat";
    };
    form.addEventListener("input", price);
    price();
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const err = $("order-error"); err.hidden = true;
      const button = $("order-button"); button.disabled = true;
      const tier = form.querySelector("input[name=tier]:checked");
      const body = { tier: tier ? tier.value : null, duration_minutes: parseInt($("duration").value, 10) };
      const user = $("username").value.trim();
      if (user) body.ssh_username = user;
      try {
        const r = await post("/web/api/orders", body);
        location.href = "/lease#" + r.secret;
      } catch (e) {
        err.textContent = e.message; err.hidden = false; button.disabled = false;
      }
    });
  }

  // ------------------------------------------------------------ lease page
  function leasePage() {
    const secret = location.hash.replace(/^#/, "");
    let view = null, skew = 0, timer = null, term = null;

    const showError = (msg) => { const e = $("error"); e.textContent = msg || ""; e.hidden = !msg; };

    function fmtLeft(s) {
      if (s <= 0) return "expired";
      const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60), sec = Math.floor(s % 60);
      const pad = (n) => String(n).padStart(2, "0");
      return (d ? d + "d " : "") + pad(h) + ":" + pad(m) + ":" + pad(sec);
    }
    function tick() {
      if (!view || !view.expires_at) return;
      const left = (Date.parse(view.expires_at) - (Date.now() + skew)) / 1000;
      $("countdown").textContent = fmtLeft(left);
    }
    function setSvg(el, svg) {
      el.replaceChildren();
      if (!svg) return;
      const doc = new DOMParser().parseFromString(svg, "image/svg+xml");
      el.appendChild(document.importNode(doc.documentElement, true));
    }

    function render(v) {
      view = v;
      skew = Date.parse(v.now) - Date.now();
      $("loading").hidden = true;
      const paid = !!v.access;
      $("title").textContent = paid ? "Lease " + v.access.pod_name : "Pay for your lease";
      $("pay").hidden = paid || !v.order;
      if (!paid && v.order) {
        $("pay-amount").textContent = v.order.amount + " " + v.order.unit + " (" + v.tier + ", " + v.minutes + " min)";
        if ($("pay-request").value !== v.order.request) { $("pay-request").value = v.order.request; setSvg($("pay-qr"), v.order.qr_svg); }
      }
      $("access").hidden = !paid; $("more").hidden = !paid; $("terminal-section").hidden = !paid;
      if (paid) {
        $("ssh-command").textContent = v.access.ssh_command;
        $("password").textContent = v.access.password;
        const exp = new Date(v.expires_at);
        $("expires").dateTime = v.expires_at; $("expires").textContent = exp.toLocaleString();
        $("expires").dataset.iso = v.expires_at;
        const ul = $("instructions"); ul.replaceChildren();
        for (const line of v.access.instructions) { const li = document.createElement("li"); li.textContent = line; ul.appendChild(li); }
        const tp = $("topup-pay");
        tp.hidden = !v.top_up;
        if (v.top_up && $("topup-request").value !== v.top_up.request) {
          $("topup-request").value = v.top_up.request; setSvg($("topup-qr"), v.top_up.qr_svg);
          $("topup-amount").textContent = v.top_up.amount + " " + v.top_up.unit; $("topup-for").textContent = v.top_up.minutes + " more minutes";
        }
        $("release-note").hidden = v.release_supported;
        if (v.state === "expired") $("countdown").textContent = "expired";
      }
      $("tokens").hidden = v.tokens.length === 0;
      const list = $("token-list");
      if (list.children.length !== v.tokens.length) {
        list.replaceChildren();
        v.tokens.forEach((t, i) => {
          const li = document.createElement("li");
          const label = document.createElement("label"); label.htmlFor = "tok-" + i;
          label.textContent = t.kind === "refund" ? "Refund (your payment, returned)" : "Change";
          const row = document.createElement("div"); row.className = "copyrow";
          const ta = document.createElement("textarea"); ta.id = "tok-" + i; ta.readOnly = true; ta.rows = 3; ta.value = t.token; ta.className = "saved-token"; ta.dataset.kind = t.kind;
          const b = document.createElement("button"); b.type = "button"; b.className = "copy"; b.setAttribute("data-copy", ta.id); b.textContent = "Copy";
          row.append(ta, b); li.append(label, row); list.appendChild(li);
        });
      }
      showError(v.error ? v.error.message : "");
      tick();
    }

    async function refresh() {
      try { render(await post("/web/api/lease", { secret })); }
      catch (e) { $("loading").hidden = true; showError(e.message); }
      clearTimeout(timer);
      timer = setTimeout(refresh, view && view.access && !view.top_up ? 10000 : 1500);
    }

    async function pay(textarea, button) {
      button.disabled = true; showError("");
      try { render(await post("/web/api/pay", { secret, token: textarea.value.trim() })); textarea.value = ""; }
      catch (e) { showError(e.message); refresh(); }
      button.disabled = false;
    }
    $("token-form").addEventListener("submit", (ev) => { ev.preventDefault(); pay($("token"), ev.submitter || ev.target.querySelector("button")); });
    $("topup-token-form").addEventListener("submit", (ev) => { ev.preventDefault(); pay($("topup-token"), ev.submitter || ev.target.querySelector("button")); });
    $("topup-form").addEventListener("submit", async (ev) => {
      ev.preventDefault(); showError("");
      try { render(await post("/web/api/top-up", { secret, duration_minutes: parseInt($("topup-minutes").value, 10) })); refresh(); }
      catch (e) { showError(e.message); }
    });

    $("terminal-open").addEventListener("click", () => {
      if (term || typeof Terminal === "undefined") return;
      const box = $("terminal"); box.hidden = false; $("terminal-open").hidden = true;
      const fontSize = window.innerWidth < 500 ? 12 : 14;
      const cols = Math.max(20, Math.floor((box.clientWidth - 10) / (fontSize * 0.6)));
      term = new Terminal({ cols, rows: 24, fontSize, cursorBlink: true, screenReaderMode: false, convertEol: false });
      term.open(box);
      const status = $("terminal-status");
      status.textContent = "Connecting…";
      const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/web/api/terminal");
      ws.binaryType = "arraybuffer";
      const enc = new TextEncoder();
      ws.onopen = () => ws.send(JSON.stringify({ secret, cols: term.cols, rows: term.rows }));
      ws.onmessage = (m) => {
        if (typeof m.data === "string") { status.textContent = m.data; return; }
        status.textContent = "Connected.";
        term.write(new Uint8Array(m.data));
      };
      ws.onclose = () => { status.textContent = "Disconnected."; };
      term.onData((d) => { if (ws.readyState === 1) ws.send(enc.encode(d)); });
      term.onResize((s) => { if (ws.readyState === 1) ws.send(JSON.stringify({ resize: [s.cols, s.rows] })); });
      term.focus();
    });

    if (!secret) { $("loading").hidden = true; showError("This link has no lease secret. Use the link you were given after choosing a lease."); return; }
    setInterval(tick, 1000);
    refresh();
  }

  document.addEventListener("DOMContentLoaded", () => {
    const page = document.body.dataset.page;
    if (page === "offer") offerPage();
    if (page === "lease") leasePage();
  });
})();
